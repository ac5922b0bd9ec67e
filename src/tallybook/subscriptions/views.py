"""Plain values describing subscriptions, built from rows: what the service returns to other
domains and to the API (a preview returns the same values, built inside the rolled-back
savepoint, so they never point at rows that were not kept)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tallybook.subscriptions.models import (
    PendingCharge,
    Subscription,
    SubscriptionChange,
    SubscriptionPeriod,
    SubscriptionPhase,
)


@dataclass(frozen=True, slots=True)
class ChangeView:
    id: str
    subscription_id: str
    kind: str
    status: str
    from_plan_version_id: str
    to_plan_version_id: str | None
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
    def of(cls, row: SubscriptionChange) -> ChangeView:
        return cls(
            id=row.id,
            subscription_id=row.subscription_id,
            kind=row.kind,
            status=row.status,
            from_plan_version_id=row.from_plan_version_id,
            to_plan_version_id=row.to_plan_version_id,
            direction=row.direction,
            policy=row.policy,
            credit_unused=row.credit_unused,
            invoice_now=row.invoice_now,
            source=row.source,
            effective_at=row.effective_at,
            requested_at=row.requested_at,
            applied_at=row.applied_at,
            canceled_at=row.canceled_at,
        )


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    id: str
    customer_id: str
    status: str
    currency: str
    plan_id: str
    plan_version_id: str
    billing_anchor_at: datetime | None
    started_at: datetime
    trial_start_at: datetime | None
    trial_end_at: datetime | None
    trial_end_behavior: str
    current_period_id: str | None
    current_period_start_at: datetime | None
    current_period_end_at: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    cancellation_reason: str | None
    scheduled_change: ChangeView | None
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Subscription, scheduled: SubscriptionChange | None) -> SubscriptionView:
        return cls(
            id=row.id,
            customer_id=row.customer_id,
            status=row.status,
            currency=row.currency,
            plan_id=row.plan_id,
            plan_version_id=row.plan_version_id,
            billing_anchor_at=row.billing_anchor_at,
            started_at=row.started_at,
            trial_start_at=row.trial_start_at,
            trial_end_at=row.trial_end_at,
            trial_end_behavior=row.trial_end_behavior,
            current_period_id=row.current_period_id,
            current_period_start_at=row.current_period_start_at,
            current_period_end_at=row.current_period_end_at,
            cancel_at_period_end=row.cancel_at_period_end,
            canceled_at=row.canceled_at,
            ended_at=row.ended_at,
            cancellation_reason=row.cancellation_reason,
            scheduled_change=ChangeView.of(scheduled) if scheduled is not None else None,
            metadata=dict(row.metadata_),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True, slots=True)
class PhaseView:
    id: str
    subscription_id: str
    plan_version_id: str
    start_at: datetime
    end_at: datetime | None
    billing_anchor_at: datetime | None
    change_id: str | None

    @classmethod
    def of(cls, row: SubscriptionPhase) -> PhaseView:
        return cls(
            id=row.id,
            subscription_id=row.subscription_id,
            plan_version_id=row.plan_version_id,
            start_at=row.start_at,
            end_at=row.end_at,
            billing_anchor_at=row.billing_anchor_at,
            change_id=row.change_id,
        )


@dataclass(frozen=True, slots=True)
class PeriodView:
    """A billing period. ``id`` is None for a projected period (one that has not started)."""

    id: str | None
    subscription_id: str
    kind: str
    status: str
    start_at: datetime
    end_at: datetime
    nominal_start_at: datetime
    nominal_end_at: datetime
    end_reason: str | None

    @classmethod
    def of(cls, row: SubscriptionPeriod) -> PeriodView:
        return cls(
            id=row.id,
            subscription_id=row.subscription_id,
            kind=row.kind,
            status=row.status,
            start_at=row.start_at,
            end_at=row.end_at,
            nominal_start_at=row.nominal_start_at,
            nominal_end_at=row.nominal_end_at,
            end_reason=row.end_reason,
        )

    @property
    def is_trial(self) -> bool:
        return self.kind == "trial"


@dataclass(frozen=True, slots=True)
class PendingChargeView:
    id: str
    subscription_id: str
    customer_id: str
    period_id: str
    change_id: str | None
    kind: str
    description: str
    currency: str
    amount_minor: int
    credited_minor: int
    credits_charge_id: str | None
    price_id: str | None
    price_key: str | None
    plan_version_id: str | None
    service_start_at: datetime
    service_end_at: datetime
    breakdown: dict[str, Any]
    status: str
    invoice_now: bool
    invoice_id: str | None
    invoiced_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: PendingCharge) -> PendingChargeView:
        return cls(
            id=row.id,
            subscription_id=row.subscription_id,
            customer_id=row.customer_id,
            period_id=row.period_id,
            change_id=row.change_id,
            kind=row.kind,
            description=row.description,
            currency=row.currency,
            amount_minor=row.amount_minor,
            credited_minor=row.credited_minor,
            credits_charge_id=row.credits_charge_id,
            price_id=row.price_id,
            price_key=row.price_key,
            plan_version_id=row.plan_version_id,
            service_start_at=row.service_start_at,
            service_end_at=row.service_end_at,
            breakdown=dict(row.breakdown),
            status=row.status,
            invoice_now=row.invoice_now,
            invoice_id=row.invoice_id,
            invoiced_at=row.invoiced_at,
            created_at=row.created_at,
        )


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """The outcome of a create, change or cancel (or its preview: the same values, nothing
    kept). ``lines`` are the charges it records, in order; on a preview their ids are ones
    that were never kept."""

    preview: bool
    subscription: SubscriptionView
    change: ChangeView | None
    lines: tuple[PendingChargeView, ...]

    @property
    def total_minor(self) -> int:
        return sum((line.amount_minor for line in self.lines), start=0)
