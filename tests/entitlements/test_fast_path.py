"""The PostgreSQL hot path answers exactly as the portable path, over random customers:
several subscriptions, payment statuses, overrides, reservations and usage at the edges of
the period's hours."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallybook.db import Database
from tallybook.db.hot import HotReads
from tallybook.entitlements import fast_pg
from tallybook.entitlements import service as entitlements
from tallybook.entitlements.fast import fast_check_async
from tallybook.kit.clock import TestClock, isoformat_z
from tallybook.kit.errors import InvalidRequest
from tallybook.metering import service as metering
from tallybook.subscriptions import service as subscriptions
from tests.entitlements.conftest import checked
from tests.fixtures.aio import run_async
from tests.fixtures.catalog_factories import create_subscription, create_version
from tests.fixtures.grants_factories import Metered, metered_setup, send_usage

subscription_specs = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(0, 400)),
        st.sampled_from(["hard", "soft"]),
        st.sampled_from(["active", "active", "past_due", "unpaid"]),
    ),
    min_size=1,
    max_size=3,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    specs=subscription_specs,
    minutes=st.integers(0, 300),
    usage=st.lists(st.tuples(st.integers(-400, 4), st.integers(1, 90)), max_size=6),
    override=st.one_of(st.none(), st.integers(0, 300)),
    reserved=st.integers(0, 50),
    quantities=st.lists(st.one_of(st.none(), st.integers(0, 200)), min_size=1, max_size=3),
)
def test_the_hot_path_agrees_with_the_portable_path(
    pg_db: Database,
    clock: TestClock,
    specs: list[tuple[int | None, str, str]],
    minutes: int,
    usage: list[tuple[int, int]],
    override: int | None,
    reserved: int,
    quantities: list[int | None],
) -> None:
    clock.advance(minutes=7)  # periods start off the hour
    with pg_db.transaction() as tx:
        limit, enforcement, _ = specs[0]
        setup = metered_setup(tx, limit=limit, enforcement=enforcement)
        ids = [setup.subscription.id]
        for extra_limit, extra_enforcement, _ in specs[1:]:
            version = create_version(
                tx,
                entitlements=[
                    {
                        "feature": setup.feature.id,
                        "limit": None if extra_limit is None else str(extra_limit),
                        "enforcement": extra_enforcement,
                    }
                ],
                prices=[],
            )
            ids.append(
                create_subscription(tx, customer=setup.customer, version=version).subscription.id
            )
    with pg_db.transaction() as tx:
        for subscription_id, (_, _, status) in zip(ids, specs, strict=True):
            if status in ("past_due", "unpaid"):
                subscriptions.mark_past_due(tx, subscription_id)
            if status == "unpaid":
                subscriptions.mark_unpaid(tx, subscription_id)
    clock.advance(minutes=minutes)
    for offset, amount in usage:
        at = max(
            clock.now() + timedelta(minutes=offset), setup.subscription.current_period_start_at
        )  # type: ignore[type-var]
        send_usage(pg_db, setup.customer, amount, time=at)
    if override is not None:
        with pg_db.transaction() as tx:
            entitlements.create_override(
                tx,
                entitlements.OverrideInput(
                    customer=setup.customer.id, feature=setup.feature.id, limit=override, reason="r"
                ),
            )
    if reserved:
        with pg_db.transaction() as tx:
            entitlements.reserve(
                tx,
                entitlements.ReservationInput(
                    customer=setup.customer.id,
                    feature=setup.feature.key,
                    quantity=Decimal(reserved),
                ),
                policies=entitlements.Policies(unpaid=entitlements.UnpaidPolicy.KEEP),
            )
    for quantity in quantities:
        for feature in (setup.feature.key, setup.flag.key):
            checked(pg_db, setup.customer.external_id, feature, quantity, expect_fast=True)


def rows_read(plan: dict[str, Any], table: str) -> float:
    """Rows a plan took from ``table`` (returned or filtered out), over every loop."""
    own = 0.0
    if plan.get("Relation Name") == table:
        loops = plan.get("Actual Loops", 1)
        removed = plan.get("Rows Removed by Filter", 0) + plan.get(
            "Rows Removed by Index Recheck", 0
        )
        own = (plan.get("Actual Rows", 0) + removed) * loops
    return own + sum(rows_read(child, table) for child in plan.get("Plans", []))


def ingest_at(pg_db: Database, setup: Metered, prefix: str, times: list[datetime]) -> None:
    """One event of value 1 for the setup's customer at each of ``times``."""
    with pg_db.transaction(actor="test") as tx:
        events = [
            {
                "specversion": "1.0",
                "id": f"{prefix}-{n}",
                "source": "test",
                "type": setup.meter.event_type,
                "subject": setup.customer.external_id,
                "time": isoformat_z(time),
                "data": {"value": 1},
            }
            for n, time in enumerate(times)
        ]
        assert metering.ingest_events(tx, events).accepted == len(times)


