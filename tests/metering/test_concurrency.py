"""Real parallel connections on PostgreSQL: overlapping batches count every event once and
never deadlock; invoicing's watermark and ingestion are ordered by the customer row lock."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from tallybook.catalog.meter_models import Aggregation
from tallybook.db import Database
from tallybook.metering import service
from tests.conftest import TEST_EPOCH
from tests.fixtures.factories import create_customer, create_meter
from tests.metering.helpers import event, ingest

pytestmark = pytest.mark.pg_only

WORKERS = 8
BATCHES_PER_WORKER = 12
POOL = 600


def test_overlapping_batches_count_each_event_once(pg_db: Database) -> None:
    with pg_db.transaction() as tx:
        customers = [create_customer(tx, external_id=f"c{i}") for i in range(5)]
        tokens = create_meter(tx, key="tokens", group_by={"model": "model"})
        seats = create_meter(
            tx, key="seats", aggregation=Aggregation.UNIQUE_COUNT, value_path="user"
        )
    pool = [
        event(
            f"e{i}",
            subject=f"c{i % 5}",
            time=TEST_EPOCH - timedelta(minutes=i % 240),
            data={"tokens": i, "model": f"m{i % 3}", "user": f"u{i % 17}"},
        )
        for i in range(POOL)
    ]

    def worker(seed: int) -> list[tuple[str, str]]:
        rng = random.Random(seed)
        seen: list[tuple[str, str]] = []
        for _ in range(BATCHES_PER_WORKER):
            batch = rng.sample(pool, 100)
            result = ingest(pg_db, batch)
            seen += [(o.event_id or "", o.status) for o in result.outcomes]
        return seen

    with ThreadPoolExecutor(WORKERS) as executor:
        results = [r for chunk in executor.map(worker, range(WORKERS)) for r in chunk]
    accepted = [event_id for event_id, status in results if status == "accepted"]
    assert len(accepted) == len(set(accepted)), "an event was accepted twice"
    assert {status for _, status in results} <= {"accepted", "duplicate"}
    sent = {int(event_id[1:]) for event_id, _ in results}
    with pg_db.read() as tx:
        for c, customer in enumerate(customers):
            mine = [i for i in sent if i % 5 == c]
            value = service.usage_total(
                tx,
                meter_id=tokens.id,
                customer_id=customer.id,
                start=TEST_EPOCH - timedelta(days=1),
                end=TEST_EPOCH + timedelta(hours=1),
            )
            assert value == Decimal(sum(mine))
            distinct = service.usage_total(
                tx,
                meter_id=seats.id,
                customer_id=customer.id,
                start=TEST_EPOCH - timedelta(days=1),
                end=TEST_EPOCH + timedelta(hours=1),
            )
            assert distinct == len({i % 17 for i in mine})


def _wait_until_blocked(db: Database, application: str) -> None:
    """Poll pg_stat_activity until a backend waits on a lock (no timing assertion)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with db.engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError(f"{application} never blocked")


def test_an_event_racing_invoicing_is_marked_late(pg_db: Database) -> None:
    with pg_db.transaction() as tx:
        customer = create_customer(tx, external_id="acme")
        create_meter(tx, key="tokens")
    period_end = TEST_EPOCH - timedelta(hours=1)
    outcome: dict[str, Any] = {}
    with pg_db.transaction() as invoicing:
        service.mark_invoiced_through(invoicing, customer.id, period_end)

        def send() -> None:
            result = ingest(
                pg_db,
                [event("racer", time=period_end - timedelta(minutes=5), data={"tokens": 7})],
            )
            outcome["late"] = result.outcomes[0].late

        sender = threading.Thread(target=send)
        sender.start()
        _wait_until_blocked(pg_db, "ingestion")
        # Invoicing reads the period while ingestion of this customer waits.
        assert (
            service.usage_total(
                invoicing,
                meter_id=service.get_meter_by_key(invoicing, "tokens").id,
                customer_id=customer.id,
                start=period_end - timedelta(days=1),
                end=period_end,
            )
            == 0
        )
    sender.join(timeout=30)
    assert outcome == {"late": True}
    with pg_db.read() as tx:
        assert [e.event_id for e in service.list_late_events(tx, customer_id=customer.id)] == [
            "racer"
        ]


def test_invoicing_waits_for_ingestion_in_flight(pg_db: Database) -> None:
    with pg_db.transaction() as tx:
        customer = create_customer(tx, external_id="acme")
        tokens = create_meter(tx, key="tokens")
    period_end = TEST_EPOCH - timedelta(hours=1)
    seen: dict[str, Any] = {}
    with pg_db.transaction() as ingesting:
        result = service.ingest_events(
            ingesting, [event("early", time=period_end - timedelta(minutes=5), data={"tokens": 3})]
        )
        assert result.outcomes[0].late is False

        def invoice() -> None:
            with pg_db.transaction() as tx:
                service.mark_invoiced_through(tx, customer.id, period_end)
                seen["usage"] = service.usage_total(
                    tx,
                    meter_id=tokens.id,
                    customer_id=customer.id,
                    start=period_end - timedelta(days=1),
                    end=period_end,
                )

        invoicer = threading.Thread(target=invoice)
        invoicer.start()
        _wait_until_blocked(pg_db, "invoicing")
    invoicer.join(timeout=30)
    # The event committed before invoicing read the period: it is billed, not late.
    assert seen == {"usage": 3}
