"""Two workers closing the same periods at once never make two invoices for one period
(PostgreSQL, real parallel connections)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import select

from tallybook.db import Database
from tallybook.invoicing import service as invoicing
from tallybook.invoicing.models import Invoice
from tallybook.invoicing.tasks import close_due
from tallybook.kit.clock import TestClock, utc
from tallybook.ledger import service as ledger
from tallybook.subscriptions.tasks import advance_due
from tallybook.work.schedule import JobContext
from tests.fixtures.catalog_factories import create_subscription, create_version, flat_price
from tests.fixtures.factories import create_customer, create_meter

pytestmark = pytest.mark.pg_only


def test_two_workers_never_bill_one_period_twice(pg_db: Database) -> None:
    clock = TestClock(utc(2026, 11, 1))
    db = pg_db.with_clock(clock)
    with db.transaction() as tx:
        meter = create_meter(tx, key="tokens", event_type="tokens.used", value_path="value")
        version = create_version(
            tx,
            prices=[
                flat_price(1000),
                {
                    "type": "usage",
                    "key": "tokens",
                    "name": "Tokens",
                    "meter_id": meter.id,
                    "model": "per_unit",
                    "unit_price": "0.01",
                },
            ],
        )
        customers = [create_customer(tx) for _ in range(30)]
        for customer in customers:
            create_subscription(tx, customer=customer, version=version)
            # Two subscriptions for some customers: one invoice per customer per batch.
            if customer is customers[0] or customer is customers[1]:
                create_subscription(tx, customer=customer, version=version)
    clock.set(utc(2026, 12, 1, 2))
    advance_due(db, JobContext(owner="setup"))
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            barrier.wait()
            close_due(db, JobContext(owner=name, options={"batch": 7}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.read() as tx:
        rows = list(
            tx.session.execute(
                select(Invoice.subscription_id, Invoice.period_id, Invoice.kind, Invoice.number)
            )
        )
        report = ledger.check_invariants(tx)
    keys = Counter((s, p, k) for s, p, k, _ in rows)
    assert all(count == 1 for count in keys.values())
    assert sum(1 for _, _, kind, _ in rows if kind == "cycle") == 32
    # Every fee billed exactly once: November's on an opening invoice or, when the job
    # first ran after the period had ended, on November's closing invoice with December's.
    with db.read() as tx:
        totals = sum(tx.session.scalars(select(Invoice.total_minor)))
    assert totals == 32 * (1000 + 1000)
    numbers = sorted(int(n.rsplit("-", 1)[1]) for _, _, _, n in rows if n.startswith("TB-2026"))
    assert numbers == list(range(1, len(numbers) + 1))
    assert report.ok, report


def test_finalizing_one_draft_from_two_connections_makes_one_invoice(pg_db: Database) -> None:
    clock = TestClock(utc(2026, 11, 1))
    db = pg_db.with_clock(clock)
    with db.transaction() as tx:
        subscription = create_subscription(tx).subscription
    clock.set(utc(2026, 12, 1, 0, 10))
    advance_due(db, JobContext(owner="setup"))
    close_due(db, JobContext(owner="setup"))
    with db.read() as tx:
        draft_id = tx.session.scalar(select(Invoice.id).where(Invoice.status == "draft"))
    assert draft_id is not None
    barrier = threading.Barrier(4)
    results: list[str | None] = []

    def finalize() -> None:
        barrier.wait()
        with db.transaction() as tx:
            results.append(invoicing.finalize_invoice(tx, draft_id).number)

    threads = [threading.Thread(target=finalize) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and results[0] is not None
    with db.read() as tx:
        cycle = list(
            tx.session.execute(
                select(Invoice.status).where(
                    Invoice.subscription_id == subscription.id, Invoice.kind == "cycle"
                )
            )
        )
    assert [status for (status,) in cycle] == ["open"]
