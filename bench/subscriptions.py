"""How fast subscriptions renew at a period boundary, beside the raw writes a renewal needs, and
how fast rating prices a period.

    .venv/bin/python bench/subscriptions.py [--subscriptions 2000] [--ratings 20000]

Builds a throwaway database ``tb_bench_subscriptions_<random>`` (dropped at the end) with N
monthly subscriptions (an in-advance fee and a graduated usage price), moves the clock past the
period end and runs the ``subscriptions.advance`` job once: chunks of renewals, one
transaction per chunk and a savepoint per renewal (lock the chunk, end each period, open the
next, record the new period's fee, claim and complete the chunk's job runs). The baseline is
the same statements as plain SQL on one psycopg connection, one transaction per subscription,
in the same run. Then it rates a two-phase period (usage under two versions, an in-arrears
fee, a minimum true-up) in a loop.
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Final

import psycopg
from sqlalchemy import create_engine, text

from tallybook.catalog import plans
from tallybook.catalog.domain import Interval, IntervalUnit, VersionTerms
from tallybook.catalog.meters import MeterInput
from tallybook.catalog.pricing import PriceDef, parse_price
from tallybook.customers import service as customers
from tallybook.db import Database
from tallybook.db.engine import normalize_url
from tallybook.db.migrate import upgrade
from tallybook.kit.clock import TestClock, utc
from tallybook.kit.ids import new_id
from tallybook.metering import service as metering
from tallybook.rating import BillingPeriod, RatingPhase, rate_subscription_period
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.domain import CreateRequest
from tallybook.subscriptions.tasks import advance_due
from tallybook.work.schedule import JobContext

ADMIN_URL: Final = os.environ.get(
    "TALLYBOOK_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
START = utc(2027, 1, 1)


def price(price_id: str, **data: object) -> PriceDef:
    data.setdefault("type", "usage" if "meter_id" in data else "flat")
    return replace(parse_price(data), id=price_id)


def terms(*prices: PriceDef, version_id: str, minimum: int | None = None) -> VersionTerms:
    return VersionTerms(
        plan_version_id=version_id,
        plan_id="plan_bench",
        plan_key="bench",
        plan_name="Bench",
        version=1,
        status="published",
        currency="USD",
        interval=Interval(IntervalUnit.MONTH),
        prices=prices,
        minimum_commitment_minor=minimum,
    )


def build(db: Database, count: int) -> None:
    with db.transaction() as tx:
        meter = metering.define_meter(
            tx,
            MeterInput(
                key="tokens",
                event_type="llm.request",
                aggregation="sum",
                value_path="tokens",
                filters=[],
                group_by={},
                unit="tokens",
            ),
        )
        plan = plans.create_plan(tx, plans.PlanInput(key="bench", name="Bench"))
        definition = {
            "currency": "USD",
            "interval": "month",
            "prices": [
                {"type": "flat", "amount_minor": 2000},
                {
                    "type": "usage",
                    "meter_id": meter.id,
                    "model": "graduated",
                    "tiers": [
                        {"up_to": 1000000, "unit_price": "0.000002"},
                        {"up_to": None, "unit_price": "0.000001"},
                    ],
                },
            ],
        }
        version = plans.create_version(tx, plan.id, definition)
        plans.publish(tx, version.id)
    for batch_start in range(0, count, 200):
        with db.transaction() as tx:
            for index in range(min(200, count - batch_start)):
                customer = customers.create(
                    tx, customers.CustomerInput(external_id=f"c-{batch_start + index}")
                )
                subscriptions.create(
                    tx, CreateRequest(customer=customer.id, plan_version_id=version.id)
                )


def raw_baseline(url: str, count: int) -> float:
    """The renewal's writes as plain SQL, one transaction per subscription."""
    now = START + timedelta(days=31)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id, customer_id, current_period_id FROM subscriptions ORDER BY id"
        ).fetchall()
        started = time.perf_counter()
        for sub_id, customer_id, period_id in rows[:count]:
            with conn.transaction():
                conn.execute("SELECT * FROM subscriptions WHERE id = %s FOR UPDATE", (sub_id,))
                conn.execute(
                    "INSERT INTO job_runs (job, run_key, status, owner, attempts, checkpoint, "
                    "started_at) VALUES ('bench', %s, 'running', 'b', 1, '{}', %s)",
                    (sub_id, now),
                )
                conn.execute(
                    "UPDATE subscription_periods SET status = 'ended', end_reason = 'renewed' "
                    "WHERE id = %s",
                    (period_id,),
                )
                new_period = new_id("sper")
                conn.execute(
                    "INSERT INTO subscription_periods (id, subscription_id, kind, status, "
                    "start_at, end_at, nominal_start_at, nominal_end_at, created_at) VALUES "
                    "(%s, %s, 'regular', 'current', %s, %s, %s, %s, %s)",
                    (
                        new_period,
                        sub_id,
                        now,
                        now + timedelta(days=28),
                        now,
                        now + timedelta(days=28),
                        now,
                    ),
                )
                conn.execute(
                    "INSERT INTO subscription_charges (id, subscription_id, customer_id, "
                    "period_id, kind, description, currency, amount_minor, credited_minor, "
                    "service_start_at, service_end_at, breakdown, status, invoice_now, "
                    "dedup_key, created_at) VALUES (%s, %s, %s, %s, 'fee_advance', 'fee', 'USD', "
                    "2000, 0, %s, %s, '{}', 'pending', false, %s, %s)",
                    (
                        new_id("pch"),
                        sub_id,
                        customer_id,
                        new_period,
                        now,
                        now + timedelta(days=28),
                        f"bench:{new_period}",
                        now,
                    ),
                )
                conn.execute(
                    "UPDATE subscriptions SET current_period_id = %s, next_action_at = %s "
                    "WHERE id = %s",
                    (new_period, now + timedelta(days=28), sub_id),
                )
                conn.execute(
                    "UPDATE job_runs SET status = 'succeeded' WHERE job = 'bench' AND run_key = %s",
                    (sub_id,),
                )
        return time.perf_counter() - started


