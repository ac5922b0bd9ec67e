"""Pure entitlement rules: where a customer's entitlement to a feature comes from, and whether
a request is allowed now. No I/O: the check loads the facts, this decides.

**Sources, by precedence.**

1. An active **override** for the customer and feature (not yet expired) replaces every plan:
   its value is the entitlement, whatever the subscriptions say or their payment status.
2. Otherwise the customer's **subscriptions** that are trialing, active, past due or unpaid
   (paused and canceled ones grant nothing). Several subscriptions combine:

   - boolean: enabled if any grants it enabled (OR);
   - config: the value of the oldest subscription granting it;
   - metered: the limits add up (unlimited if any is unlimited); the enforcement is ``soft`` if
     any is soft, ``hard`` otherwise; usage is counted over the current billing period of the
     oldest granting subscription.

   While a subscription is **past due** or **unpaid**, the configured policy applies
   (``keep``, or ``restrict_paid``: a paid plan's entitlements are withheld, a free plan's
   kept). Defaults: ``keep`` for past due, ``restrict_paid`` for unpaid.
3. For metered features, **usage grants** of the feature's meter raise the limit by the units
   they still hold.

**The decision** for a metered feature with a limit: ``used`` (this period's usage) plus
``reserved`` (open reservations) plus the requested ``quantity`` must stay within the limit
(plus usage grants). Without a quantity the question is "is anything left?" (``used +
reserved < limit``). A hard limit refuses (``limit_exceeded``); a soft one allows and flags
(``soft_limit_exceeded``). Then a spend limit, if the customer has one, refuses usage whose
price would take the period's on-demand spend past it (``spend_limit_exceeded``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from tallybook.catalog.domain import EntitlementDef, FeatureType, LimitEnforcement
from tallybook.kit.quantity import normalize_quantity

ZERO: Final = Decimal(0)


class Reason(StrEnum):
    """Why a check answered what it did."""

    OK = "ok"
    NO_SUBSCRIPTION = "no_subscription"
    FEATURE_NOT_IN_PLAN = "feature_not_in_plan"
    FEATURE_DISABLED = "feature_disabled"
    LIMIT_EXCEEDED = "limit_exceeded"
    #: Allowed: a soft limit is passed (overage is billed).
    SOFT_LIMIT_EXCEEDED = "soft_limit_exceeded"
    SPEND_LIMIT_EXCEEDED = "spend_limit_exceeded"
    SUBSCRIPTION_PAST_DUE = "subscription_past_due"
    SUBSCRIPTION_UNPAID = "subscription_unpaid"


ALLOWING: Final = frozenset({Reason.OK, Reason.SOFT_LIMIT_EXCEEDED})


class Source(StrEnum):
    OVERRIDE = "override"
    PLAN = "plan"
    NONE = "none"


class UnpaidPolicy(StrEnum):
    KEEP = "keep"
    #: Withhold entitlements that come from paid plans; keep free plans'.
    RESTRICT_PAID = "restrict_paid"


@dataclass(frozen=True, slots=True)
class Policies:
    past_due: UnpaidPolicy = UnpaidPolicy.KEEP
    unpaid: UnpaidPolicy = UnpaidPolicy.RESTRICT_PAID


#: Statuses whose plan grants entitlements (subject to the payment policies).
ENTITLED_STATUSES: Final = frozenset({"trialing", "active", "past_due", "unpaid"})


@dataclass(frozen=True, slots=True)
class FeatureInfo:
    id: str
    key: str
    type: FeatureType
    meter_id: str | None


@dataclass(frozen=True, slots=True)
class PlanFacts:
    """What a (published, hence immutable) plan version says about features."""

    plan_version_id: str
    #: No recurring fee and no usage price: kept while unpaid under ``restrict_paid``.
    is_free: bool
    entitlements: Mapping[str, EntitlementDef]
    currency: str


@dataclass(frozen=True, slots=True)
class SubscriptionFacts:
    id: str
    status: str
    plan_version_id: str
    created_at: datetime
    #: The current billing period, or None when the subscription is in none (its period
    #: ended and it does not renew).
    period_start: datetime | None
    period_end: datetime | None


@dataclass(frozen=True, slots=True)
class OverrideFacts:
    id: str
    enabled: bool | None
    config: Any
    limit: Decimal | None
    unlimited: bool
    enforcement: LimitEnforcement | None
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Definition:
    """The customer's entitlement to one feature right now, before measuring usage."""

    source: Source
    #: Set when nothing entitles the customer (the check is refused with this reason).
    denial: Reason | None = None
    enabled: bool = False
    config: Any = None
    #: Metered: the limit per period (None: unlimited) and how it is enforced.
    limit: Decimal | None = None
    enforcement: LimitEnforcement | None = None
    #: Metered: the usage window ``[start, end)`` (the billing period).
    window: tuple[datetime, datetime] | None = None
    subscription_ids: tuple[str, ...] = ()
    override_id: str | None = None
    override_expires_at: datetime | None = None

    @property
    def needs_usage(self) -> bool:
        return self.denial is None and self.window is not None