def explained_state(pg_db: Database, setup: Metered, now: datetime) -> dict[str, Any]:
    """The state statement's plan for the setup's customer and feature, with index plans
    preferred as at scale (``EXPLAIN ANALYZE``, JSON)."""
    params = {"customer": setup.customer.id, "feature": setup.feature.key, "now": now}
    with pg_db.engine.connect() as connection:
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("SET LOCAL enable_seqscan = off")  # the index plans, as at scale
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + fast_pg.STATE_SQL, params)
        plan: dict[str, Any] = cursor.fetchone()[0][0]["Plan"]
        connection.rollback()
    return plan


def test_the_hot_statement_reads_only_the_customers_rows(pg_db: Database, clock: TestClock) -> None:
    """Found by the benchmark: the statement joined from the plan's side (every subscription
    on the plan version was read, then filtered by customer) and read every event the customer
    ever sent to find those of the period's two edge hours. A check's cost must not grow with
    the plan's customers or the customer's history."""
    with pg_db.transaction() as tx:
        setup = metered_setup(tx, limit=None)
        for _ in range(30):
            create_subscription(tx, version=setup.version)
    clock.advance(hours=5)
    history = [clock.now() - timedelta(hours=4, minutes=n % 60) for n in range(120)]
    ingest_at(pg_db, setup, "history", history)
    checked(pg_db, setup.customer.id, setup.feature.key, expect_fast=True)
    plan = explained_state(pg_db, setup, clock.now())
    assert rows_read(plan, "subscriptions") <= 1
    assert rows_read(plan, "metering_events") == 0  # the period starts on the hour: no edges


def scans_of(plan: dict[str, Any], table: str) -> list[tuple[str, str | None]]:
    """(node type, index) of every scan of ``table`` in a plan."""
    own = (
        [(plan["Node Type"], plan.get("Index Name"))] if plan.get("Relation Name") == table else []
    )
    return own + [scan for child in plan.get("Plans", []) for scan in scans_of(child, table)]


def test_the_checks_usage_sum_reads_the_rollups_index_alone(
    pg_db: Database, clock: TestClock
) -> None:
    """The check sums the period's hourly rollups. Through the primary key that was a heap
    visit per hour (110 µs of a 270 µs statement with 32 active hours); the quantity is in
    ``ix_metering_rollups_quantity``, so the sum is an index-only scan."""
    with pg_db.transaction() as tx:
        setup = metered_setup(tx, limit=None)
    clock.advance(hours=30)
    ingest_at(
        pg_db, setup, "hour", [clock.now() - timedelta(hours=n, minutes=30) for n in range(1, 25)]
    )
    with pg_db.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM ANALYZE metering_rollups"
        )
    plan = explained_state(pg_db, setup, clock.now())
    assert scans_of(plan, "metering_rollups") == [
        ("Index Only Scan", "ix_metering_rollups_quantity")
    ]
    checked(pg_db, setup.customer.id, setup.feature.key, expect_fast=True)


def test_the_thread_paths_statements_fit_psycopgs_parse_cache() -> None:
    """psycopg re-parses a statement longer than 4,096 characters on every execution. (The
    hot-read pool converts each statement once whatever its length.)"""
    for statement in (fast_pg.STATE_SQL, fast_pg.USAGE_SQL):
        assert len(statement) <= 4096


def test_concurrent_checks_share_statements_and_agree_with_the_portable_path(
    pg_db: Database, clock: TestClock
) -> None:
    """Checks arriving together on the API's event loop are answered by batched statements;
    each answer is its own check's, including an unknown customer among them."""
    setups = []
    with pg_db.transaction() as tx:
        for limit in (5, 50, None):
            setups.append(metered_setup(tx, limit=limit))
    for number, setup in enumerate(setups):
        send_usage(pg_db, setup.customer, 10 * (number + 1))
    asks = [
        (setup.customer.id, feature, quantity)
        for setup in setups
        for feature in (setup.feature.key, setup.flag.key)
        for quantity in (None, 3, 60)
    ]

    async def scenario() -> tuple[list[object], int]:
        hot = HotReads(pg_db.url)
        await hot.open()
        try:
            answers = await asyncio.gather(
                *(
                    fast_check_async(pg_db, hot, customer, feature, quantity=quantity)
                    for customer, feature, quantity in asks
                ),
                fast_check_async(pg_db, hot, "nobody", setups[0].feature.key),
                return_exceptions=True,
            )
            return list(answers), hot.batched(fast_pg.STATE_BATCH_SQL).batches
        finally:
            await hot.close()

    answers, batches = run_async(scenario())
    assert batches < len(asks)
    for (customer, feature, quantity), answer in zip(asks, answers, strict=False):
        with pg_db.read() as tx:
            assert answer == entitlements.check(tx, customer, feature, quantity=quantity)
    unknown = answers[-1]
    assert isinstance(unknown, InvalidRequest) and unknown.code == "customer_not_found"