def rating_loop(count: int) -> float:
    tokens_b = price(
        "p1",
        meter_id="m",
        model="graduated",
        tiers=[{"up_to": 1000, "unit_price": "0.01"}, {"up_to": None, "unit_price": "0.008"}],
        included_quantity="100",
    )
    tokens_p = price(
        "p2",
        meter_id="m",
        model="volume",
        tiers=[{"up_to": 5000, "unit_price": "0.006"}, {"up_to": None, "unit_price": "0.004"}],
    )
    arrears = price("p3", amount_minor=999, timing="in_arrears")
    basic = terms(tokens_b, arrears, version_id="pv_b", minimum=10000)
    pro = terms(tokens_p, arrears, version_id="pv_p")
    period = BillingPeriod.whole(utc(2026, 11, 1), utc(2026, 12, 1))
    phases = [
        RatingPhase("a", period.start, utc(2026, 11, 16), basic),
        RatingPhase("b", utc(2026, 11, 16), None, pro),
    ]
    usage = {("a", "p1"): Decimal("12345.678"), ("b", "p2"): Decimal("7777")}
    started = time.perf_counter()
    for _ in range(count):
        rate_subscription_period(period, phases, usage, advance_charged_minor=1500)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=2000)
    parser.add_argument("--ratings", type=int, default=20000)
    args = parser.parse_args()
    name = f"tb_bench_subscriptions_{secrets.token_hex(4)}"
    admin = create_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = normalize_url(ADMIN_URL).set(database=name)
    try:
        clock = TestClock(START)
        db = Database(url, clock=clock)
        upgrade(db.engine)
        build(db, args.subscriptions)
        clock.set(START + timedelta(days=31, minutes=1))
        started = time.perf_counter()
        report = advance_due(db, JobContext(owner="bench"))
        job_seconds = time.perf_counter() - started
        assert report["advanced"] == args.subscriptions, report
        plain_url = url.render_as_string(hide_password=False).replace("+psycopg", "")
        raw_seconds = raw_baseline(plain_url, args.subscriptions)
        db.dispose()
        rating_seconds = rating_loop(args.ratings)
        n = args.subscriptions
        print(f"renewals: {n} subscriptions")
        print(f"  subscriptions.advance job  {n / job_seconds:8.0f} /s  ({job_seconds:.2f} s)")
        print(f"  raw SQL, same writes       {n / raw_seconds:8.0f} /s  ({raw_seconds:.2f} s)")
        print(f"  ratio (job time / raw time) {job_seconds / raw_seconds:8.1f}")
        print(
            f"rating a two-phase period: {args.ratings / rating_seconds:,.0f} periods/s "
            f"({rating_seconds / args.ratings * 1e6:.0f} µs each, 5 lines)"
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
