"""Pure catalog rules: billing intervals, change policies, features, entitlement definitions
and the :class:`VersionTerms` snapshot that rating, subscriptions and invoicing read.

No I/O here: the services load rows and hand these values around.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any, Final

from tallybook.catalog.errors import CatalogCode
from tallybook.catalog.pricing import PriceDef, PriceType, price_decimal
from tallybook.kit.errors import InvalidRequest
from tallybook.kit.hashing import json_dumps

CONFIG_VALUE_BYTES_MAX: Final = 8 * 1024
TRIAL_DAYS_MAX: Final = 730


class IntervalUnit(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


#: The longest billing interval is three years in every unit.
INTERVAL_COUNT_MAX: Final[dict[IntervalUnit, int]] = {
    IntervalUnit.DAY: 1095,
    IntervalUnit.WEEK: 156,
    IntervalUnit.MONTH: 36,
    IntervalUnit.YEAR: 3,
}

#: How many of each unit make a year, for comparing fees across intervals (a mean year of
#: 365.2425 days: only used to classify a change as an upgrade or a downgrade, never to bill).
_UNITS_PER_YEAR: Final[dict[IntervalUnit, Fraction]] = {
    IntervalUnit.DAY: Fraction(3652425, 10000),
    IntervalUnit.WEEK: Fraction(3652425, 70000),
    IntervalUnit.MONTH: Fraction(12),
    IntervalUnit.YEAR: Fraction(1),
}


@dataclass(frozen=True, slots=True)
class Interval:
    unit: IntervalUnit
    count: int = 1

    @classmethod
    def parse(cls, unit: Any, count: Any, *, param: str = "interval") -> Interval:
        try:
            parsed_unit = IntervalUnit(unit)
        except ValueError:
            raise InvalidRequest(
                CatalogCode.PLAN_INTERVAL_INVALID,
                f"{param} must be day, week, month or year, not {unit!r}",
                param=param,
            ) from None
        count_max = INTERVAL_COUNT_MAX[parsed_unit]
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= count_max:
            raise InvalidRequest(
                CatalogCode.PLAN_INTERVAL_INVALID,
                f"interval_count must be an integer from 1 to {count_max} for {parsed_unit}s",
                param="interval_count",
            )
        return cls(parsed_unit, count)

    def periods_per_year(self) -> Fraction:
        return _UNITS_PER_YEAR[self.unit] / self.count

    def describe(self) -> str:
        return str(self.unit) if self.count == 1 else f"{self.count} {self.unit}s"


class ChangePolicy(StrEnum):
    """When and how a plan change takes effect."""

    #: Now; credit the unused part of fees paid in advance, charge the rest of the new ones.
    PRORATE_NOW = "prorate_now"
    #: Now; no credit and no charge until the next period (a new interval starts a new period
    #: at once, charged in full).
    NOW_WITHOUT_PRORATION = "now_without_proration"
    #: At the end of the current period (a scheduled change, cancellable until then).
    PERIOD_END = "period_end"


class ChangeDirection(StrEnum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    SAME_PRICE = "same_price"


@dataclass(frozen=True, slots=True)
class ChangePolicies:
    upgrade: ChangePolicy = ChangePolicy.PRORATE_NOW
    downgrade: ChangePolicy = ChangePolicy.PERIOD_END
    same_price: ChangePolicy = ChangePolicy.PRORATE_NOW

    def for_direction(self, direction: ChangeDirection) -> ChangePolicy:
        policy: ChangePolicy = getattr(self, str(direction))
        return policy

    def to_dict(self) -> dict[str, str]:
        return {
            "upgrade": str(self.upgrade),
            "downgrade": str(self.downgrade),
            "same_price": str(self.same_price),
        }


class CancellationCredit(StrEnum):
    """On an immediate cancellation: credit the unused part of fees paid in advance, or not."""

    PRORATE = "prorate"
    NONE = "none"


class TrialEndBehavior(StrEnum):
    #: The subscription becomes active and its first period is billed.
    CONVERT = "convert"
    #: The subscription is canceled at the end of the trial.
    CANCEL = "cancel"
    #: The subscription is paused (nothing billed) until resumed.
    PAUSE = "pause"


class FeatureType(StrEnum):
    BOOLEAN = "boolean"
    CONFIG = "config"
    METERED = "metered"


class LimitEnforcement(StrEnum):
    #: Usage past the limit is refused.
    HARD = "hard"
    #: Usage past the limit is allowed (and billed as overage); the limit only warns.
    SOFT = "soft"


@dataclass(frozen=True, slots=True)
class FeatureRef:
    """What an entitlement definition needs to know about its feature."""

    id: str
    key: str
    type: FeatureType
    meter_id: str | None


@dataclass(frozen=True, slots=True)
class EntitlementDef:
    """Feature → value in one plan version. Exactly one value field applies per feature type:
    ``enabled`` (boolean), ``config`` (config), ``limit_quantity`` + ``enforcement`` (metered;
    ``limit_quantity=None`` means unlimited). A metered limit is per billing period."""

    feature_id: str
    feature_key: str
    feature_type: FeatureType
    enabled: bool | None = None
    config: Any = None
    limit_quantity: Decimal | None = None
    enforcement: LimitEnforcement | None = None
    meter_id: str | None = None
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "feature_id": self.feature_id,
            "feature_key": self.feature_key,
            "feature_type": str(self.feature_type),
        }
        if self.feature_type == FeatureType.BOOLEAN:
            data["enabled"] = self.enabled
        elif self.feature_type == FeatureType.CONFIG:
            data["config"] = self.config
        else:
            data.update(
                limit=self.limit_quantity,
                enforcement=str(self.enforcement),
                meter_id=self.meter_id,
            )
        return data


_ENTITLEMENT_FIELDS: Final[dict[FeatureType, frozenset[str]]] = {
    FeatureType.BOOLEAN: frozenset({"feature", "enabled"}),
    FeatureType.CONFIG: frozenset({"feature", "config"}),
    FeatureType.METERED: frozenset({"feature", "limit", "enforcement"}),
}


def parse_entitlement(
    data: Mapping[str, Any], feature: FeatureRef, *, param: str
) -> EntitlementDef:
    """Validate one entitlement definition against its feature's type."""
    for name, value in data.items():
        if value is not None and name not in _ENTITLEMENT_FIELDS[feature.type]:
            raise InvalidRequest(
                CatalogCode.ENTITLEMENT_VALUE_INVALID,
                f"{name} does not apply to a {feature.type} feature ({feature.key})",
                param=f"{param}.{name}",
            )
    if feature.type == FeatureType.BOOLEAN:
        enabled = data.get("enabled", True)
        if not isinstance(enabled, bool):
            raise InvalidRequest(
                CatalogCode.ENTITLEMENT_VALUE_INVALID,
                "enabled must be true or false",
                param=f"{param}.enabled",
            )
        return EntitlementDef(feature.id, feature.key, feature.type, enabled=enabled)
    if feature.type == FeatureType.CONFIG:
        if "config" not in data or data["config"] is None:
            raise InvalidRequest(
                CatalogCode.ENTITLEMENT_VALUE_INVALID,
                f"a config feature ({feature.key}) needs a config value",
                param=f"{param}.config",
            )
        if len(json_dumps(data["config"]).encode()) > CONFIG_VALUE_BYTES_MAX:
            raise InvalidRequest(
                CatalogCode.ENTITLEMENT_VALUE_INVALID,
                f"config values are limited to {CONFIG_VALUE_BYTES_MAX} bytes of JSON",
                param=f"{param}.config",
            )
        return EntitlementDef(feature.id, feature.key, feature.type, config=data["config"])
    raw_limit = data.get("limit")
    limit = None if raw_limit is None else price_decimal(raw_limit, f"{param}.limit")
    try:
        enforcement = LimitEnforcement(data.get("enforcement") or LimitEnforcement.HARD)
    except ValueError:
        raise InvalidRequest(
            CatalogCode.ENTITLEMENT_VALUE_INVALID,
            "enforcement must be hard or soft",
            param=f"{param}.enforcement",
        ) from None
    return EntitlementDef(
        feature.id,
        feature.key,
        feature.type,
        limit_quantity=limit,
        enforcement=enforcement,
        meter_id=feature.meter_id,
    )


