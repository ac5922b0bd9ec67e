"""The entitlement check: sources, limits, fresh usage, payment status and bad input."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tallybook.db import Database
from tallybook.entitlements import service as entitlements
from tallybook.entitlements.domain import Policies, UnpaidPolicy
from tallybook.kit.clock import TestClock
from tallybook.kit.errors import TallybookError
from tallybook.subscriptions import service as subscriptions
from tests.entitlements.conftest import checked, summary
from tests.fixtures.catalog_factories import create_feature, create_subscription, create_version
from tests.fixtures.factories import create_customer
from tests.fixtures.grants_factories import issue, metered_setup, send_usage


def test_usage_counts_on_the_very_next_check(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx, limit=1000)
    key = setup.feature.key
    assert summary(checked(db, setup.customer.id, key)) == {
        "allowed": True,
        "reason": "ok",
        "limit": Decimal(1000),
        "used": Decimal(0),
        "reserved": Decimal(0),
        "remaining": Decimal(1000),
    }
    clock.advance(minutes=90)  # usage in full hours (rollups) and in the edge hours (raw events)
    send_usage(db, setup.customer, 300, time=clock.now() - timedelta(minutes=80))
    send_usage(db, setup.customer, "250.5")
    send_usage(db, setup.customer, 49, time=clock.now() + timedelta(minutes=2))  # a fast clock
    result = checked(db, setup.customer.external_id, key, expect_fast=True)
    assert (result.used, result.remaining, result.allowed) == (
        Decimal("599.5"),
        Decimal("400.5"),
        True,
    )
    assert checked(db, setup.customer.id, key, "400.5").allowed
    refused = checked(db, setup.customer.id, key, "400.6", expect_fast=True)
    assert (refused.allowed, str(refused.reason)) == (False, "limit_exceeded")
    assert refused.resets_at == setup.subscription.current_period_end_at


def test_soft_limits_allow_and_flag(db: Database) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx, limit=10, enforcement="soft")
    send_usage(db, setup.customer, 12)
    result = checked(db, setup.customer.id, setup.feature.key)
    assert (result.allowed, str(result.reason), result.remaining) == (
        True,
        "soft_limit_exceeded",
        Decimal(0),
    )


def test_boolean_config_and_missing_features(db: Database) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx)
        models = create_feature(tx, key="models", type="config")
        beta = create_feature(tx, key="beta")
        version = create_version(tx, entitlements=[{"feature": models.id, "config": ["small"]}])
        create_subscription(tx, customer=setup.customer, version=version)
        lonely = create_customer(tx)
    assert checked(db, setup.customer.id, setup.flag.key, expect_fast=True).allowed
    config = checked(db, setup.customer.id, "models")
    assert (config.allowed, config.config) == (True, ["small"])
    assert str(checked(db, setup.customer.id, "beta").reason) == "feature_not_in_plan"
    assert str(checked(db, lonely.id, "beta").reason) == "no_subscription"
    assert beta.id


def test_an_override_takes_precedence_until_it_expires(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx, limit=100)
        other = create_feature(tx, key="beta")
    send_usage(db, setup.customer, 150)
    assert not checked(db, setup.customer.id, setup.feature.key).allowed
    with db.transaction(actor="key_support") as tx:
        override = entitlements.create_override(
            tx,
            entitlements.OverrideInput(
                customer=setup.customer.id,
                feature=setup.feature.key,
                limit=500,
                expires_at=clock.now() + timedelta(days=3),
                reason="launch week",
            ),
        )
        entitlements.create_override(
            tx,
            entitlements.OverrideInput(
                customer=setup.customer.id, feature="beta", enabled=True, reason="design partner"
            ),
        )
    lifted = checked(db, setup.customer.id, setup.feature.key)
    assert (lifted.allowed, str(lifted.source), lifted.limit, lifted.override_id) == (
        True,
        "override",
        Decimal(500),
        override.id,
    )
    assert checked(db, setup.customer.id, "beta").allowed
    clock.advance(days=3)
    assert not checked(db, setup.customer.id, setup.feature.key).allowed
    # A new override replaces the previous one; revoking it brings the plan back.
    with db.transaction() as tx:
        unlimited = entitlements.create_override(
            tx,
            entitlements.OverrideInput(
                customer=setup.customer.id, feature=setup.feature.id, unlimited=True, reason="vip"
            ),
        )
    assert checked(db, setup.customer.id, setup.feature.key).limit is None
    with db.transaction() as tx:
        entitlements.revoke_override(tx, unlimited.id)
    assert checked(db, setup.customer.id, setup.feature.key).limit == Decimal(100)
    assert other.id


def test_several_subscriptions_add_their_limits(db: Database) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx, limit=100)
        addon = create_version(tx, entitlements=[{"feature": setup.feature.id, "limit": "50"}])
        extra = create_subscription(tx, customer=setup.customer, version=addon).subscription
    result = checked(db, setup.customer.id, setup.feature.key)
    assert result.limit == Decimal(150)
    assert result.subscription_ids == (setup.subscription.id, extra.id)


def test_unpaid_subscriptions_lose_paid_features_and_get_them_back_at_once(db: Database) -> None:
    with db.transaction() as tx:
        setup = metered_setup(
            tx,
            prices=[
                {
                    "type": "flat",
                    "key": "fee",
                    "name": "Fee",
                    "amount_minor": 900,
                    "timing": "in_advance",
                }
            ],
        )
    customer, feature = setup.customer.id, setup.feature.key
    with db.transaction() as tx:
        subscriptions.mark_past_due(tx, setup.subscription.id)
    assert checked(db, customer, feature).allowed  # past due: keep (default)
    strict = Policies(past_due=UnpaidPolicy.RESTRICT_PAID)
    assert str(checked(db, customer, feature, policies=strict).reason) == "subscription_past_due"
    with db.transaction() as tx:
        subscriptions.mark_unpaid(tx, setup.subscription.id)
    refused = checked(db, customer, feature)
    assert (refused.allowed, str(refused.reason)) == (False, "subscription_unpaid")
    assert checked(db, customer, feature, policies=Policies(unpaid=UnpaidPolicy.KEEP)).allowed
    with db.transaction() as tx:
        subscriptions.mark_active(tx, setup.subscription.id)
    assert checked(db, customer, feature).allowed


def test_usage_grants_raise_the_limit(db: Database) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx, limit=100)
        issue(tx, setup.customer, meter=setup.meter.key, quantity="25.5")
    send_usage(db, setup.customer, 120)
    result = checked(db, setup.customer.id, setup.feature.key, expect_fast=False)
    assert (result.allowed, result.granted, result.remaining) == (
        True,
        Decimal("25.5"),
        Decimal("5.5"),
    )


def test_usage_resets_with_the_period_even_before_the_job_renews(
    db: Database, clock: TestClock
) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx, limit=100)
    send_usage(db, setup.customer, 100)
    assert not checked(db, setup.customer.id, setup.feature.key).allowed
    clock.set(setup.subscription.current_period_end_at + timedelta(minutes=1))  # type: ignore[operator]
    renewed = checked(db, setup.customer.id, setup.feature.key, expect_fast=False)
    assert (renewed.allowed, renewed.used) == (True, Decimal(0))
    assert renewed.period_start == setup.subscription.current_period_end_at


def test_customer_entitlements_list_every_feature(db: Database) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx, limit=5)
        beta = create_feature(tx, key="beta")
        entitlements.create_override(
            tx,
            entitlements.OverrideInput(
                customer=setup.customer.id, feature=beta.id, enabled=True, reason="partner"
            ),
        )
    with db.read() as tx:
        results = entitlements.check_all(tx, setup.customer.external_id)
    assert [(r.feature.key, r.allowed, str(r.source)) for r in results] == sorted(
        [
            (setup.feature.key, True, "plan"),
            (setup.flag.key, True, "plan"),
            ("beta", True, "override"),
        ]
    )


@pytest.mark.parametrize(
    ("customer", "feature", "quantity", "code", "param", "status"),
    [
        ("ghost", "sso", None, "customer_not_found", "customer", 404),
        (None, "nope", None, "feature_not_found", "feature", 404),
        (None, None, "-1", "quantity_negative", "quantity", 400),
        (None, None, "lots", "quantity_invalid", "quantity", 400),
    ],
)
def test_bad_input_is_named(
    db: Database,
    customer: str | None,
    feature: str | None,
    quantity: str | None,
    code: str,
    param: str,
    status: int,
) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx)
    for run in (
        lambda: entitlements.fast_check(
            db, customer or setup.customer.id, feature or setup.feature.key, quantity=quantity
        ),
        lambda: _portable(
            db, customer or setup.customer.id, feature or setup.feature.key, quantity
        ),
    ):
        with pytest.raises(TallybookError) as raised:
            run()
        assert (raised.value.code, raised.value.param, raised.value.status) == (code, param, status)


def _portable(db: Database, customer: str, feature: str, quantity: str | None) -> None:
    with db.read() as tx:
        entitlements.check(tx, customer, feature, quantity=quantity)
