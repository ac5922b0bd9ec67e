"""API shapes of features, plans and plan versions.

Decimal fields (unit prices, tier bounds, quantities) accept a JSON number or a decimal
string and are always returned as strings; fractional JSON numbers are decoded as decimals
at the edge, never as floats.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tallybook.catalog.domain import EntitlementDef, FeatureType, VersionTerms
from tallybook.catalog.features import FeatureInput, FeatureUpdate
from tallybook.catalog.models import Feature, Plan, PlanVersion
from tallybook.catalog.plans import PlanInput, PlanUpdate, VersionDetail
from tallybook.catalog.pricing import PriceDef, Tier
from tallybook.kit.quantity import quantity_text

DecimalIn = Decimal | int | str
Policy = Literal["prorate_now", "now_without_proration", "period_end"]


def _text(value: Decimal | None) -> str | None:
    return None if value is None else quantity_text(value)


# Features ---------------------------------------------------------------------------------


class FeatureCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="Stable key, e.g. `sso` or `tokens`")
    name: str
    type: Literal["boolean", "config", "metered"]
    meter_id: str | None = Field(None, description="The meter version a metered feature counts")
    description: str | None = None
    metadata: dict[str, str] | None = None

    def to_input(self) -> FeatureInput:
        return FeatureInput(**self.model_dump())


class FeatureUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] | None = Field(
        None, description="Merged into existing metadata; an empty string removes a key"
    )

    def to_update(self) -> FeatureUpdate:
        return FeatureUpdate(**self.model_dump())


class FeatureOut(BaseModel):
    object: Literal["feature"] = "feature"
    id: str
    key: str
    name: str
    description: str | None
    type: str
    meter_id: str | None
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None

    @classmethod
    def of(cls, feature: Feature) -> FeatureOut:
        return cls(
            id=feature.id,
            key=feature.key,
            name=feature.name,
            description=feature.description,
            type=feature.type,
            meter_id=feature.meter_id,
            metadata=dict(feature.metadata_),
            created_at=feature.created_at,
            updated_at=feature.updated_at,
            archived_at=feature.archived_at,
        )


# Plans ------------------------------------------------------------------------------------


class PlanCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="Stable key, e.g. `pro`")
    name: str
    description: str | None = None
    metadata: dict[str, str] | None = None

    def to_input(self) -> PlanInput:
        return PlanInput(**self.model_dump())


class PlanUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None

    def to_update(self) -> PlanUpdate:
        return PlanUpdate(**self.model_dump())


class PlanOut(BaseModel):
    object: Literal["plan"] = "plan"
    id: str
    key: str
    name: str
    description: str | None
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None

    @classmethod
    def of(cls, plan: Plan) -> PlanOut:
        return cls(
            id=plan.id,
            key=plan.key,
            name=plan.name,
            description=plan.description,
            metadata=dict(plan.metadata_),
            created_at=plan.created_at,
            updated_at=plan.updated_at,
            archived_at=plan.archived_at,
        )


# Versions ---------------------------------------------------------------------------------


class TierBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: DecimalIn | None = Field(
        None, alias="from", description="Optional: must equal the previous tier's up_to"
    )
    up_to: DecimalIn | None = Field(None, description="Inclusive; null on the last tier")
    unit_price: DecimalIn = Field(description='Major units per unit, e.g. "0.0000025"')
    flat_fee_minor: int | None = Field(None, description="Charged once when the tier is used")


class PriceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["flat", "usage"]
    key: str | None = Field(None, description="Unique in the version; stable across versions")
    name: str | None = Field(None, description="Shown on invoice lines")
    amount_minor: int | None = Field(None, description="flat: the fee per period")
    timing: Literal["in_advance", "in_arrears"] | None = Field(
        None, description="flat: billed at the start (default) or the end of the period"
    )
    meter_id: str | None = Field(None, description="usage: the meter version priced")
    model: Literal["per_unit", "graduated", "volume", "package"] | None = None
    unit_price: DecimalIn | None = Field(None, description="per_unit: major units per unit")
    tiers: list[TierBody] | None = Field(None, description="graduated and volume")
    package_size: DecimalIn | None = None
    package_price: DecimalIn | None = Field(None, description="Major units per package")
    package_rounding: Literal["up", "down"] | None = None
    included_quantity: DecimalIn | None = Field(None, description="Free units per period")
    max_charge_minor: int | None = Field(None, description="Cap on the charge per period")
    group_filter: dict[str, str] | None = Field(
        None, description='Price only usage whose group-by dimensions match, e.g. {"model": "x"}'
    )


class EntitlementBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature: str = Field(description="Feature id or key")
    enabled: bool | None = Field(None, description="boolean features")
    config: Any = Field(None, description="config features: any JSON value")
    limit: DecimalIn | None = Field(
        None, description="metered features: usage limit per billing period; null = unlimited"
    )
    enforcement: Literal["hard", "soft"] | None = Field(None, description="metered features")


class ChangePolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upgrade: Policy | None = None
    downgrade: Policy | None = None
    same_price: Policy | None = None


class VersionFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str | None = None
    interval: Literal["day", "week", "month", "year"] | None = None
    interval_count: int | None = None
    prices: list[PriceBody] | None = None
    entitlements: list[EntitlementBody] | None = None
    minimum_commitment_minor: int | None = Field(
        None, description="Billed as a true-up line when a period's charges fall short"
    )
    billing_threshold_minor: int | None = Field(
        None, description="Invoice early once a period's charges reach this amount"
    )
    change_policy: ChangePolicyBody | None = None
    cancellation_credit: Literal["prorate", "none"] | None = None
    trial_period_days: int | None = None
    description: str | None = None

    def to_fields(self) -> dict[str, Any]:
        """The fields the caller set (an explicit null included), in the service's shape."""
        return self.model_dump(exclude_unset=True, by_alias=True)


