"""API shapes of grants, recurring grants, plan credit rules and promotion codes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tallybook.grants.domain import GrantKind
from tallybook.grants.issuance import GrantInput, GrantView
from tallybook.grants.models import (
    PlanCreditRule,
    PromotionCode,
    PromotionRedemption,
    RecurringGrant,
)
from tallybook.grants.plan_credits import PlanCreditRuleInput
from tallybook.grants.promotions import CreditTemplate, PromotionCodeInput
from tallybook.grants.recurring import RecurringInput
from tallybook.kit.assets import minor_to_quantity

Kind = Literal["monetary", "usage"]
Source = Literal["promotion", "purchase", "goodwill", "plan"]
Interval = Literal["day", "week", "month", "year"]
Expiry = Literal["next_instance", "after_days", "never"]


def _quantity(kind: str, amount_minor: int | None) -> Decimal | None:
    if kind != GrantKind.USAGE or amount_minor is None:
        return None
    return minor_to_quantity(amount_minor)


# Grants --------------------------------------------------------------------------------------


class GrantCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: str = Field(description="Customer id (`cus_…`) or your external id")
    kind: Kind = "monetary"
    amount_minor: int | None = Field(None, description="Monetary: minor units of `currency`")
    currency: str | None = Field(None, description="Monetary: default the customer's currency")
    meter: str | None = Field(None, description="Usage: the meter id or key credited")
    quantity: Decimal | None = Field(None, description="Usage: units (up to 6 decimal places)")
    source: Source = "goodwill"
    priority: int = Field(50, description="Burn-down order: 0 first, 100 last")
    effective_at: datetime | None = Field(None, description="Usable from (default now)")
    expires_at: datetime | None = Field(None, description="Usable until (exclusive); none: never")
    reason: str = Field(description="Why: recorded with the grant, with who issued it")
    metadata: dict[str, str] | None = None

    def to_input(self) -> GrantInput:
        return GrantInput(
            customer=self.customer,
            kind=self.kind,
            amount_minor=self.amount_minor,
            currency=self.currency,
            meter=self.meter,
            quantity=self.quantity,
            source=self.source,
            priority=self.priority,
            effective_at=self.effective_at,
            expires_at=self.expires_at,
            reason=self.reason,
            metadata=self.metadata,
        )


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(description="Why: recorded with the change")


class GrantOut(BaseModel):
    object: Literal["grant"] = "grant"
    id: str
    customer: str
    kind: str
    source: str
    asset: str = Field(description="The ledger asset: the currency, or U_<METER KEY>")
    currency: str | None
    meter_id: str | None
    amount_minor: int = Field(description="Issued, rollover included (micro-units for usage)")
    quantity: Decimal | None = Field(description="Usage grants: `amount_minor` as units")
    rollover_minor: int
    remaining_minor: int = Field(description="What it can still give (the ledger's balance)")
    remaining_quantity: Decimal | None
    held_minor: int = Field(description="Held by open money reservations")
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    status: str
    account_id: str = Field(description="The grant's ledger wallet")
    issued_by: str
    reason: str
    recurring_grant_id: str | None
    period_index: int | None
    promotion_redemption_id: str | None
    voided_at: datetime | None
    voided_by: str | None
    void_reason: str | None
    expired_at: datetime | None
    metadata: dict[str, str]
    created_at: datetime

    @classmethod
    def of(cls, view: GrantView) -> GrantOut:
        grant = view.grant
        return cls(
            id=grant.id,
            customer=grant.customer_id,
            kind=grant.kind,
            source=grant.source,
            asset=grant.asset,
            currency=grant.currency,
            meter_id=grant.meter_id,
            amount_minor=grant.amount_minor,
            quantity=_quantity(grant.kind, grant.amount_minor),
            rollover_minor=grant.rollover_minor,
            remaining_minor=view.remaining_minor,
            remaining_quantity=_quantity(grant.kind, view.remaining_minor),
            held_minor=view.held_minor,
            priority=grant.priority,
            effective_at=grant.effective_at,
            expires_at=grant.expires_at,
            status=grant.status,
            account_id=grant.account_id,
            issued_by=grant.issued_by,
            reason=grant.reason,
            recurring_grant_id=grant.recurring_grant_id,
            period_index=grant.period_index,
            promotion_redemption_id=grant.promotion_redemption_id,
            voided_at=grant.voided_at,
            voided_by=grant.voided_by,
            void_reason=grant.void_reason,
            expired_at=grant.expired_at,
            metadata=dict(grant.metadata_),
            created_at=grant.created_at,
        )


# Recurring grants ----------------------------------------------------------------------------


class RecurringCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: str
    kind: Kind = "monetary"
    amount_minor: int | None = None
    currency: str | None = None
    meter: str | None = None
    quantity: Decimal | None = None
    source: Source = "promotion"
    priority: int = 50
    interval: Interval = "month"
    interval_count: int = 1
    anchor_at: datetime | None = Field(None, description="Instance 0 (default now)")
    ends_at: datetime | None = None
    expiry: Expiry = "next_instance"
    expires_after_days: int | None = None
    rollover: Literal["none", "capped"] = "none"
    rollover_cap_minor: int | None = None
    rollover_cap_quantity: Decimal | None = None
    reason: str
    metadata: dict[str, str] | None = None

    def to_input(self) -> RecurringInput:
        return RecurringInput(**self.model_dump())


class RecurringOut(BaseModel):
    object: Literal["recurring_grant"] = "recurring_grant"
    id: str
    customer: str
    kind: str
    asset: str
    currency: str | None
    meter_id: str | None
    amount_minor: int
    quantity: Decimal | None
    source: str
    priority: int
    interval: str
    interval_count: int
    anchor_at: datetime
    ends_at: datetime | None
    expiry: str
    expires_after_days: int | None
    rollover: str
    rollover_cap_minor: int | None
    status: str
    next_index: int
    next_issue_at: datetime | None
    subscription_id: str | None
    plan_credit_rule_id: str | None
    issued_by: str
    reason: str
    canceled_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: RecurringGrant) -> RecurringOut:
        return cls(
            id=row.id,
            customer=row.customer_id,
            kind=row.kind,
            asset=row.asset,
            currency=row.currency,
            meter_id=row.meter_id,
            amount_minor=row.amount_minor,
            quantity=_quantity(row.kind, row.amount_minor),
            source=row.source,
            priority=row.priority,
            interval=row.interval_unit,
            interval_count=row.interval_count,
            anchor_at=row.anchor_at,
            ends_at=row.ends_at,
            expiry=row.expiry,
            expires_after_days=row.expires_after_days,
            rollover=row.rollover,
            rollover_cap_minor=row.rollover_cap_minor,
            status=row.status,
            next_index=row.next_index,
            next_issue_at=row.next_issue_at,
            subscription_id=row.subscription_id,
            plan_credit_rule_id=row.plan_credit_rule_id,
            issued_by=row.issued_by,
            reason=row.reason,
            canceled_at=row.canceled_at,
            created_at=row.created_at,
        )


class PlanCreditRuleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_version: str = Field(description="The plan version whose subscriptions get the credits")
    kind: Kind = "monetary"
    amount_minor: int | None = Field(None, description="Monetary: in the version's currency")
    meter: str | None = None
    quantity: Decimal | None = None
    priority: int = 50
    interval: Interval = "month"
    interval_count: int = 1
    expiry: Expiry = "next_instance"
    expires_after_days: int | None = None
    rollover: Literal["none", "capped"] = "none"
    rollover_cap_minor: int | None = None
    rollover_cap_quantity: Decimal | None = None
    reason: str

    def to_input(self) -> PlanCreditRuleInput:
        data = self.model_dump()
        data["plan_version_id"] = data.pop("plan_version")
        return PlanCreditRuleInput(**data)


class PlanCreditRuleOut(BaseModel):
    object: Literal["plan_credit_rule"] = "plan_credit_rule"
    id: str
    plan_version: str
    kind: str
    asset: str
    currency: str | None
    meter_id: str | None
    amount_minor: int
    quantity: Decimal | None
    priority: int
    interval: str
    interval_count: int
    expiry: str
    expires_after_days: int | None
    rollover: str
    rollover_cap_minor: int | None
    status: str
    created_by: str
    reason: str
    created_at: datetime
    archived_at: datetime | None

    @classmethod
    def of(cls, row: PlanCreditRule) -> PlanCreditRuleOut:
        return cls(
            id=row.id,
            plan_version=row.plan_version_id,
            kind=row.kind,
            asset=row.asset,
            currency=row.currency,
            meter_id=row.meter_id,
            amount_minor=row.amount_minor,
            quantity=_quantity(row.kind, row.amount_minor),
            priority=row.priority,
            interval=row.interval_unit,
            interval_count=row.interval_count,
            expiry=row.expiry,
            expires_after_days=row.expires_after_days,
            rollover=row.rollover,
            rollover_cap_minor=row.rollover_cap_minor,
            status=row.status,
            created_by=row.created_by,
            reason=row.reason,
            created_at=row.created_at,
            archived_at=row.archived_at,
        )


class SyncOut(BaseModel):
    object: Literal["plan_credit_sync"] = "plan_credit_sync"
    rule: str
    schedules_started: int
    next_subscription: str | None = Field(
        description="Pass as `after` to continue; null when every subscription was examined"
    )


class SyncBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: str | None = None


# Promotion codes -----------------------------------------------------------------------------


class CreditTemplateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind = "monetary"
    amount_minor: int | None = None
    currency: str | None = None
    meter: str | None = None
    quantity: Decimal | None = None
    priority: int = 50
    expires_after_days: int | None = None


class PromotionCodeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="What customers type (3-64 of A-Z 0-9 _ -; case-insensitive)")
    kind: Literal["percent_off", "amount_off", "credit"]
    percent_off: Decimal | None = None
    amount_off_minor: int | None = None
    currency: str | None = None
    duration: Literal["once", "repeating", "forever"] = "once"
    duration_periods: int | None = Field(None, description="repeating: billed periods")
    eligible_plans: list[str] = Field(default_factory=list, max_length=100)
    expires_at: datetime | None = None
    max_redemptions: int | None = None
    max_redemptions_per_customer: int | None = None
    credit: CreditTemplateBody | None = None
    metadata: dict[str, str] | None = None

    def to_input(self) -> PromotionCodeInput:
        data = self.model_dump(exclude={"credit"})
        credit = CreditTemplate(**self.credit.model_dump()) if self.credit else None
        return PromotionCodeInput(**data, credit=credit)


class PromotionCodeOut(BaseModel):
    object: Literal["promotion_code"] = "promotion_code"
    id: str
    code: str
    kind: str
    percent_off: Decimal | None
    amount_off_minor: int | None
    currency: str | None
    duration: str
    duration_periods: int | None
    eligible_plans: list[str]
    expires_at: datetime | None
    max_redemptions: int | None
    max_redemptions_per_customer: int | None
    times_redeemed: int
    credit: dict[str, Any] | None
    active: bool
    created_by: str
    metadata: dict[str, str]
    created_at: datetime

    @classmethod
    def of(cls, row: PromotionCode) -> PromotionCodeOut:
        return cls(
            id=row.id,
            code=row.code,
            kind=row.kind,
            percent_off=row.percent_off,
            amount_off_minor=row.amount_off_minor,
            currency=row.currency,
            duration=row.duration,
            duration_periods=row.duration_periods,
            eligible_plans=list(row.eligible_plan_ids),
            expires_at=row.expires_at,
            max_redemptions=row.max_redemptions,
            max_redemptions_per_customer=row.max_redemptions_per_customer,
            times_redeemed=row.times_redeemed,
            credit=row.credit,
            active=row.status == "active",
            created_by=row.created_by,
            metadata=dict(row.metadata_),
            created_at=row.created_at,
        )


class RedeemBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    customer: str = Field(description="Customer id or external id")
    subscription: str | None = Field(None, description="Discount codes: the subscription")


class RedemptionOut(BaseModel):
    object: Literal["promotion_redemption"] = "promotion_redemption"
    id: str
    promotion_code: str
    customer: str
    subscription: str | None
    grant: str | None
    periods_used: int
    status: str
    redeemed_by: str
    redeemed_at: datetime

    @classmethod
    def of(cls, row: PromotionRedemption) -> RedemptionOut:
        return cls(
            id=row.id,
            promotion_code=row.promotion_code_id,
            customer=row.customer_id,
            subscription=row.subscription_id,
            grant=row.grant_id,
            periods_used=row.periods_used,
            status=row.status,
            redeemed_by=row.redeemed_by,
            redeemed_at=row.redeemed_at,
        )
