"""How fast the period-close job closes a period, beside the raw SQL that reads the same usage.

    .venv/bin/python bench/invoice_run.py [--subscriptions 10000] [--batch 250] [--profile]

Builds a throwaway database ``tb_bench_invoice_run_<random>`` (dropped at the end): one plan
version with three metered prices (per unit, graduated, volume) on three meters, and N
customers subscribed on January 1 with 30 hourly rollup rows per meter each. The first
subscription is made through the services; the others are copies of its rows (setting up
10,000 subscriptions one service call at a time would take longer than the run measured).
The clock then moves to February 1, 02:00 (past the grace hour) and ``invoicing.close_periods``
runs once: it rates, finalizes, numbers, posts and hands to payments one invoice per
subscription, in batches of ``--batch`` per transaction.

Baseline, in the same run: the raw SQL that reads the same rollups for every subscription's
three prices (one set-based statement per batch, through psycopg), as periods per second.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import secrets
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final

import psycopg
from sqlalchemy import create_engine, insert, select, text

from tallybook.catalog import plans
from tallybook.catalog.meters import MeterInput
from tallybook.customers import service as customers_service
from tallybook.customers.models import Customer
from tallybook.db import Database
from tallybook.db.engine import normalize_url
from tallybook.db.migrate import upgrade
from tallybook.invoicing.models import Invoice
from tallybook.invoicing.tasks import close_due
from tallybook.kit.clock import TestClock, utc
from tallybook.kit.ids import new_id
from tallybook.metering import service as metering
from tallybook.subscriptions.models import Subscription, SubscriptionPeriod, SubscriptionPhase
from tallybook.subscriptions.tasks import advance_due
from tallybook.work.schedule import JobContext

ADMIN_URL: Final = os.environ.get(
    "TALLYBOOK_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
START = utc(2027, 1, 1)
CLOSE_AT = utc(2027, 2, 1, 2)
HOURS_WITH_USAGE = 30


def build_template(db: Database) -> tuple[str, list[str]]:
    """Meters, the plan version and one subscription, through the services."""
    with db.transaction() as tx:
        meters = [
            metering.define_meter(
                tx,
                MeterInput(
                    key=key,
                    event_type=f"{key}.used",
                    aggregation="sum",
                    value_path="value",
                    unit=key,
                ),
            ).id
            for key in ("input_tokens", "output_tokens", "requests")
        ]
        plan = plans.create_plan(tx, plans.PlanInput(key="bench", name="Bench"))
        tiers = [
            {"up_to": 100000, "unit_price": "0.00002"},
            {"up_to": 1000000, "unit_price": "0.000015", "flat_fee_minor": 100},
            {"up_to": None, "unit_price": "0.00001"},
        ]
        version = plans.create_version(
            tx,
            plan.id,
            {
                "currency": "USD",
                "interval": "month",
                "prices": [
                    {
                        "type": "usage",
                        "key": "in",
                        "name": "Input tokens",
                        "meter_id": meters[0],
                        "model": "graduated",
                        "tiers": tiers,
                    },
                    {
                        "type": "usage",
                        "key": "out",
                        "name": "Output tokens",
                        "meter_id": meters[1],
                        "model": "volume",
                        "tiers": tiers,
                    },
                    {
                        "type": "usage",
                        "key": "req",
                        "name": "Requests",
                        "meter_id": meters[2],
                        "model": "per_unit",
                        "unit_price": "0.001",
                        "included_quantity": "100",
                    },
                ],
            },
        )
        plans.publish(tx, version.id)
        customer = customers_service.create(
            tx, customers_service.CustomerInput(external_id="bench-0", currency="USD")
        )
        from tallybook.subscriptions import service as subscriptions
        from tallybook.subscriptions.domain import CreateRequest

        subscriptions.create(tx, CreateRequest(customer=customer.id, plan_version_id=version.id))
    return customer.id, meters


def _rows(tx: Any, model: Any, **where: Any) -> list[dict[str, Any]]:
    table = model.__table__
    query = select(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    return [dict(row._mapping) for row in tx.session.execute(query)]


def clone(db: Database, template_customer: str, count: int) -> list[str]:
    """Copies of the template's customer, subscription, phase and periods (new ids)."""
    with db.read() as tx:
        customer = _rows(tx, Customer, id=template_customer)[0]
        subscription = _rows(tx, Subscription, customer_id=template_customer)[0]
        phase = _rows(tx, SubscriptionPhase, subscription_id=subscription["id"])[0]
        periods = _rows(tx, SubscriptionPeriod, subscription_id=subscription["id"])
    customers, subs, phases, new_periods = [], [], [], []
    ids = [template_customer]
    for n in range(1, count):
        cid, sid, pid = new_id("cus"), new_id("sub"), new_id("sph")
        ids.append(cid)
        customers.append({**customer, "id": cid, "external_id": f"bench-{n}"})
        period_ids = {p["id"]: new_id("sper") for p in periods}
        subs.append(
            {
                **subscription,
                "id": sid,
                "customer_id": cid,
                "current_phase_id": pid,
                "current_period_id": period_ids.get(subscription["current_period_id"]),
            }
        )
        phases.append({**phase, "id": pid, "subscription_id": sid})
        new_periods += [{**p, "id": period_ids[p["id"]], "subscription_id": sid} for p in periods]
    with db.transaction() as tx:
        for model, rows in (
            (Customer, customers),
            (Subscription, subs),
            (SubscriptionPhase, phases),
            (SubscriptionPeriod, new_periods),
        ):
            for offset in range(0, len(rows), 2000):
                tx.session.execute(insert(model.__table__), rows[offset : offset + 2000])
    return ids


