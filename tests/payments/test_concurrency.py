"""Real parallel connections on PostgreSQL: the paths where two workers meet on one invoice."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from tallybook.db import Database
from tallybook.payments import service
from tallybook.payments.providers.base import PaymentSnapshot, PaymentState
from tallybook.payments.service import runner
from tallybook.payments.tasks import run_retries
from tallybook.work.models import DomainEvent
from tallybook.work.schedule import JobContext
from tests.payments.conftest import make_world
from tests.payments.scripted import DECLINE, SUCCEED, ScriptedProvider, scripted_context

pytestmark = pytest.mark.pg_only

ROUNDS = 4


def _together(*actions: Callable[[], object]) -> list[object]:
    barrier = threading.Barrier(len(actions))
    results: list[object] = [None] * len(actions)

    def run(index: int, action: Callable[[], object]) -> None:
        barrier.wait()
        try:
            results[index] = action()
        except Exception as error:  # compared by the test
            results[index] = error

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _count(db: Database, event_type: str, object_id: str) -> int:
    with db.read() as tx:
        return int(
            tx.session.scalar(
                select(func.count())
                .select_from(DomainEvent)
                .where(DomainEvent.type == event_type, DomainEvent.object_id == object_id)
            )
            or 0
        )


def test_a_webhook_and_our_own_answer_recording_one_success_at_once(pg_db: Database) -> None:
    for _ in range(ROUNDS):
        _one_success_at_once(pg_db)


def _one_success_at_once(pg_db: Database) -> None:
    provider = ScriptedProvider(script=[SUCCEED])
    world = make_world(pg_db, scripted_context(provider))
    with world.db.transaction(actor="test") as tx:
        service.start_collection(tx, world.invoice_id, world.ctx)  # its attempt message waits
    (payment,) = world.payments()
    snapshot = PaymentSnapshot(
        f"pi_race_{payment.id[-8:]}",
        PaymentState.SUCCEEDED,
        2000,
        "USD",
        "succeeded",
        charge_id="ch_race",
        fee_minor=59,
    )

    def apply() -> bool:
        with world.db.transaction(actor="race") as tx:
            return service.apply_payment_state(tx, payment.id, snapshot, world.ctx)

    results = _together(apply, apply, apply)
    assert sorted(results, key=str) == [False, False, True], results
    assert world.invoice().status == "paid"
    assert world.invoice().amount_paid_minor == 2000
    assert _count(world.db, "payment.succeeded", payment.id) == 1
    assert world.clearing_minor() >= 0
    world.assert_ledger_agrees_with_invoice()


def test_two_workers_running_one_attempt_charge_once(pg_db: Database) -> None:
    for _ in range(ROUNDS):
        _one_charge(pg_db)


def _one_charge(pg_db: Database) -> None:
    provider = ScriptedProvider(script=[SUCCEED, SUCCEED])
    world = make_world(pg_db, scripted_context(provider))
    with world.db.transaction(actor="test") as tx:
        service.start_collection(tx, world.invoice_id, world.ctx)
    (payment,) = world.payments()
    results = _together(
        lambda: runner.run_attempt(world.db, payment.id, world.ctx),
        lambda: runner.run_attempt(world.db, payment.id, world.ctx),
    )
    assert not [r for r in results if isinstance(r, Exception)], results
    assert provider.confirmations == [SUCCEED]  # one charge
    assert world.invoice().status == "paid"
    world.assert_ledger_agrees_with_invoice()


def test_a_manual_retry_racing_the_retry_job_starts_one_attempt(pg_db: Database) -> None:
    for _ in range(ROUNDS):
        _one_attempt(pg_db)


def _one_attempt(pg_db: Database) -> None:
    world = make_world(pg_db, scripted_context(ScriptedProvider(script=[DECLINE])))
    world.relay()
    next_at = world.collection().next_attempt_at
    assert next_at is not None
    world.billing.clock.set(next_at)

    def manual() -> object:
        with world.db.transaction(actor="api") as tx:
            return service.retry_collection(tx, world.invoice_id, world.ctx).id

    results = _together(manual, lambda: run_retries(world.db, JobContext(owner="job"), world.ctx))
    assert [p.attempt_number for p in world.payments()] == [1, 2], results