@dataclass(frozen=True, slots=True)
class SpendFacts:
    """A customer's spend limit against this period's on-demand spend (minor units)."""

    limit_minor: int
    currency: str
    spend_minor: int
    #: What the requested quantity would add.
    increment_minor: int
    period_start: datetime
    period_end: datetime
    thresholds: tuple[int, ...] = ()

    @property
    def spend_after_minor(self) -> int:
        return self.spend_minor + self.increment_minor


@dataclass(frozen=True, slots=True)
class CheckResult:
    customer_id: str
    feature: FeatureInfo
    allowed: bool
    reason: Reason
    source: Source
    enabled: bool
    config: Any = None
    limit: Decimal | None = None
    enforcement: LimitEnforcement | None = None
    used: Decimal | None = None
    reserved: Decimal | None = None
    #: Units usage grants still hold (added to the limit).
    granted: Decimal | None = None
    remaining: Decimal | None = None
    quantity: Decimal | None = None
    period_start: datetime | None = None
    resets_at: datetime | None = None
    spend: SpendFacts | None = None
    subscription_ids: tuple[str, ...] = field(default_factory=tuple)
    override_id: str | None = None
    override_expires_at: datetime | None = None

    @property
    def effective_limit(self) -> Decimal | None:
        if self.limit is None:
            return None
        return self.limit + (self.granted or ZERO)


def calendar_month(now: datetime) -> tuple[datetime, datetime]:
    """The usage window of an override held without any subscription: the UTC month."""
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


def _restriction(status: str, plan: PlanFacts, policies: Policies) -> Reason | None:
    if plan.is_free:
        return None
    if status == "past_due" and policies.past_due is UnpaidPolicy.RESTRICT_PAID:
        return Reason.SUBSCRIPTION_PAST_DUE
    if status == "unpaid" and policies.unpaid is UnpaidPolicy.RESTRICT_PAID:
        return Reason.SUBSCRIPTION_UNPAID
    return None


def _window(subscriptions: Sequence[SubscriptionFacts], now: datetime) -> tuple[datetime, datetime]:
    for subscription in subscriptions:
        if subscription.period_start is not None and subscription.period_end is not None:
            return subscription.period_start, subscription.period_end
    return calendar_month(now)


def _from_override(
    feature: FeatureInfo,
    override: OverrideFacts,
    periods: Sequence[SubscriptionFacts],
    now: datetime,
) -> Definition:
    common: dict[str, Any] = {
        "source": Source.OVERRIDE,
        "override_id": override.id,
        "override_expires_at": override.expires_at,
    }
    if feature.type is FeatureType.BOOLEAN:
        return Definition(enabled=bool(override.enabled), **common)
    if feature.type is FeatureType.CONFIG:
        return Definition(enabled=True, config=override.config, **common)
    return Definition(
        enabled=True,
        limit=None if override.unlimited else override.limit,
        enforcement=override.enforcement or LimitEnforcement.HARD,
        window=_window(periods, now),
        **common,
    )


