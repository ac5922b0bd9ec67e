"""Validating a plan version's definition and writing its prices and entitlements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tallybook.catalog import features as features_service
from tallybook.catalog import repository
from tallybook.catalog.domain import (
    TRIAL_DAYS_MAX,
    CancellationCredit,
    ChangePolicies,
    ChangePolicy,
    EntitlementDef,
    Interval,
    parse_entitlement,
)
from tallybook.catalog.errors import CatalogCode
from tallybook.catalog.models import Entitlement, PlanVersion, Price
from tallybook.catalog.pricing import PriceDef, Tier, check_price_set, minor_amount, parse_price
from tallybook.db import Tx
from tallybook.kit.errors import CommonCode, InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.money import check_amount_minor, normalize_currency
from tallybook.kit.quantity import quantity_text

PRICES_MAX: Final = 50
ENTITLEMENTS_MAX: Final = 100
DESCRIPTION_LENGTH_MAX: Final = 2000


@dataclass(frozen=True, slots=True)
class Checked:
    currency: str
    interval: Interval
    prices: tuple[PriceDef, ...]
    entitlements: tuple[EntitlementDef, ...]
    minimum_commitment_minor: int | None
    billing_threshold_minor: int | None
    policies: ChangePolicies
    cancellation_credit: CancellationCredit
    trial_period_days: int | None
    description: str | None


def check_definition(tx: Tx, definition: Mapping[str, Any]) -> Checked:
    currency = normalize_currency(definition.get("currency"), param="currency")
    interval = Interval.parse(
        definition.get("interval"), definition.get("interval_count") or 1, param="interval"
    )
    prices = _check_prices(tx, definition.get("prices") or [])
    entitlements = _check_entitlements(tx, definition.get("entitlements") or [])
    minimum = definition.get("minimum_commitment_minor")
    threshold = definition.get("billing_threshold_minor")
    if (
        threshold is not None
        and check_amount_minor(threshold, param="billing_threshold_minor") <= 0
    ):
        raise InvalidRequest(
            CommonCode.AMOUNT_INVALID,
            "billing_threshold_minor must be positive",
            param="billing_threshold_minor",
        )
    trial_days = definition.get("trial_period_days")
    if trial_days is not None and (
        isinstance(trial_days, bool)
        or not isinstance(trial_days, int)
        or not 0 <= trial_days <= TRIAL_DAYS_MAX
    ):
        raise InvalidRequest(
            CatalogCode.PLAN_TRIAL_INVALID,
            f"trial_period_days must be an integer from 0 to {TRIAL_DAYS_MAX}",
            param="trial_period_days",
        )
    return Checked(
        currency=currency,
        interval=interval,
        prices=prices,
        entitlements=entitlements,
        minimum_commitment_minor=(
            None if minimum is None else minor_amount(minimum, "minimum_commitment_minor")
        ),
        billing_threshold_minor=threshold,
        policies=_policies(definition.get("change_policy")),
        cancellation_credit=_enum_value(
            CancellationCredit,
            definition.get("cancellation_credit") or CancellationCredit.NONE,
            "cancellation_credit",
        ),
        trial_period_days=trial_days or None,
        description=description_text(definition.get("description")),
    )


def _enum_value(enum: Any, value: Any, param: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID, f"{param} must be one of {allowed}", param=param
        ) from None


def _policies(raw: Any) -> ChangePolicies:
    if raw is None:
        return ChangePolicies()
    if not isinstance(raw, Mapping):
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID, "change_policy must be an object", param="change_policy"
        )
    defaults = ChangePolicies()
    values = {}
    for direction in ("upgrade", "downgrade", "same_price"):
        given = raw.get(direction)
        values[direction] = (
            getattr(defaults, direction)
            if given is None
            else _enum_value(ChangePolicy, given, f"change_policy.{direction}")
        )
    return ChangePolicies(**values)


def description_text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > DESCRIPTION_LENGTH_MAX:
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID,
            f"description must be at most {DESCRIPTION_LENGTH_MAX} characters",
            param="description",
        )
    return value


def _check_prices(tx: Tx, raw: Sequence[Any]) -> tuple[PriceDef, ...]:
    if len(raw) > PRICES_MAX:
        raise InvalidRequest(
            CatalogCode.PRICES_TOO_MANY,
            f"a version has at most {PRICES_MAX} prices",
            param="prices",
        )
    prices = []
    for index, item in enumerate(raw):
        param = f"prices[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidRequest(
                CatalogCode.PRICE_INVALID, f"{param} must be an object", param=param
            )
        prices.append(parse_price(item, param=param))
    meters = repository.meters_by_id(tx, [p.meter_id for p in prices if p.meter_id])
    for index, price in enumerate(prices):
        if price.meter_id is not None and price.meter_id not in meters:
            raise InvalidRequest(
                CatalogCode.PRICE_METER_NOT_FOUND,
                f"no such meter: '{price.meter_id}'",
                param=f"prices[{index}].meter_id",
            )
    check_price_set(prices)
    return tuple(prices)


def _check_entitlements(tx: Tx, raw: Sequence[Any]) -> tuple[EntitlementDef, ...]:
    if len(raw) > ENTITLEMENTS_MAX:
        raise InvalidRequest(
            CatalogCode.ENTITLEMENTS_TOO_MANY,
            f"a version has at most {ENTITLEMENTS_MAX} entitlements",
            param="entitlements",
        )
    seen: dict[str, int] = {}
    result = []
    for index, item in enumerate(raw):
        param = f"entitlements[{index}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("feature"), str):
            raise InvalidRequest(
                CatalogCode.ENTITLEMENT_FEATURE_NOT_FOUND,
                f"{param}.feature must name a feature (id or key)",
                param=f"{param}.feature",
            )
        try:
            feature = features_service.resolve(tx, item["feature"], param=f"{param}.feature")
        except NotFound:
            raise InvalidRequest(
                CatalogCode.ENTITLEMENT_FEATURE_NOT_FOUND,
                f"no such feature: '{item['feature']}'",
                param=f"{param}.feature",
            ) from None
        if feature.archived_at is not None:
            raise InvalidRequest(
                CatalogCode.FEATURE_ARCHIVED,
                f"feature '{feature.key}' is archived",
                param=f"{param}.feature",
            )
        if feature.id in seen:
            raise InvalidRequest(
                CatalogCode.ENTITLEMENT_DUPLICATE,
                f"feature '{feature.key}' is already granted by entitlements[{seen[feature.id]}]",
                param=f"{param}.feature",
            )
        seen[feature.id] = index
        result.append(parse_entitlement(item, features_service.ref(feature), param=param))
    return tuple(result)


def apply_terms(version: PlanVersion, checked: Checked) -> None:
    version.currency = checked.currency
    version.interval_unit = str(checked.interval.unit)
    version.interval_count = checked.interval.count
    version.minimum_commitment_minor = checked.minimum_commitment_minor
    version.billing_threshold_minor = checked.billing_threshold_minor
    version.upgrade_policy = str(checked.policies.upgrade)
    version.downgrade_policy = str(checked.policies.downgrade)
    version.same_price_policy = str(checked.policies.same_price)
    version.cancellation_credit = str(checked.cancellation_credit)
    version.trial_period_days = checked.trial_period_days
    version.description = checked.description


def write_prices(tx: Tx, version: PlanVersion, prices: Sequence[PriceDef]) -> None:
    now = tx.now()
    for position, price in enumerate(prices):
        tx.session.add(
            Price(
                id=new_id("price"),
                plan_version_id=version.id,
                position=position,
                key=price.key,
                name=price.name,
                type=str(price.type),
                timing=str(price.timing) if price.timing else None,
                amount_minor=price.amount_minor,
                meter_id=price.meter_id,
                model=str(price.model) if price.model else None,
                unit_price=price.unit_price,
                tiers=[_tier_json(tier) for tier in price.tiers] or None,
                package_size=price.package_size,
                package_price=price.package_price,
                package_rounding=str(price.package_rounding) if price.package_rounding else None,
                included_quantity=price.included_quantity,
                max_charge_minor=price.max_charge_minor,
                group_filter=price.group_filter_dict,
                created_at=now,
            )
        )


def write_entitlements(tx: Tx, version: PlanVersion, items: Sequence[EntitlementDef]) -> None:
    now = tx.now()
    for position, item in enumerate(items):
        tx.session.add(
            Entitlement(
                id=new_id("pent"),
                plan_version_id=version.id,
                feature_id=item.feature_id,
                position=position,
                enabled=item.enabled,
                config=item.config,
                limit_quantity=item.limit_quantity,
                enforcement=str(item.enforcement) if item.enforcement else None,
                meter_id=item.meter_id,
                created_at=now,
            )
        )


def _tier_json(tier: Tier) -> dict[str, Any]:
    return {
        "up_to": None if tier.up_to is None else quantity_text(tier.up_to),
        "unit_price": quantity_text(tier.unit_price),
        "flat_fee_minor": tier.flat_fee_minor,
    }
