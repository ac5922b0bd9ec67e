from __future__ import annotations

from datetime import timedelta

from tallybook.db import Database
from tallybook.kit.clock import TestClock
from tallybook.work import outbox
from tallybook.work.outbox import ClaimedMessage


def test_enqueue_is_idempotent_by_dedup_key(db: Database) -> None:
    with db.transaction() as tx:
        first = outbox.enqueue(tx, topic="t", dedup_key="k", payload={"n": 1})
        second = outbox.enqueue(tx, topic="t", dedup_key="k", payload={"n": 2})
    assert first == second
    with db.read() as tx:
        assert outbox.counts_by_status(tx) == {"pending": 1}


def test_relay_delivers_after_commit_and_retries_with_backoff(
    db: Database, clock: TestClock
) -> None:
    with db.transaction() as tx:
        outbox.enqueue(tx, topic="t", dedup_key="a", payload={})
    calls: list[str] = []

    def flaky(_db: Database, message: ClaimedMessage) -> None:
        calls.append(message.dedup_key)
        if len(calls) == 1:
            raise RuntimeError("provider timed out")

    assert outbox.relay_once(db, {"t": flaky}) == {"delivered": 0, "failed": 1, "dead": 0}
    assert outbox.relay_once(db, {"t": flaky}) == {"delivered": 0, "failed": 0, "dead": 0}
    clock.advance(hours=1)
    assert outbox.relay_once(db, {"t": flaky}) == {"delivered": 1, "failed": 0, "dead": 0}
    with db.read() as tx:
        assert outbox.counts_by_status(tx) == {"delivered": 1}


def test_fifo_per_ordering_key(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        for n in range(3):
            outbox.enqueue(
                tx, topic="t", dedup_key=f"m{n}", payload={"n": n}, ordering_key="endpoint-1"
            )
        outbox.enqueue(
            tx, topic="t", dedup_key="other", payload={"n": 9}, ordering_key="endpoint-2"
        )
    seen: list[int] = []

    def handler(_db: Database, message: ClaimedMessage) -> None:
        seen.append(message.payload["n"])
        if message.payload["n"] == 0 and seen.count(0) == 1:
            raise RuntimeError("first delivery fails")

    outbox.relay_once(db, {"t": handler})
    # m0 failed and blocks m1/m2 of the same endpoint; the other endpoint is not blocked.
    assert seen == [0, 9]
    clock.advance(hours=1)
    outbox.relay_once(db, {"t": handler})
    assert seen == [0, 9, 0]
    outbox.relay_once(db, {"t": handler})
    outbox.relay_once(db, {"t": handler})
    assert seen == [0, 9, 0, 1, 2]


def test_permanent_failure_goes_dead_and_replays(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        message_id = outbox.enqueue(tx, topic="t", dedup_key="p", payload={})

    def broken(_db: Database, _message: ClaimedMessage) -> None:
        raise outbox.PermanentDeliveryError("endpoint rejects the payload")

    assert outbox.relay_once(db, {"t": broken})["dead"] == 1
    with db.transaction() as tx:
        outbox.replay(tx, message_id)
    assert outbox.relay_once(db, {"t": lambda _d, _m: None})["delivered"] == 1
    clock.advance(timedelta(seconds=1))


def test_domain_events_form_a_customer_timeline(db: Database, clock: TestClock) -> None:
    from tallybook.work import events

    with db.transaction(actor="key_test", request_id="req_1") as tx:
        events.emit(tx, "customer.created", customer_id="cus_1", object_id="cus_1", data={"n": 1})
        events.emit(tx, "invoice.finalized", customer_id="cus_1", object_id="in_1", data={"n": 2})
        events.emit(tx, "invoice.finalized", customer_id="cus_2", object_id="in_2", data={"n": 3})
    with db.read() as tx:
        rows = events.timeline(tx, customer_id="cus_1")
        assert [r.type for r in rows] == ["invoice.finalized", "customer.created"]
        assert rows[0].actor == "key_test"
        assert rows[0].request_id == "req_1"
        assert [r.data["n"] for r in events.after(tx, event_id=rows[1].id, limit=10)] == [2, 3]
