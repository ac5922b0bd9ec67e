"""Spend limits: on-demand spend (usage lines rated for the period so far) against the limit,
the increment a check prices, and alerts that fire once per threshold and period."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tallybook.db import Database
from tallybook.entitlements import alerts, spend, tasks
from tallybook.entitlements import service as entitlements
from tallybook.kit.clock import TestClock
from tallybook.kit.errors import TallybookError
from tallybook.work.events import timeline
from tallybook.work.schedule import JobContext
from tests.entitlements.conftest import checked
from tests.fixtures.catalog_factories import usage_price
from tests.fixtures.factories import create_meter
from tests.fixtures.grants_factories import Metered, metered_setup, send_usage


def priced(db: Database, *, limit: int | None = None) -> Metered:
    """Tokens at 0.01 each beyond 100 included; a spend limit of 5.00 with the default
    thresholds."""
    with db.transaction() as tx:
        meter = create_meter(tx, key="tokens", event_type="tokens.used", value_path="value")
        setup = metered_setup(
            tx,
            limit=limit,
            prices=[usage_price(meter.id, unit_price="0.01", included_quantity="100")],
        )
        customer = entitlements.resolve_customer(tx, setup.customer.id)
        spend.set_spend_limit(tx, customer, spend.SpendLimitInput(amount_minor=500))
    return setup


def alert_events(db: Database, customer_id: str) -> list[tuple[str, object]]:
    with db.read() as tx:
        rows = timeline(
            tx, customer_id=customer_id, types=["limit.threshold_reached", "limit.exceeded"]
        )
        return sorted((e.type, e.data["threshold_percent"]) for e in rows)  # type: ignore[misc]


def test_a_check_prices_the_increment_against_the_spend_limit(db: Database) -> None:
    setup = priced(db)
    customer, feature = setup.customer.id, setup.feature.key
    send_usage(db, setup.customer, 300)  # 200 billable: 2.00
    allowed = checked(db, customer, feature, 300, expect_fast=False)
    assert allowed.allowed and allowed.spend is not None
    assert (allowed.spend.spend_minor, allowed.spend.increment_minor) == (200, 300)
    # 300.5 more: 500.5 billable, 5.005 → 5.00 (half to even, once per line): still within.
    assert checked(db, customer, feature, "300.5").allowed
    refused = checked(db, customer, feature, 301)
    assert (refused.allowed, str(refused.reason)) == (False, "spend_limit_exceeded")
    assert refused.spend is not None and refused.spend.increment_minor == 301
    assert checked(db, customer, feature).allowed  # no quantity: spend is not past the limit


def test_thresholds_fire_once_per_period(db: Database, clock: TestClock) -> None:
    setup = priced(db)
    customer, feature = setup.customer.id, setup.feature.key
    send_usage(db, setup.customer, 360)  # 2.60: 50 % reached
    for _ in range(3):
        alerts.fire_for_check(db, entitlements.fast_check(db, customer, feature))
    tasks.run_spend_alerts(db, JobContext(owner="w"))
    assert alert_events(db, customer) == [("limit.threshold_reached", 50)]
    send_usage(db, setup.customer, 400)  # 6.60: 80 and 100 %
    clock.advance(minutes=5)
    assert tasks.run_spend_alerts(db, JobContext(owner="w"))["fired"] == 2
    alerts.fire_for_check(db, entitlements.fast_check(db, customer, feature, quantity=1))
    assert alert_events(db, customer) == [
        ("limit.exceeded", None),
        ("limit.threshold_reached", 50),
        ("limit.threshold_reached", 80),
        ("limit.threshold_reached", 100),
    ]
    # The next period starts from zero.
    clock.set(setup.subscription.current_period_end_at + timedelta(hours=1))  # type: ignore[operator]
    assert checked(db, customer, feature, 10).allowed


def test_a_hard_limit_refusal_fires_limit_exceeded_once(db: Database) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx, limit=10)
    send_usage(db, setup.customer, 10)
    for _ in range(3):
        result = entitlements.fast_check(db, setup.customer.id, setup.feature.key)
        alerts.fire_for_check(db, result)
    assert alert_events(db, setup.customer.id) == [("limit.exceeded", None)]


@pytest.mark.parametrize(
    ("fields", "code", "param"),
    [
        ({"amount_minor": -1}, "spend_limit_invalid", "amount_minor"),
        ({"amount_minor": 10, "currency": "EUR"}, "spend_limit_currency_mismatch", "currency"),
        ({"amount_minor": 10, "thresholds": [0]}, "spend_limit_thresholds_invalid", "thresholds"),
        ({"amount_minor": 10, "thresholds": [150]}, "spend_limit_thresholds_invalid", "thresholds"),
    ],
)
def test_bad_spend_limits_are_named(
    db: Database, fields: dict[str, object], code: str, param: str
) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx)
    with db.transaction() as tx:
        customer = entitlements.resolve_customer(tx, setup.customer.id)
        with pytest.raises(TallybookError) as raised:
            spend.set_spend_limit(tx, customer, spend.SpendLimitInput(**fields))  # type: ignore[arg-type]
    assert (raised.value.code, raised.value.param) == (code, param)