@dataclass(frozen=True, slots=True)
class VersionTerms:
    """Everything a published (or draft) plan version says, as plain values: the contract
    between the catalog and rating, subscriptions, entitlements and invoicing."""

    plan_version_id: str
    plan_id: str
    plan_key: str
    plan_name: str
    version: int
    status: str
    currency: str
    interval: Interval
    prices: tuple[PriceDef, ...] = ()
    entitlements: tuple[EntitlementDef, ...] = ()
    minimum_commitment_minor: int | None = None
    billing_threshold_minor: int | None = None
    change_policies: ChangePolicies = field(default_factory=ChangePolicies)
    cancellation_credit: CancellationCredit = CancellationCredit.NONE
    trial_period_days: int | None = None

    @property
    def advance_prices(self) -> tuple[PriceDef, ...]:
        return tuple(p for p in self.prices if p.is_in_advance)

    @property
    def label(self) -> str:
        return f"{self.plan_name} v{self.version}"

    def recurring_fee_per_year(self) -> Fraction:
        """The flat fees (in advance and in arrears) over a mean year, in minor units. Only
        used to classify a change; billing never uses it."""
        per_period = sum(
            (p.amount_minor or 0 for p in self.prices if p.type == PriceType.FLAT), start=0
        )
        return per_period * self.interval.periods_per_year()


def classify_change(source: VersionTerms, target: VersionTerms) -> ChangeDirection:
    """An upgrade when the target's recurring flat fees over a year are higher, a downgrade
    when lower, ``same_price`` when equal. Usage prices do not count: they depend on usage."""
    before, after = source.recurring_fee_per_year(), target.recurring_fee_per_year()
    if after > before:
        return ChangeDirection.UPGRADE
    if after < before:
        return ChangeDirection.DOWNGRADE
    return ChangeDirection.SAME_PRICE
