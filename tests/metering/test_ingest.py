"""The ingestion pipeline on both backends: dedup, conflicts, every rejection code, mixed
batches, dead letters and their replay, late events."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from tallybook.catalog.meter_models import Aggregation
from tallybook.db import Database
from tallybook.kit.clock import TestClock, utc
from tallybook.metering import service
from tallybook.metering.models import DeadLetter, MeteringEvent
from tallybook.metering.settings import MeteringSettings
from tests.conftest import TEST_EPOCH
from tests.fixtures.factories import create_customer, create_meter
from tests.metering.helpers import event, ingest, statuses

NOW = TEST_EPOCH
EARLIER = NOW - timedelta(hours=2)


@pytest.fixture
def setup(db: Database) -> dict[str, Any]:
    with db.transaction() as tx:
        customer = create_customer(tx, external_id="acme")
        tokens = create_meter(tx, key="tokens", group_by={"model": "model"})
        requests = create_meter(tx, key="requests", aggregation=Aggregation.COUNT)
    return {"customer": customer, "tokens": tokens, "requests": requests}


def total(db: Database, meter_id: str, customer_id: str) -> Decimal:
    with db.read() as tx:
        value = service.usage_total(
            tx,
            meter_id=meter_id,
            customer_id=customer_id,
            start=utc(2026, 10, 1),
            end=utc(2026, 12, 1),
        )
    assert isinstance(value, Decimal)
    return value


def stored_events(db: Database) -> int:
    with db.read() as tx:
        return int(tx.session.scalar(select(func.count()).select_from(MeteringEvent)) or 0)


def tokens(event_id: str, amount: Any = 10, *, user: str = "u1", **kw: Any) -> dict[str, Any]:
    kw.setdefault("time", EARLIER)
    return event(event_id, data={"tokens": amount, "model": "m1", "user": user}, **kw)


class TestAccept:
    def test_accepted_events_are_stored_and_counted(
        self, db: Database, setup: dict[str, Any]
    ) -> None:
        result = ingest(db, [tokens("e1", 10), tokens("e2", Decimal("2.5"))])
        assert statuses(result) == ["accepted", "accepted"]
        assert result.accepted == 2
        assert total(db, setup["tokens"].id, setup["customer"].id) == Decimal("12.5")
        assert total(db, setup["requests"].id, setup["customer"].id) == 2

    def test_time_defaults_to_receipt(
        self, db: Database, setup: dict[str, Any], clock: TestClock
    ) -> None:
        ingest(db, [event("e1", data={"tokens": 1, "model": "m"})])
        with db.read() as tx:
            stored = tx.session.scalar(select(MeteringEvent))
            assert stored is not None and stored.time == NOW

    def test_unmetered_types_are_kept(self, db: Database, setup: dict[str, Any]) -> None:
        result = ingest(db, [event("e1", event_type="page.view", time=EARLIER)])
        assert statuses(result) == ["accepted"]
        assert stored_events(db) == 1

    def test_numeric_strings_are_values(self, db: Database, setup: dict[str, Any]) -> None:
        ingest(db, [tokens("e1", "7.25")])
        assert total(db, setup["tokens"].id, setup["customer"].id) == Decimal("7.25")


class TestDedup:
    def test_duplicates_in_one_batch(self, db: Database, setup: dict[str, Any]) -> None:
        result = ingest(db, [tokens("e1"), tokens("e1"), tokens("e1")])
        assert statuses(result) == ["accepted", "duplicate", "duplicate"]
        assert total(db, setup["tokens"].id, setup["customer"].id) == 10
        assert stored_events(db) == 1

    def test_duplicates_across_batches(self, db: Database, setup: dict[str, Any]) -> None:
        ingest(db, [tokens("e1"), tokens("e2")])
        result = ingest(db, [tokens("e2"), tokens("e3")])
        assert statuses(result) == ["duplicate", "accepted"]
        assert total(db, setup["tokens"].id, setup["customer"].id) == 30

    def test_same_id_other_source_is_another_event(
        self, db: Database, setup: dict[str, Any]
    ) -> None:
        result = ingest(db, [tokens("e1", source="a"), tokens("e1", source="b")])
        assert statuses(result) == ["accepted", "accepted"]

    def test_conflict_across_batches_changes_nothing(
        self, db: Database, setup: dict[str, Any]
    ) -> None:
        ingest(db, [tokens("e1", 10)])
        result = ingest(db, [tokens("e1", 99)])
        outcome = result.outcomes[0]
        assert (outcome.status, outcome.code, outcome.param) == ("conflict", "event_conflict", "id")
        assert total(db, setup["tokens"].id, setup["customer"].id) == 10

    def test_conflict_in_one_batch(self, db: Database, setup: dict[str, Any]) -> None:
        result = ingest(db, [tokens("e1", 10), tokens("e1", 11)])
        assert statuses(result) == ["accepted", "conflict"]
        assert total(db, setup["tokens"].id, setup["customer"].id) == 10

    def test_content_compares_numbers_by_value_and_ignores_key_order(
        self, db: Database, setup: dict[str, Any]
    ) -> None:
        ingest(db, [event("e1", time=EARLIER, data={"tokens": 1, "model": "m"})])
        same = event(
            "e1", time="2026-11-01T08:00:00+01:00", data={"model": "m", "tokens": Decimal("1.00")}
        )
        # 08:00+01:00 is 07:00Z = EARLIER: the same instant written differently.
        assert statuses(ingest(db, [same])) == ["duplicate"]

    def test_event_without_time_resent_later_is_a_duplicate(
        self, db: Database, setup: dict[str, Any], clock: TestClock
    ) -> None:
        ingest(db, [event("e1", data={"tokens": 1, "model": "m"})])
        clock.advance(minutes=5)
        assert statuses(ingest(db, [event("e1", data={"tokens": 1, "model": "m"})])) == [
            "duplicate"
        ]

    def test_resend_of_an_event_now_too_old_is_still_a_duplicate(
        self, db: Database, setup: dict[str, Any], clock: TestClock
    ) -> None:
        ingest(db, [tokens("e1")])
        clock.advance(days=40)
        assert statuses(ingest(db, [tokens("e1")])) == ["duplicate"]


#: (event, code, param) for every rejection code.
REJECTIONS: list[tuple[Any, str, str | None]] = [
    ("not an object", "event_invalid", None),
    (
        {"specversion": "1.0", "source": "app", "type": "t", "subject": "acme"},
        "field_missing",
        "id",
    ),
    ({"specversion": "1.0", "id": "x", "type": "t", "subject": "acme"}, "field_missing", "source"),
    ({"id": "x", "source": "app", "type": "t", "subject": "acme"}, "field_missing", "specversion"),
    (
        {"specversion": "0.3", "id": "x", "source": "app", "type": "t", "subject": "acme"},
        "specversion_unsupported",
        "specversion",
    ),
    (
        {"specversion": "1.0", "id": "x", "source": "app", "subject": "acme"},
        "field_missing",
        "type",
    ),
    ({"specversion": "1.0", "id": "x", "source": "app", "type": "t"}, "field_missing", "subject"),
    (
        {"specversion": "1.0", "id": 7, "source": "app", "type": "t", "subject": "acme"},
        "field_invalid",
        "id",
    ),
    (
        {"specversion": "1.0", "id": "x" * 256, "source": "app", "type": "t", "subject": "acme"},
        "field_invalid",
        "id",
    ),
    (event("x\x00y"), "field_invalid", "id"),
    (event("x", subject="ac\x00me"), "field_invalid", "subject"),
    (event("x", data=["not", "an", "object"]), "field_invalid", "data"),
    (event("x", datacontenttype="text/plain"), "field_invalid", "datacontenttype"),
    (event("x", data={"blob": "x" * 70_000}), "event_too_large", "data"),
    (event("x", time="yesterday"), "time_invalid", "time"),
    (event("x", time="2026-11-01T09:00:00"), "time_invalid", "time"),
    (event("x", time=NOW + timedelta(minutes=6)), "time_in_future", "time"),
    (event("x", time=NOW - timedelta(days=36)), "time_too_old", "time"),
    (event("x", subject="nobody", time=EARLIER), "customer_not_found", "subject"),
    (event("x", time=EARLIER, data={"model": "m"}), "value_missing", "data.tokens"),
    (
        event("x", time=EARLIER, data={"tokens": "many", "model": "m"}),
        "value_not_number",
        "data.tokens",
    ),
    (
        event("x", time=EARLIER, data={"tokens": True, "model": "m"}),
        "value_not_number",
        "data.tokens",
    ),
    (
        event("x", time=EARLIER, data={"tokens": Decimal("0.0000000000001"), "model": "m"}),
        "value_invalid",
        "data.tokens",
    ),
    (
        event("x", time=EARLIER, data={"tokens": 1, "model": {"nested": 1}}),
        "dimension_invalid",
        "data.model",
    ),
]


class TestRejections:
    @pytest.mark.parametrize(("raw", "code", "param"), REJECTIONS)
    def test_every_code_names_the_field_and_is_dead_lettered(
        self, db: Database, setup: dict[str, Any], raw: Any, code: str, param: str | None
    ) -> None:
        result = ingest(db, [raw])
        outcome = result.outcomes[0]
        assert (outcome.status, outcome.code, outcome.param) == ("rejected", code, param)
        assert outcome.dead_letter_id is not None
        with db.read() as tx:
            letter = tx.session.get(DeadLetter, outcome.dead_letter_id)
            assert letter is not None and letter.status == "pending" and letter.code == code
        assert stored_events(db) == 0

    def test_skew_and_age_are_settings(self, db: Database, setup: dict[str, Any]) -> None:
        lenient = MeteringSettings(late_event_max_days=60, future_skew_seconds=3600)
        result = ingest(
            db,
            [
                tokens("old", time=NOW - timedelta(days=40)),
                tokens("soon", time=NOW + timedelta(minutes=30)),
            ],
            settings=lenient,
        )
        assert statuses(result) == ["accepted", "accepted"]

    def test_good_events_in_a_bad_batch_are_accepted(
        self, db: Database, setup: dict[str, Any]
    ) -> None:
        batch = [tokens("e1"), event("bad", subject="nobody", time=EARLIER), tokens("e2"), "junk"]
        result = ingest(db, batch)
        assert statuses(result) == ["accepted", "rejected", "accepted", "rejected"]
        assert (result.accepted, result.rejected) == (2, 2)
        assert total(db, setup["tokens"].id, setup["customer"].id) == 20

    def test_a_rejected_event_sent_twice_keeps_one_letter(
        self, db: Database, setup: dict[str, Any]
    ) -> None:
        bad = event("bad", subject="nobody", time=EARLIER)
        first = ingest(db, [bad]).outcomes[0]
        second = ingest(db, [bad]).outcomes[0]
        assert first.dead_letter_id == second.dead_letter_id
        with db.read() as tx:
            letter = tx.session.get(DeadLetter, first.dead_letter_id)
            assert letter is not None and letter.attempts == 2

    def test_nul_in_a_distinct_value_is_refused(self, db: Database, setup: dict[str, Any]) -> None:
        with db.transaction() as tx:
            create_meter(tx, key="seats", aggregation="unique_count", value_path="user")
        result = ingest(db, [tokens("e1", user="a\x00b"), tokens("e2", user="ab")])
        outcome = result.outcomes[0]
        assert (outcome.status, outcome.code, outcome.param) == (
            "rejected",
            "value_invalid",
            "data.user",
        )
        assert result.outcomes[1].status == "accepted"

    def test_filters_choose_the_meter(self, db: Database, setup: dict[str, Any]) -> None:
        with db.transaction() as tx:
            pro = create_meter(
                tx,
                key="pro_tokens",
                filters=[{"path": "tier", "op": "in", "value": ["pro", "team"]}],
            )
            big = create_meter(
                tx,
                key="big_requests",
                aggregation="count",
                filters=[{"path": "tokens", "op": "gte", "value": "100"}],
            )
        ingest(
            db,
            [
                event("a", time=EARLIER, data={"tokens": 100, "model": "m", "tier": "pro"}),
                event("b", time=EARLIER, data={"tokens": 5, "model": "m", "tier": "free"}),
                event("c", time=EARLIER, data={"tokens": "150", "model": "m"}),
            ],
        )
        customer_id = setup["customer"].id
        assert total(db, pro.id, customer_id) == 100
        assert total(db, big.id, customer_id) == 2
        assert total(db, setup["tokens"].id, customer_id) == 255


class TestDeadLetterReplay:
    def test_replay_after_the_customer_exists(self, db: Database, setup: dict[str, Any]) -> None:
        result = ingest(db, [tokens("e1", subject="late-co"), tokens("e2", subject="late-co")])
        assert statuses(result) == ["rejected", "rejected"]
        with db.transaction() as tx:
            replay = service.replay_dead_letters(tx, code="customer_not_found")
            assert replay.counts == {"rejected": 2}
        with db.transaction() as tx:
            newcomer = create_customer(tx, external_id="late-co")
        with db.transaction() as tx:
            replay = service.replay_dead_letters(tx)
            assert replay.counts == {"accepted": 2}
        assert total(db, setup["tokens"].id, newcomer.id) == 20
        with db.read() as tx:
            letters = service.list_dead_letters(tx, status="replayed").data
            assert len(letters) == 2 and all(letter.resolved_at is not None for letter in letters)
            assert service.list_dead_letters(tx).data == []
        with db.transaction() as tx:
            assert service.replay_dead_letters(tx).outcomes == []

    def test_replay_uses_the_first_receipt_time(
        self, db: Database, setup: dict[str, Any], clock: TestClock
    ) -> None:
        ingest(db, [event("e1", subject="late-co", data={"tokens": 1, "model": "m"})])
        clock.advance(days=2)
        with db.transaction() as tx:
            customer = create_customer(tx, external_id="late-co")
        with db.transaction() as tx:
            service.replay_dead_letters(tx)
        with db.read() as tx:
            stored = tx.session.scalar(select(MeteringEvent))
            assert stored is not None and stored.time == NOW and stored.customer_id == customer.id

    def test_a_letter_whose_event_arrived_meanwhile_is_resolved(
        self, db: Database, setup: dict[str, Any]
    ) -> None:
        ingest(db, [event("e1", time=EARLIER, data={"model": "m"})])
        ingest(db, [tokens("e1", 5)])
        with db.transaction() as tx:
            replay = service.replay_dead_letters(tx)
        assert replay.counts == {"conflict": 1}
        with db.read() as tx:
            assert (
                service.list_dead_letters(tx, status="discarded").data[0].code == "event_conflict"
            )

    def test_discard(self, db: Database, setup: dict[str, Any]) -> None:
        letter_id = ingest(db, ["junk"]).outcomes[0].dead_letter_id
        assert letter_id is not None
        with db.transaction() as tx:
            assert service.discard_dead_letter(tx, letter_id).status == "discarded"


class TestLate:
    def test_events_before_the_watermark_are_accepted_late(
        self, db: Database, setup: dict[str, Any]
    ) -> None:
        customer = setup["customer"]
        with db.transaction() as tx:
            service.mark_invoiced_through(tx, customer.id, NOW - timedelta(hours=1))
        result = ingest(
            db,
            [
                tokens("old", time=NOW - timedelta(hours=3)),
                tokens("new", time=NOW - timedelta(minutes=30)),
            ],
        )
        assert [(o.status, o.late) for o in result.outcomes] == [
            ("accepted", True),
            ("accepted", False),
        ]
        assert result.late == 1
        assert total(db, setup["tokens"].id, customer.id) == 20
        with db.transaction() as tx:
            through = service.late_seq_max(tx, customer.id)
            assert through is not None
            late = service.list_late_events(tx, customer_id=customer.id)
            assert [e.event_id for e in late] == ["old"]
            adjustment = service.late_usage_total(
                tx, meter_id=setup["tokens"].id, customer_id=customer.id, through_seq=through
            )
            assert adjustment == 10
            assert (
                service.late_usage_total(
                    tx, meter_id=setup["requests"].id, customer_id=customer.id, group_by=False
                )
                == 1
            )
            marked = service.mark_late_billed(
                tx, customer_id=customer.id, through_seq=through, billed_ref="in_1"
            )
            assert marked == 1
        with db.read() as tx:
            assert service.list_late_events(tx, customer_id=customer.id) == []
            billed = service.list_late_events(tx, customer_id=customer.id, include_billed=True)
            assert billed[0].billed_ref == "in_1"

    def test_the_watermark_never_moves_back(self, db: Database, setup: dict[str, Any]) -> None:
        customer = setup["customer"]
        with db.transaction() as tx:
            service.mark_invoiced_through(tx, customer.id, NOW)
            assert service.mark_invoiced_through(tx, customer.id, NOW - timedelta(days=1)) == NOW
            assert service.invoiced_through(tx, customer.id) == NOW

    def test_watermark_is_exclusive(self, db: Database, setup: dict[str, Any]) -> None:
        """invoiced_through is a period's exclusive end: an event at that instant belongs to
        the next period, which is not invoiced yet."""
        with db.transaction() as tx:
            service.mark_invoiced_through(tx, setup["customer"].id, EARLIER)
        assert ingest(db, [tokens("e1", time=EARLIER)]).outcomes[0].late is False

    def test_non_additive_late_usage_is_refused(self, db: Database, setup: dict[str, Any]) -> None:
        with db.transaction() as tx:
            peak = create_meter(tx, key="peak", aggregation="max")
        from tallybook.kit.errors import InvalidRequest

        with db.read() as tx, pytest.raises(InvalidRequest) as caught:
            service.late_usage_total(tx, meter_id=peak.id, customer_id=setup["customer"].id)
        assert caught.value.code == "usage_not_additive"
