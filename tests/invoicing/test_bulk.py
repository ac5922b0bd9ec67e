"""The batch fast path reads what the per-subscription services read, and gets the same values:
rating inputs equal ``subscriptions.period_rating_input``; rollup sums equal
``metering.usage_total`` (and the fallbacks cover what rollups cannot answer exactly)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallybook.db import Database
from tallybook.invoicing import bulk, repository
from tallybook.invoicing.usage import Measure, measure
from tallybook.kit.clock import utc
from tallybook.metering import service as metering
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.domain import ChangeRequest
from tests.fixtures.catalog_factories import create_version, flat_price
from tests.invoicing.test_close import tokens_plan


def test_rating_inputs_equal_the_subscription_service(db: Database) -> None:
    billing = tokens_plan(db)
    with billing.db.transaction() as tx:
        other = create_version(
            tx,
            prices=[
                flat_price(5000),
                {
                    "type": "usage",
                    "key": "t",
                    "name": "T",
                    "meter_id": billing.meters["tokens"],
                    "model": "per_unit",
                    "unit_price": "0.1",
                },
            ],
        )
    billing.at(utc(2026, 11, 16))
    with billing.db.transaction() as tx:
        subscriptions.change_plan(
            tx, billing.subscription_id, ChangeRequest(plan_version_id=other.id)
        )
    billing.run_jobs(utc(2026, 12, 1, 2))
    with billing.db.read() as tx:
        periods = [p for p in subscriptions.periods(tx, billing.subscription_id)]
        rows = repository.load_periods(tx, [p.id or "" for p in periods])
        subs = {billing.subscription_id: subscriptions.get(tx, billing.subscription_id)}
        fast = bulk.rating_inputs(tx, list(rows.values()), subs)
        for period in periods:
            assert period.id is not None
            assert fast[period.id] == subscriptions.period_rating_input(tx, period.id)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    hours=st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=12),
    start=st.integers(min_value=0, max_value=120),
    length=st.integers(min_value=1, max_value=100),
    minutes=st.sampled_from([0, 0, 17]),
)
def test_rollup_sums_equal_usage_total(
    db: Database, hours: list[int], start: int, length: int, minutes: int
) -> None:
    billing = tokens_plan(db)
    origin = utc(2026, 11, 1)
    for n, hour in enumerate(sorted(hours)):
        billing.usage("tokens", Decimal(n + 1) / 4, origin + timedelta(hours=hour, minutes=n % 50))
    window_start = origin + timedelta(hours=start, minutes=minutes)
    window_end = window_start + timedelta(hours=length)
    item = Measure(billing.customer_id, billing.meters["tokens"], window_start, window_end)
    with billing.db.read() as tx:
        (fast,) = measure(tx, [item])
        exact = metering.usage_total(
            tx,
            meter_id=billing.meters["tokens"],
            customer_id=billing.customer_id,
            start=window_start,
            end=window_end,
        )
    assert fast == exact
