"""The pure rules: where an entitlement comes from (overrides, then plans combined), the unpaid
policies, and the decision against limits."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tallybook.catalog.domain import EntitlementDef, FeatureType, LimitEnforcement
from tallybook.entitlements.domain import (
    FeatureInfo,
    OverrideFacts,
    PlanFacts,
    Policies,
    Reason,
    Source,
    SpendFacts,
    SubscriptionFacts,
    UnpaidPolicy,
    calendar_month,
    decide,
    resolve,
)
from tallybook.kit.clock import utc

NOW = utc(2026, 11, 15, 12)
TOKENS = FeatureInfo("feat_t", "tokens", FeatureType.METERED, "mtr_t")
SSO = FeatureInfo("feat_s", "sso", FeatureType.BOOLEAN, None)
MODELS = FeatureInfo("feat_m", "models", FeatureType.CONFIG, None)


def sub(
    name: str, status: str = "active", *, days_old: int = 10, start_day: int = 1
) -> SubscriptionFacts:
    return SubscriptionFacts(
        id=name,
        status=status,
        plan_version_id=f"pv_{name}",
        created_at=NOW - timedelta(days=days_old),
        period_start=utc(2026, 11, start_day),
        period_end=utc(2026, 12, start_day),
    )


def plan(name: str, *entitlements: EntitlementDef, free: bool = False) -> PlanFacts:
    return PlanFacts(f"pv_{name}", free, {e.feature_id: e for e in entitlements}, "USD")


def metered(limit: int | None, enforcement: str = "hard") -> EntitlementDef:
    return EntitlementDef(
        "feat_t",
        "tokens",
        FeatureType.METERED,
        limit_quantity=Decimal(limit) if limit is not None else None,
        enforcement=LimitEnforcement(enforcement),
        meter_id="mtr_t",
    )


def flag(enabled: bool) -> EntitlementDef:
    return EntitlementDef("feat_s", "sso", FeatureType.BOOLEAN, enabled=enabled)


def config(value: object) -> EntitlementDef:
    return EntitlementDef("feat_m", "models", FeatureType.CONFIG, config=value)


def test_several_subscriptions_combine() -> None:
    pairs = [
        (sub("a", days_old=30, start_day=3), plan("a", metered(1000), flag(False), config(["s"]))),
        (sub("b", days_old=5), plan("b", metered(500, "soft"), flag(True), config(["l"]))),
    ]
    tokens = resolve(TOKENS, override=None, subscriptions=pairs, policies=Policies(), now=NOW)
    assert (tokens.limit, tokens.enforcement, tokens.subscription_ids) == (
        Decimal(1500),
        LimitEnforcement.SOFT,
        ("a", "b"),
    )
    assert tokens.window == (utc(2026, 11, 3), utc(2026, 12, 3))  # the oldest one's period
    assert resolve(SSO, override=None, subscriptions=pairs, policies=Policies(), now=NOW).enabled
    models = resolve(MODELS, override=None, subscriptions=pairs, policies=Policies(), now=NOW)
    assert models.config == ["s"]
    unlimited = [*pairs, (sub("c"), plan("c", metered(None)))]
    assert (
        resolve(TOKENS, override=None, subscriptions=unlimited, policies=Policies(), now=NOW).limit
        is None
    )


@pytest.mark.parametrize(
    ("status", "policies", "free", "denial"),
    [
        ("past_due", Policies(), False, None),
        ("unpaid", Policies(), False, Reason.SUBSCRIPTION_UNPAID),
        ("unpaid", Policies(), True, None),
        (
            "past_due",
            Policies(past_due=UnpaidPolicy.RESTRICT_PAID),
            False,
            Reason.SUBSCRIPTION_PAST_DUE,
        ),
        ("unpaid", Policies(unpaid=UnpaidPolicy.KEEP), False, None),
        ("paused", Policies(), False, Reason.NO_SUBSCRIPTION),
        ("canceled", Policies(), False, Reason.NO_SUBSCRIPTION),
        ("trialing", Policies(), False, None),
    ],
)
def test_payment_status_policies(
    status: str, policies: Policies, free: bool, denial: Reason | None
) -> None:
    pairs = [(sub("a", status), plan("a", flag(True), free=free))]
    definition = resolve(SSO, override=None, subscriptions=pairs, policies=policies, now=NOW)
    assert definition.denial == denial


def test_a_free_plan_keeps_its_features_while_a_paid_one_is_unpaid() -> None:
    pairs = [
        (sub("paid", "unpaid", days_old=30), plan("paid", metered(5000))),
        (sub("free", days_old=2), plan("free", metered(100), free=True)),
    ]
    definition = resolve(TOKENS, override=None, subscriptions=pairs, policies=Policies(), now=NOW)
    assert (definition.limit, definition.subscription_ids) == (Decimal(100), ("free",))


def test_an_override_wins_over_every_plan_and_payment_status() -> None:
    pairs = [(sub("a", "unpaid"), plan("a", metered(10)))]
    override = OverrideFacts("eov_1", None, None, Decimal(99), False, LimitEnforcement.SOFT, None)
    definition = resolve(
        TOKENS, override=override, subscriptions=pairs, policies=Policies(), now=NOW
    )
    assert (definition.source, definition.limit, definition.enforcement) == (
        Source.OVERRIDE,
        Decimal(99),
        LimitEnforcement.SOFT,
    )
    # Without any subscription an override counts usage by calendar month.
    alone = resolve(TOKENS, override=override, subscriptions=[], policies=Policies(), now=NOW)
    assert alone.window == calendar_month(NOW) == (utc(2026, 11, 1), utc(2026, 12, 1))


def test_no_subscription_and_not_in_plan() -> None:
    assert resolve(SSO, override=None, subscriptions=[], policies=Policies(), now=NOW).denial is (
        Reason.NO_SUBSCRIPTION
    )
    other = [(sub("a"), plan("a", metered(1)))]
    assert resolve(
        SSO, override=None, subscriptions=other, policies=Policies(), now=NOW
    ).denial is (Reason.FEATURE_NOT_IN_PLAN)
    disabled = [(sub("a"), plan("a", flag(False)))]
    assert resolve(
        SSO, override=None, subscriptions=disabled, policies=Policies(), now=NOW
    ).denial is (Reason.FEATURE_DISABLED)


@pytest.mark.parametrize(
    ("enforcement", "used", "reserved", "granted", "quantity", "reason", "remaining"),
    [
        ("hard", 900, 0, 0, None, Reason.OK, 100),
        ("hard", 900, 100, 0, None, Reason.LIMIT_EXCEEDED, 0),
        ("hard", 900, 0, 0, 100, Reason.OK, 100),
        ("hard", 900, 0, 0, 101, Reason.LIMIT_EXCEEDED, 100),
        ("hard", 900, 50, 0, 51, Reason.LIMIT_EXCEEDED, 50),
        ("hard", 900, 0, 200, 300, Reason.OK, 300),
        ("hard", 1200, 0, 0, 0, Reason.LIMIT_EXCEEDED, 0),
        ("soft", 1200, 0, 0, 5, Reason.SOFT_LIMIT_EXCEEDED, 0),
        ("soft", 10, 0, 0, 5, Reason.OK, 990),
    ],
)
def test_the_decision_against_a_limit(
    enforcement: str,
    used: int,
    reserved: int,
    granted: int,
    quantity: int | None,
    reason: Reason,
    remaining: int,
) -> None:
    pairs = [(sub("a"), plan("a", metered(1000, enforcement)))]
    definition = resolve(TOKENS, override=None, subscriptions=pairs, policies=Policies(), now=NOW)
    result = decide(
        "cus_1",
        TOKENS,
        definition,
        used=Decimal(used),
        reserved=Decimal(reserved),
        granted=Decimal(granted),
        quantity=Decimal(quantity) if quantity is not None else None,
    )
    assert (result.reason, result.remaining) == (reason, Decimal(remaining))
    assert result.allowed == (reason in (Reason.OK, Reason.SOFT_LIMIT_EXCEEDED))
    assert result.resets_at == utc(2026, 12, 1)


def test_a_spend_limit_refuses_what_would_pass_it() -> None:
    pairs = [(sub("a"), plan("a", metered(None)))]
    definition = resolve(TOKENS, override=None, subscriptions=pairs, policies=Policies(), now=NOW)

    def spend(spent: int, increment: int) -> SpendFacts:
        return SpendFacts(1000, "USD", spent, increment, utc(2026, 11, 1), utc(2026, 12, 1))

    allowed = decide(
        "c", TOKENS, definition, used=Decimal(1), quantity=Decimal(5), spend=spend(900, 100)
    )
    refused = decide(
        "c", TOKENS, definition, used=Decimal(1), quantity=Decimal(5), spend=spend(900, 101)
    )
    assert allowed.reason is Reason.OK and refused.reason is Reason.SPEND_LIMIT_EXCEEDED
    past = decide("c", TOKENS, definition, used=Decimal(1), spend=spend(1001, 0))
    at = decide("c", TOKENS, definition, used=Decimal(1), spend=spend(1000, 0))
    assert (past.reason, at.reason) == (Reason.SPEND_LIMIT_EXCEEDED, Reason.OK)
