"""Crash safety of the period-close job: ``tallybook jobs run-due`` killed with SIGKILL at
random moments, many times, over a few hundred subscriptions; then a rerun. Every period ends
with exactly one invoice, numbers have no gap, and ``tallybook ledger check`` passes.

The subprocess runs on the real clock, so the subscriptions are set up to have started 40 days
before now (their first period ended ten days ago, past its grace window)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tallybook.db import Database
from tallybook.invoicing.models import Invoice
from tallybook.kit.clock import TestClock, isoformat_z
from tallybook.metering import service as metering
from tallybook.subscriptions.tasks import advance_due
from tallybook.work.schedule import JobContext
from tests.fixtures.catalog_factories import create_subscription, create_version, flat_price
from tests.fixtures.databases import database_url_of
from tests.fixtures.factories import create_customer, create_meter

pytestmark = [pytest.mark.slow, pytest.mark.pg_only]

TALLYBOOK = os.path.join(os.path.dirname(sys.executable), "tallybook")
SUBSCRIPTIONS = 300
KILLS = 8


def _setup(db: Database) -> None:
    start = datetime.now(UTC).replace(microsecond=0, second=0, minute=0) - timedelta(days=40)
    clock = TestClock(start)
    at = db.with_clock(clock)
    with at.transaction() as tx:
        meter = create_meter(tx, key="tokens", event_type="tokens.used", value_path="value")
        version = create_version(
            tx,
            prices=[
                flat_price(1500),
                {
                    "type": "usage",
                    "key": "tokens",
                    "name": "Tokens",
                    "meter_id": meter.id,
                    "model": "per_unit",
                    "unit_price": "0.001",
                },
            ],
        )
        customers = []
        for _ in range(SUBSCRIPTIONS):
            customer = create_customer(tx)
            create_subscription(tx, customer=customer, version=version)
            customers.append(customer)
    clock.advance(days=5)
    events = [
        {
            "specversion": "1.0",
            "id": f"{customer.id}-{n}",
            "source": "crash",
            "type": "tokens.used",
            "subject": customer.external_id,
            "time": isoformat_z(start + timedelta(days=1 + n)),
            "data": {"value": 100 * (n + 1)},
        }
        for customer in customers
        for n in range(3)
    ]
    for offset in range(0, len(events), 500):
        with at.transaction() as tx:
            metering.ingest_events(tx, events[offset : offset + 500])
    clock.set(datetime.now(UTC))
    advance_due(at, JobContext(owner="setup"))


def _run(env: dict[str, str], *, kill_after: float | None) -> int | None:
    process = subprocess.Popen(
        [TALLYBOOK, "jobs", "run-due", "--only", "invoicing.close_periods"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if kill_after is None:
        return process.wait(timeout=120)
    try:
        return process.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return None


def _check_no_duplicates(db: Database) -> int:
    with db.read() as tx:
        rows = list(
            tx.session.execute(select(Invoice.subscription_id, Invoice.period_id, Invoice.kind))
        )
    counts = Counter(rows)
    assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1]
    return sum(1 for _, _, kind in rows if kind == "cycle")


def test_killing_the_close_job_at_random_never_bills_twice_or_skips(pg_db: Database) -> None:
    _setup(pg_db)
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of(pg_db),
        "TALLYBOOK_LOG_LEVEL": "ERROR",
        "TALLYBOOK_INVOICE_CLOSE_BATCH": "12",
    }
    rng = random.Random(6)
    killed = 0
    for _ in range(KILLS):
        code = _run(env, kill_after=rng.uniform(1.0, 3.5))
        killed += code is None
        _check_no_duplicates(pg_db)
        if code is not None:
            break
    final = subprocess.run(
        [TALLYBOOK, "jobs", "run-due", "--only", "invoicing.close_periods"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    assert _check_no_duplicates(pg_db) == SUBSCRIPTIONS
    with pg_db.read() as tx:
        by_series: dict[str, list[int]] = {}
        for number in tx.session.scalars(select(Invoice.number)):
            assert number is not None
            series, _, value = number.rpartition("-")
            by_series.setdefault(series, []).append(int(value))
        total = sum(tx.session.scalars(select(Invoice.total_minor)))
    for values in by_series.values():  # gap-free across the kills
        assert sorted(values) == list(range(1, len(values) + 1))
    # Each subscription: two fees of 15.00 and 600 tokens × 0.001 = 0.60.
    assert total == SUBSCRIPTIONS * (1500 + 1500 + 60)
    check = subprocess.run(
        [TALLYBOOK, "ledger", "check"], env=env, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert killed >= 1
