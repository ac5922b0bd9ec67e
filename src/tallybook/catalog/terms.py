"""A plan version's terms as plain values (:class:`~tallybook.catalog.domain.VersionTerms`),
loaded once per published version: published versions never change (database triggers enforce
it), so the hot paths (renewals, rating every period) read them from a process cache."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any, Final

from tallybook.catalog import repository
from tallybook.catalog.domain import (
    CancellationCredit,
    ChangePolicies,
    ChangePolicy,
    EntitlementDef,
    FeatureType,
    Interval,
    IntervalUnit,
    LimitEnforcement,
    VersionTerms,
)
from tallybook.catalog.models import Entitlement, Plan, PlanVersion, Price
from tallybook.catalog.pricing import (
    FeeTiming,
    PackageRounding,
    PriceDef,
    PriceType,
    Tier,
    UsageModel,
)
from tallybook.db import Tx
from tallybook.kit.errors import NotFound
from tallybook.kit.invariant import invariant

#: Terms of published versions, which never change (database triggers enforce it), so the
#: hot paths (renewals, rating every period) skip reloading prices and entitlements.
_terms_cache: dict[str, VersionTerms] = {}
TERMS_CACHE_SIZE_MAX: Final = 4096


def version_terms(tx: Tx, version_id: str) -> VersionTerms:
    """Everything a version says, as plain values (rating, subscriptions, invoicing and
    entitlements read versions through this). The plan's name and the version's status are
    read fresh; the rest of a published version comes from a cache."""
    version = repository.get_version(tx, version_id)
    if version is None:
        raise NotFound("plan version", version_id)
    plan = repository.get_plan(tx, version.plan_id)
    invariant(plan is not None, "a version belongs to a plan")
    assert plan is not None
    cached = _terms_cache.get(version.id)
    if cached is None:
        cached = _load_terms(tx, version, plan)
        # Never cache a version published by the current (uncommitted) transaction: it could
        # still roll back to an editable draft. Its published_at is this transaction's now().
        if version.published_at is not None and version.published_at != tx.now():
            if len(_terms_cache) >= TERMS_CACHE_SIZE_MAX:
                _terms_cache.clear()
            _terms_cache[version.id] = cached
    return replace(cached, plan_name=plan.name, status=version.status)


def _load_terms(tx: Tx, version: PlanVersion, plan: Plan) -> VersionTerms:
    price_rows = repository.prices_of(tx, version.id)
    meters = repository.meters_by_id(tx, [p.meter_id for p in price_rows if p.meter_id])
    entitlement_rows = repository.entitlements_of(tx, version.id)
    features = repository.features_by_id(tx, [e.feature_id for e in entitlement_rows])
    prices = tuple(
        replace(
            price_def(row),
            meter_unit=meters[row.meter_id].unit if row.meter_id in meters else "",
        )
        for row in price_rows
    )
    entitlements = tuple(
        entitlement_def(row, features[row.feature_id].key, features[row.feature_id].type)
        for row in entitlement_rows
    )
    return VersionTerms(
        plan_version_id=version.id,
        plan_id=plan.id,
        plan_key=plan.key,
        plan_name=plan.name,
        version=version.version,
        status=version.status,
        currency=version.currency,
        interval=Interval(IntervalUnit(version.interval_unit), version.interval_count),
        prices=prices,
        entitlements=entitlements,
        minimum_commitment_minor=version.minimum_commitment_minor,
        billing_threshold_minor=version.billing_threshold_minor,
        change_policies=ChangePolicies(
            upgrade=ChangePolicy(version.upgrade_policy),
            downgrade=ChangePolicy(version.downgrade_policy),
            same_price=ChangePolicy(version.same_price_policy),
        ),
        cancellation_credit=CancellationCredit(version.cancellation_credit),
        trial_period_days=version.trial_period_days,
    )


def price_def(row: Price) -> PriceDef:
    return PriceDef(
        id=row.id,
        key=row.key,
        name=row.name,
        type=PriceType(row.type),
        amount_minor=row.amount_minor,
        timing=FeeTiming(row.timing) if row.timing else None,
        meter_id=row.meter_id,
        model=UsageModel(row.model) if row.model else None,
        unit_price=row.unit_price,
        tiers=tuple(
            Tier(
                up_to=None if t["up_to"] is None else Decimal(t["up_to"]),
                unit_price=Decimal(t["unit_price"]),
                flat_fee_minor=int(t["flat_fee_minor"]),
            )
            for t in (row.tiers or [])
        ),
        package_size=row.package_size,
        package_price=row.package_price,
        package_rounding=PackageRounding(row.package_rounding) if row.package_rounding else None,
        included_quantity=row.included_quantity,
        max_charge_minor=row.max_charge_minor,
        group_filter=tuple(sorted((row.group_filter or {}).items())),
    )


def entitlement_def(row: Entitlement, feature_key: str, feature_type: str) -> EntitlementDef:
    return EntitlementDef(
        id=row.id,
        feature_id=row.feature_id,
        feature_key=feature_key,
        feature_type=FeatureType(feature_type),
        enabled=row.enabled,
        config=row.config,
        limit_quantity=row.limit_quantity,
        enforcement=LimitEnforcement(row.enforcement) if row.enforcement else None,
        meter_id=row.meter_id,
    )


def definition_of(tx: Tx, version: PlanVersion) -> dict[str, Any]:
    """A version's definition in the input shape (for copying and re-validating)."""
    terms = version_terms(tx, version.id)
    entitlements: list[dict[str, Any]] = []
    for item in terms.entitlements:
        entry: dict[str, Any] = {"feature": item.feature_id}
        if item.feature_type == FeatureType.BOOLEAN:
            entry["enabled"] = item.enabled
        elif item.feature_type == FeatureType.CONFIG:
            entry["config"] = item.config
        else:
            entry.update(limit=item.limit_quantity, enforcement=str(item.enforcement))
        entitlements.append(entry)
    return {
        "currency": terms.currency,
        "interval": str(terms.interval.unit),
        "interval_count": terms.interval.count,
        "prices": [price.to_dict() for price in terms.prices],
        "entitlements": entitlements,
        "minimum_commitment_minor": terms.minimum_commitment_minor,
        "billing_threshold_minor": terms.billing_threshold_minor,
        "change_policy": terms.change_policies.to_dict(),
        "cancellation_credit": str(terms.cancellation_credit),
        "trial_period_days": terms.trial_period_days,
        "description": version.description,
    }