def resolve(
    feature: FeatureInfo,
    *,
    override: OverrideFacts | None,
    subscriptions: Sequence[tuple[SubscriptionFacts, PlanFacts]],
    policies: Policies,
    now: datetime,
) -> Definition:
    """Where the entitlement comes from and what it is (see the module docstring)."""
    live = sorted(
        (
            (s, p)
            for s, p in subscriptions
            if s.status in ENTITLED_STATUSES and s.period_start is not None
        ),
        key=lambda pair: (pair[0].created_at, pair[0].id),
    )
    if override is not None:
        return _from_override(feature, override, [s for s, _ in live], now)
    if not live:
        return Definition(source=Source.NONE, denial=Reason.NO_SUBSCRIPTION)
    granting: list[tuple[SubscriptionFacts, EntitlementDef]] = []
    restricted: list[Reason] = []
    for subscription, plan in live:
        definition = plan.entitlements.get(feature.id)
        if definition is None:
            continue
        restriction = _restriction(subscription.status, plan, policies)
        if restriction is not None:
            restricted.append(restriction)
        else:
            granting.append((subscription, definition))
    if not granting:
        denial = restricted[0] if restricted else Reason.FEATURE_NOT_IN_PLAN
        return Definition(source=Source.NONE, denial=denial)
    ids = tuple(s.id for s, _ in granting)
    definitions = [d for _, d in granting]
    if feature.type is FeatureType.BOOLEAN:
        enabled = any(bool(d.enabled) for d in definitions)
        return Definition(
            source=Source.PLAN,
            enabled=enabled,
            denial=None if enabled else Reason.FEATURE_DISABLED,
            subscription_ids=ids,
        )
    if feature.type is FeatureType.CONFIG:
        return Definition(
            source=Source.PLAN, enabled=True, config=definitions[0].config, subscription_ids=ids
        )
    limits = [d.limit_quantity for d in definitions]
    limit = None if any(q is None for q in limits) else sum((q for q in limits if q), start=ZERO)
    soft = any(d.enforcement is LimitEnforcement.SOFT for d in definitions)
    first = granting[0][0]
    assert first.period_start is not None and first.period_end is not None
    return Definition(
        source=Source.PLAN,
        enabled=True,
        limit=limit,
        enforcement=LimitEnforcement.SOFT if soft else LimitEnforcement.HARD,
        window=(first.period_start, first.period_end),
        subscription_ids=ids,
    )


def decide(
    customer_id: str,
    feature: FeatureInfo,
    definition: Definition,
    *,
    used: Decimal | None = None,
    reserved: Decimal = ZERO,
    granted: Decimal = ZERO,
    quantity: Decimal | None = None,
    spend: SpendFacts | None = None,
) -> CheckResult:
    """Allowed or not, and why (see the module docstring)."""
    base: dict[str, Any] = {
        "customer_id": customer_id,
        "feature": feature,
        "source": definition.source,
        "enabled": definition.enabled,
        "config": definition.config,
        "quantity": _canonical(quantity),
        "subscription_ids": definition.subscription_ids,
        "override_id": definition.override_id,
        "override_expires_at": definition.override_expires_at,
    }
    if definition.denial is not None:
        return CheckResult(allowed=False, reason=definition.denial, **base)
    if feature.type is not FeatureType.METERED:
        reason = Reason.OK if definition.enabled else Reason.FEATURE_DISABLED
        return CheckResult(allowed=reason is Reason.OK, reason=reason, **base)
    assert definition.window is not None and used is not None
    base.update(
        limit=_canonical(definition.limit),
        enforcement=definition.enforcement,
        used=normalize_quantity(used),
        reserved=normalize_quantity(reserved),
        granted=normalize_quantity(granted),
        period_start=definition.window[0].astimezone(UTC),
        resets_at=definition.window[1].astimezone(UTC),
        spend=spend,
    )
    reason = Reason.OK
    remaining: Decimal | None = None
    if definition.limit is not None:
        ceiling = definition.limit + granted
        taken = used + reserved
        remaining = max(ceiling - taken, ZERO)
        within = taken + quantity <= ceiling if quantity is not None else taken < ceiling
        if not within:
            hard = definition.enforcement is not LimitEnforcement.SOFT
            reason = Reason.LIMIT_EXCEEDED if hard else Reason.SOFT_LIMIT_EXCEEDED
    if reason in ALLOWING and spend is not None:
        # Without a quantity the question is whether spend is already past the limit
        # (usage ingested directly, without a check, can take it there).
        over = (
            spend.spend_after_minor if quantity is not None else spend.spend_minor
        ) > spend.limit_minor
        if over:
            reason = Reason.SPEND_LIMIT_EXCEEDED
    return CheckResult(
        allowed=reason in ALLOWING, reason=reason, remaining=_canonical(remaining), **base
    )


def _canonical(value: Decimal | None) -> Decimal | None:
    """Quantities in canonical form (``normalize_quantity``), identical on both backends."""
    return normalize_quantity(value) if value is not None else None
