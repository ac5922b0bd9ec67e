"""Meters defined after events were stored count those events exactly once: exact usage while
the backfill runs, resumable after a crash, never twice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from tallybook.catalog import meters as catalog_meters
from tallybook.catalog.meters import MeterInput
from tallybook.db import Database
from tallybook.kit.clock import utc
from tallybook.metering import backfill, service
from tallybook.metering.ingest import rollups
from tests.conftest import TEST_EPOCH
from tests.fixtures.factories import create_customer, create_meter
from tests.metering.helpers import event, ingest

START, END = utc(2026, 10, 1), utc(2026, 12, 1)


def total(
    db: Database, meter_id: str, customer_id: str, start: Any = START, end: Any = END
) -> Decimal:
    with db.read() as tx:
        value = service.usage_total(
            tx, meter_id=meter_id, customer_id=customer_id, start=start, end=end
        )
    assert isinstance(value, Decimal)
    return value


@pytest.fixture
def history(db: Database) -> dict[str, Any]:
    """30 events of a type no meter counted yet (two of them without a value)."""
    with db.transaction() as tx:
        customer = create_customer(tx, external_id="acme")
    events = [
        event(
            f"e{i}",
            time=TEST_EPOCH - timedelta(minutes=37 * i),
            data={"tokens": i, "model": "m"} if i % 15 else {"model": "m"},
        )
        for i in range(30)
    ]
    assert ingest(db, events).accepted == 30
    return {"customer": customer, "expected": sum(i for i in range(30) if i % 15)}


def test_a_meter_defined_later_counts_stored_events(
    db: Database, history: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backfill, "BACKFILL_BATCH_MAX", 7)
    with db.transaction() as tx:
        meter = create_meter(tx, key="tokens")
    assert meter.backfilled_at is None
    customer_id = history["customer"].id
    # Exact before the backfill ran (computed from raw events).
    assert total(db, meter.id, customer_id) == history["expected"]
    # More events arrive meanwhile: counted on ingestion, not owed.
    ingest(
        db,
        [
            event(
                "late1", time=TEST_EPOCH - timedelta(minutes=1), data={"tokens": 100, "model": "m"}
            )
        ],
    )
    expected = history["expected"] + 100

    partial = backfill.backfill_meter(db, meter.id, owner="w1", batches_max=2)
    assert partial["done"] is False
    assert total(db, meter.id, customer_id) == expected

    done = backfill.run_backfills(db, owner="w1")
    assert done["completed"] == 1
    meter_id = meter.id
    with db.read() as tx:
        assert catalog_meters.get_meter(tx, meter_id).backfilled_at is not None
    # Now read from rollups, at arbitrary instants too.
    assert total(db, meter_id, customer_id) == expected
    cut = TEST_EPOCH - timedelta(minutes=37 * 10, seconds=1)
    assert total(db, meter_id, customer_id, start=cut) == sum(range(1, 11)) + 100
    # Running again changes nothing.
    assert backfill.run_backfills(db, owner="w1")["meters"] == 0
    assert total(db, meter_id, customer_id) == expected


def test_a_crash_mid_backfill_resumes_without_double_counting(
    db: Database, history: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backfill, "BACKFILL_BATCH_MAX", 5)
    with db.transaction() as tx:
        meter = create_meter(tx, key="tokens")
    real_apply = rollups.apply
    calls = {"n": 0}

    def crashing_apply(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        real_apply(*args, **kwargs)
        if calls["n"] == 3:
            raise RuntimeError("worker died after writing rollups, before commit")

    monkeypatch.setattr(rollups, "apply", crashing_apply)
    with pytest.raises(RuntimeError):
        backfill.backfill_meter(db, meter.id, owner="w1")
    monkeypatch.setattr(rollups, "apply", real_apply)
    assert backfill.backfill_meter(db, meter.id, owner="w1")["done"] is True
    assert total(db, meter.id, history["customer"].id) == history["expected"]


def test_new_versions_count_the_past_too(db: Database, history: dict[str, Any]) -> None:
    with db.transaction() as tx:
        v1 = create_meter(tx, key="tokens")
    backfill.run_backfills(db, owner="w1")
    with db.transaction() as tx:
        v2 = service.define_meter(
            tx,
            MeterInput(
                key="tokens",
                event_type="llm.request",
                aggregation="max",
                value_path="tokens",
            ),
        )
    assert v2.version == 2
    backfill.run_backfills(db, owner="w1")
    customer_id = history["customer"].id
    assert total(db, v1.id, customer_id) == history["expected"]
    assert total(db, v2.id, customer_id) == 29


def test_status_lists_backfilling_meters(db: Database, history: dict[str, Any]) -> None:
    with db.transaction() as tx:
        meter = create_meter(tx, key="tokens")
    with db.read() as tx:
        assert [m.id for m in service.metering_status(tx).backfilling] == [meter.id]
    backfill.run_backfills(db, owner="w1")
    with db.read() as tx:
        assert service.metering_status(tx).backfilling == []