def load_rollups(url: str, customers: list[str], meters: list[str]) -> int:
    rng = random.Random(4)
    rows = 0
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        with cursor.copy(
            "COPY metering_rollups (meter_id, customer_id, window_start, dims_key, shard, "
            "event_count, quantity, updated_at) FROM STDIN"
        ) as copy:
            for customer in customers:
                for meter in meters:
                    for hour in rng.sample(range(24 * 30), HOURS_WITH_USAGE):
                        at = START + timedelta(hours=hour)
                        quantity = Decimal(rng.randrange(1, 60000))
                        copy.write_row((meter, customer, at, "", 0, 1, quantity, at))
                        rows += 1
        conn.commit()
    return rows


def raw_baseline(url: str, batch: int) -> tuple[float, int]:
    """The same usage reads as plain SQL: one set-based statement per batch of periods."""
    with psycopg.connect(url) as conn:
        requests = conn.execute(
            "SELECT s.customer_id, p.start_at, p.end_at FROM subscription_periods p "
            "JOIN subscriptions s ON s.id = p.subscription_id WHERE p.status = 'ended'"
        ).fetchall()
        meters = [r[0] for r in conn.execute("SELECT id FROM meters ORDER BY id")]
        started = time.perf_counter()
        for offset in range(0, len(requests), batch):
            chunk = [(c, s, e, m) for c, s, e in requests[offset : offset + batch] for m in meters]
            conn.execute(
                "SELECT r.idx, SUM(m.quantity) FROM unnest(%s::int[], %s::text[], %s::text[], "
                "%s::timestamptz[], %s::timestamptz[]) AS r(idx, meter_id, customer_id, start_at, "
                "end_at) JOIN metering_rollups m ON m.meter_id = r.meter_id AND m.customer_id = "
                "r.customer_id AND m.window_start >= r.start_at AND m.window_start < r.end_at "
                "GROUP BY r.idx",
                (
                    list(range(len(chunk))),
                    [m for _, _, _, m in chunk],
                    [c for c, _, _, _ in chunk],
                    [s for _, s, _, _ in chunk],
                    [e for _, _, e, _ in chunk],
                ),
            ).fetchall()
        return time.perf_counter() - started, len(requests)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--first-invoices",
        action="store_true",
        help="customers have no receivable account yet (every invoice opens one)",
    )
    args = parser.parse_args()
    name = f"tb_bench_invoice_run_{secrets.token_hex(4)}"
    admin = create_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = normalize_url(ADMIN_URL).set(database=name)
    plain_url = url.render_as_string(hide_password=False).replace("+psycopg", "")
    clock = TestClock(START)
    db = Database(url, clock=clock)
    try:
        upgrade(db.engine)
        print(f"database {name}: {args.subscriptions:,} subscriptions × 3 metered prices")
        started = time.perf_counter()
        template, meters = build_template(db)
        customers = clone(db, template, args.subscriptions)
        rollups = load_rollups(plain_url, customers, meters)
        clock.set(CLOSE_AT)
        advance_due(db.with_clock(clock), JobContext(owner="bench"))
        # The copies were made before the renewal: renew them the same way, in bulk.
        with db.transaction() as tx:
            tx.session.execute(text("ANALYZE"))
        _renew_copies(db)
        if not args.first_invoices:
            _open_receivables(db, customers)
        print(f"set-up {time.perf_counter() - started:.0f} s ({rollups:,} rollup rows)")
        print(f"load average at the start of the close: {_loadavg()}")
        profiler = cProfile.Profile() if args.profile else None
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        report = close_due(db, JobContext(owner="bench", options={"batch": args.batch}))
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - started
        print(f"load average at the end of the close: {_loadavg()}")
        with db.read() as tx:
            finalized = tx.session.scalar(
                text("SELECT count(*) FROM invoicing_invoices WHERE kind = 'cycle'")
            )
            total = tx.session.scalar(text("SELECT sum(total_minor) FROM invoicing_invoices"))
        raw_seconds, periods = raw_baseline(plain_url, args.batch)
        job_rate = (finalized or 0) / elapsed
        raw_rate = periods / raw_seconds
        print(f"report: {report}")
        print(f"{'':32} {'per second':>12} {'ratio':>8}")
        print(f"{'raw SQL, the same rollup reads':32} {raw_rate:12,.0f} {1:8.1f}")
        print(f"{'invoicing.close_periods':32} {job_rate:12,.0f} {raw_rate / job_rate:8.1f}")
        print(f"{finalized:,} invoices in {elapsed:.1f} s, {Decimal(total or 0) / 100:,.2f} USD")
        if profiler is not None:
            if os.environ.get("PROFILE_OUT"):
                profiler.dump_stats(os.environ["PROFILE_OUT"])
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(
                os.environ.get("SORT", "cumulative")
            ).print_stats(120)
            print(out.getvalue())
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def _open_receivables(db: Database, customers: list[str]) -> None:
    """Steady state: every customer was invoiced before, so its receivable account exists."""
    from tallybook.invoicing import postings

    for offset in range(0, len(customers), 1000):
        with db.transaction() as tx:
            for customer_id in customers[offset : offset + 1000]:
                postings.account_id(tx, postings.AR, "USD", customer_id)


