"""API shapes of subscriptions and of the outcome of a subscription write.

Every write that can bill (create, change, cancel, resume, end_trial) answers with a
``subscription_update``: the subscription as it is (or would be, with ``preview: true``), the
change it recorded, and the exact pending charges it recorded (or would record), each with
its explanation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tallybook.catalog.domain import ChangePolicy
from tallybook.subscriptions.domain import CancelAt, CancelRequest, ChangeRequest, CreateRequest
from tallybook.subscriptions.service.changes import MigrationOutcome
from tallybook.subscriptions.views import (
    ChangeResult,
    ChangeView,
    PendingChargeView,
    PeriodView,
    PhaseView,
    SubscriptionView,
)

Policy = Literal["prorate_now", "now_without_proration", "period_end"]


class SubscriptionCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: str = Field(description="Customer id (`cus_…`) or your external id")
    plan_version: str | None = Field(None, description="A published plan version id")
    plan: str | None = Field(None, description="Or a plan id or key: its latest published version")
    billing_anchor: datetime | None = Field(
        None,
        description="Periods align to this instant (default: the start, or the trial end); "
        "a first period that ends early is prorated",
    )
    trial_end: datetime | None = None
    trial_period_days: int | None = Field(
        None, description="Overrides the plan version's default; 0 for no trial"
    )
    trial_end_behavior: Literal["convert", "cancel", "pause"] = "convert"
    metadata: dict[str, str] | None = None
    preview: bool = Field(False, description="Return what would be recorded; write nothing")

    def to_request(self) -> CreateRequest:
        return CreateRequest(
            customer=self.customer,
            plan_version_id=self.plan_version,
            plan=self.plan,
            billing_anchor=self.billing_anchor,
            trial_end=self.trial_end,
            trial_period_days=self.trial_period_days,
            trial_end_behavior=self.trial_end_behavior,
            metadata=self.metadata,
        )


class SubscriptionChangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_version: str | None = Field(None, description="The target published plan version")
    plan: str | None = Field(None, description="Or a plan id or key: its latest published version")
    policy: Policy | None = Field(
        None, description="Overrides the current version's policy for this change's direction"
    )
    invoice_now: bool = Field(False, description="Bill the prorations on their own invoice now")
    preview: bool = Field(False, description="Return the exact lines it would bill; write nothing")

    def to_request(self) -> ChangeRequest:
        return ChangeRequest(
            plan_version_id=self.plan_version,
            plan=self.plan,
            policy=ChangePolicy(self.policy) if self.policy else None,
            invoice_now=self.invoice_now,
        )


class SubscriptionCancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Literal["period_end", "now"] = "period_end"
    credit_unused: bool | None = Field(
        None, description="Cancel now: credit the unused prepaid part (default: plan policy)"
    )
    invoice_now: bool = False
    reason: str | None = Field(None, max_length=32)
    preview: bool = False

    def to_request(self) -> CancelRequest:
        return CancelRequest(
            at=CancelAt(self.at),
            credit_unused=self.credit_unused,
            invoice_now=self.invoice_now,
            reason=self.reason,
        )


class SubscriptionUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, str] = Field(
        description="Merged into existing metadata; an empty string removes a key"
    )


class PreviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preview: bool = False


class MigrationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_plan_version: str
    to_plan_version: str
    policy: Policy = "period_end"
    starting_after: str | None = Field(None, description="Continue after this subscription id")
    limit: int = Field(100, ge=1, le=500)


class ChangeOut(BaseModel):
    object: Literal["subscription_change"] = "subscription_change"
    id: str | None
    kind: str
    status: str
    from_plan_version: str
    to_plan_version: str | None
    direction: str | None
    policy: str | None
    credit_unused: bool | None
    invoice_now: bool
    source: str
    effective_at: datetime
    requested_at: datetime
    applied_at: datetime | None
    canceled_at: datetime | None

    @classmethod
    def of(cls, change: ChangeView, *, preview: bool = False) -> ChangeOut:
        return cls(
            id=None if preview else change.id,
            kind=change.kind,
            status=change.status,
            from_plan_version=change.from_plan_version_id,
            to_plan_version=change.to_plan_version_id,
            direction=change.direction,
            policy=change.policy,
            credit_unused=change.credit_unused,
            invoice_now=change.invoice_now,
            source=change.source,
            effective_at=change.effective_at,
            requested_at=change.requested_at,
            applied_at=change.applied_at,
            canceled_at=change.canceled_at,
        )


class SubscriptionOut(BaseModel):
    object: Literal["subscription"] = "subscription"
    id: str | None
    customer: str
    status: str
    currency: str
    plan: str
    plan_version: str
    billing_anchor_at: datetime | None
    started_at: datetime
    trial_start_at: datetime | None
    trial_end_at: datetime | None
    trial_end_behavior: str
    current_period_start_at: datetime | None
    current_period_end_at: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    cancellation_reason: str | None
    scheduled_change: ChangeOut | None
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, sub: SubscriptionView, *, preview: bool = False) -> SubscriptionOut:
        return cls(
            id=sub.id,
            customer=sub.customer_id,
            status=sub.status,
            currency=sub.currency,
            plan=sub.plan_id,
            plan_version=sub.plan_version_id,
            billing_anchor_at=sub.billing_anchor_at,
            started_at=sub.started_at,
            trial_start_at=sub.trial_start_at,
            trial_end_at=sub.trial_end_at,
            trial_end_behavior=sub.trial_end_behavior,
            current_period_start_at=sub.current_period_start_at,
            current_period_end_at=sub.current_period_end_at,
            cancel_at_period_end=sub.cancel_at_period_end,
            canceled_at=sub.canceled_at,
            ended_at=sub.ended_at,
            cancellation_reason=sub.cancellation_reason,
            scheduled_change=(
                ChangeOut.of(sub.scheduled_change, preview=preview)
                if sub.scheduled_change is not None
                else None
            ),
            metadata=sub.metadata,
            created_at=sub.created_at,
            updated_at=sub.updated_at,
        )


class ChargeOut(BaseModel):
    object: Literal["subscription_charge"] = "subscription_charge"
    id: str | None = Field(description="null on a preview")
    kind: str
    description: str
    currency: str
    amount_minor: int
    credited_minor: int
    credits_charge: str | None
    price: str | None
    price_key: str | None
    plan_version: str | None
    period: str | None
    change: str | None
    service_start_at: datetime
    service_end_at: datetime
    status: str
    invoice_now: bool
    invoice: str | None
    breakdown: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, charge: PendingChargeView, *, preview: bool = False) -> ChargeOut:
        return cls(
            id=None if preview else charge.id,
            kind=charge.kind,
            description=charge.description,
            currency=charge.currency,
            amount_minor=charge.amount_minor,
            credited_minor=charge.credited_minor,
            credits_charge=charge.credits_charge_id,
            price=charge.price_id,
            price_key=charge.price_key,
            plan_version=charge.plan_version_id,
            period=None if preview else charge.period_id,
            change=None if preview else charge.change_id,
            service_start_at=charge.service_start_at,
            service_end_at=charge.service_end_at,
            status=charge.status,
            invoice_now=charge.invoice_now,
            invoice=charge.invoice_id,
            breakdown=charge.breakdown,
            created_at=charge.created_at,
        )


class SubscriptionUpdateOut(BaseModel):
    object: Literal["subscription_update"] = "subscription_update"
    preview: bool
    subscription: SubscriptionOut
    change: ChangeOut | None
    lines: list[ChargeOut]
    total_minor: int
    currency: str

    @classmethod
    def of(cls, result: ChangeResult, *, created: bool = False) -> SubscriptionUpdateOut:
        """``created``: the write created the subscription (its id is null on a preview)."""
        preview = result.preview
        subscription = SubscriptionOut.of(result.subscription, preview=preview)
        if preview and created:
            subscription.id = None
        return cls(
            preview=preview,
            subscription=subscription,
            change=ChangeOut.of(result.change, preview=preview) if result.change else None,
            lines=[ChargeOut.of(line, preview=preview) for line in result.lines],
            total_minor=result.total_minor,
            currency=result.subscription.currency,
        )


class PhaseOut(BaseModel):
    object: Literal["subscription_phase"] = "subscription_phase"
    id: str
    plan_version: str
    start_at: datetime
    end_at: datetime | None
    billing_anchor_at: datetime | None
    change: str | None

    @classmethod
    def of(cls, phase: PhaseView) -> PhaseOut:
        return cls(
            id=phase.id,
            plan_version=phase.plan_version_id,
            start_at=phase.start_at,
            end_at=phase.end_at,
            billing_anchor_at=phase.billing_anchor_at,
            change=phase.change_id,
        )


class PeriodOut(BaseModel):
    object: Literal["subscription_period"] = "subscription_period"
    id: str | None
    kind: str
    status: str
    start_at: datetime
    end_at: datetime
    nominal_start_at: datetime
    nominal_end_at: datetime
    end_reason: str | None

    @classmethod
    def of(cls, period: PeriodView) -> PeriodOut:
        return cls(
            id=period.id,
            kind=period.kind,
            status=period.status,
            start_at=period.start_at,
            end_at=period.end_at,
            nominal_start_at=period.nominal_start_at,
            nominal_end_at=period.nominal_end_at,
            end_reason=period.end_reason,
        )


class SkippedOut(BaseModel):
    subscription: str
    code: str


class MigrationOut(BaseModel):
    object: Literal["subscription_migration"] = "subscription_migration"
    migrated: list[str]
    skipped: list[SkippedOut]
    has_more: bool
    next_starting_after: str | None

    @classmethod
    def of(cls, outcome: MigrationOutcome) -> MigrationOut:
        return cls(
            migrated=list(outcome.migrated),
            skipped=[SkippedOut(subscription=s, code=c) for s, c in outcome.skipped],
            has_more=outcome.has_more,
            next_starting_after=outcome.next_after,
        )