class VersionCreateBody(VersionFields):
    copy_from: str | None = Field(
        None, description="Start from this version of the same plan; given fields override it"
    )


class VersionUpdateBody(VersionFields):
    """Edit a draft. Given `prices` or `entitlements` replace the whole list."""


class TierOut(BaseModel):
    up_to: str | None
    unit_price: str
    flat_fee_minor: int

    @classmethod
    def of(cls, tier: Tier) -> TierOut:
        return cls(
            up_to=_text(tier.up_to),
            unit_price=quantity_text(tier.unit_price),
            flat_fee_minor=tier.flat_fee_minor,
        )


class PriceOut(BaseModel):
    object: Literal["price"] = "price"
    id: str
    key: str
    name: str
    type: str
    amount_minor: int | None
    timing: str | None
    meter_id: str | None
    model: str | None
    unit_price: str | None
    tiers: list[TierOut] | None
    package_size: str | None
    package_price: str | None
    package_rounding: str | None
    included_quantity: str | None
    max_charge_minor: int | None
    group_filter: dict[str, str] | None

    @classmethod
    def of(cls, price: PriceDef) -> PriceOut:
        usage = not price.is_flat
        return cls(
            id=price.id,
            key=price.key,
            name=price.name,
            type=str(price.type),
            amount_minor=price.amount_minor,
            timing=str(price.timing) if price.timing else None,
            meter_id=price.meter_id,
            model=str(price.model) if price.model else None,
            unit_price=_text(price.unit_price),
            tiers=[TierOut.of(t) for t in price.tiers] if price.tiers else None,
            package_size=_text(price.package_size),
            package_price=_text(price.package_price),
            package_rounding=str(price.package_rounding) if price.package_rounding else None,
            included_quantity=quantity_text(price.included_quantity) if usage else None,
            max_charge_minor=price.max_charge_minor,
            group_filter=price.group_filter_dict or None,
        )


class EntitlementOut(BaseModel):
    object: Literal["plan_entitlement"] = "plan_entitlement"
    id: str
    feature: str
    feature_key: str
    feature_type: str
    enabled: bool | None
    config: Any
    limit: str | None
    enforcement: str | None
    meter_id: str | None

    @classmethod
    def of(cls, item: EntitlementDef) -> EntitlementOut:
        return cls(
            id=item.id,
            feature=item.feature_id,
            feature_key=item.feature_key,
            feature_type=str(item.feature_type),
            enabled=item.enabled,
            config=item.config if item.feature_type == FeatureType.CONFIG else None,
            limit=_text(item.limit_quantity),
            enforcement=str(item.enforcement) if item.enforcement else None,
            meter_id=item.meter_id,
        )


class ChangePolicyOut(BaseModel):
    upgrade: str
    downgrade: str
    same_price: str


class VersionOut(BaseModel):
    object: Literal["plan_version"] = "plan_version"
    id: str
    plan: str
    plan_key: str
    version: int
    status: str
    currency: str
    interval: str
    interval_count: int
    prices: list[PriceOut]
    entitlements: list[EntitlementOut]
    minimum_commitment_minor: int | None
    billing_threshold_minor: int | None
    change_policy: ChangePolicyOut
    cancellation_credit: str
    trial_period_days: int | None
    description: str | None
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    archived_at: datetime | None

    @classmethod
    def of(cls, detail: VersionDetail) -> VersionOut:
        version: PlanVersion = detail.version
        terms: VersionTerms = detail.terms
        return cls(
            id=version.id,
            plan=detail.plan.id,
            plan_key=detail.plan.key,
            version=version.version,
            status=version.status,
            currency=version.currency,
            interval=version.interval_unit,
            interval_count=version.interval_count,
            prices=[PriceOut.of(p) for p in terms.prices],
            entitlements=[EntitlementOut.of(e) for e in terms.entitlements],
            minimum_commitment_minor=version.minimum_commitment_minor,
            billing_threshold_minor=version.billing_threshold_minor,
            change_policy=ChangePolicyOut(**terms.change_policies.to_dict()),
            cancellation_credit=version.cancellation_credit,
            trial_period_days=version.trial_period_days,
            description=version.description,
            created_at=version.created_at,
            updated_at=version.updated_at,
            published_at=version.published_at,
            archived_at=version.archived_at,
        )