def _renew_copies(db: Database) -> None:
    """The template was renewed by the job; give every copy the same ended January period and
    a current February one (what ``subscriptions.advance`` would have written)."""
    with db.transaction() as tx:
        template = tx.session.scalar(
            select(Subscription).where(
                Subscription.customer_id.in_(
                    select(Customer.id).where(Customer.external_id == "bench-0")
                )
            )
        )
        assert template is not None
        feb = _rows(tx, SubscriptionPeriod, id=template.current_period_id)[0]
        tx.session.execute(
            text(
                "UPDATE subscription_periods SET status = 'ended', end_reason = 'renewed' "
                "WHERE status = 'current' AND subscription_id <> :template"
            ),
            {"template": template.id},
        )
        subs = list(
            tx.session.execute(select(Subscription.id).where(Subscription.id != template.id))
        )
        rows = []
        updates = []
        for (sub_id,) in subs:
            period_id = new_id("sper")
            rows.append({**feb, "id": period_id, "subscription_id": sub_id})
            updates.append({"sid": sub_id, "pid": period_id})
        for offset in range(0, len(rows), 2000):
            tx.session.execute(insert(SubscriptionPeriod.__table__), rows[offset : offset + 2000])
        tx.session.execute(
            text(
                "UPDATE subscriptions SET current_period_id = :pid, current_period_start_at = "
                ":start, current_period_end_at = :end, next_action_at = :end WHERE id = :sid"
            ).bindparams(start=feb["start_at"], end=feb["end_at"]),
            updates,
        )
        assert tx.session.scalar(select(Invoice.id).limit(1)) is None


if __name__ == "__main__":
    main()
