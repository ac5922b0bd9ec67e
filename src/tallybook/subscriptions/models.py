"""Subscription tables.

- ``subscriptions``: the current state (status, current phase's version, current period).
- ``subscription_phases``: the history as ``[start, end)`` spans, each on one plan version
  with its billing anchor; a change closes one phase and opens the next. Invoicing rates a
  period from the phases that overlap it.
- ``subscription_periods``: every billing period as it really happened (a trial, a first
  period shorter than its nominal length, a period cut short by an immediate cancellation).
- ``subscription_changes``: plan changes and cancellations, applied or scheduled.
- ``subscription_charges``: pending charges: in-advance fees and prorations for invoicing to
  pick up, with what has been credited back on each (no credit farming).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, JSONType, UTCDateTime


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("ix_subscriptions_customer", "customer_id", "id"),
        # The scheduler's scan: what needs attention (a period or a trial ending) by now.
        Index("ix_subscriptions_next_action_at", "next_action_at"),
        Index("ix_subscriptions_current_period_end_at", "current_period_end_at"),
        CheckConstraint(
            "status IN ('trialing', 'active', 'past_due', 'unpaid', 'paused', 'canceled')",
            name="status",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    plan_id: Mapped[str] = mapped_column(ForeignKey("catalog_plans.id"), index=True)
    plan_version_id: Mapped[str] = mapped_column(ForeignKey("catalog_plan_versions.id"), index=True)
    current_phase_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: The anchor the current phase's periods align to (NULL during a trial whose first
    #: period will start when the trial ends).
    billing_anchor_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Whether the caller chose the anchor (otherwise it follows the start or the trial end).
    anchor_is_explicit: Mapped[bool] = mapped_column(Boolean)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    trial_start_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    trial_end_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    trial_end_behavior: Mapped[str] = mapped_column(String(16))
    current_period_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    current_period_start_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    current_period_end_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancellation_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: When the scheduler must next look at it (a period end or the trial end); NULL if never.
    next_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SubscriptionPhase(Base):
    __tablename__ = "subscription_phases"
    __table_args__ = (
        Index("ix_subscription_phases_subscription", "subscription_id", "start_at"),
        CheckConstraint("end_at IS NULL OR end_at >= start_at", name="window"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    plan_version_id: Mapped[str] = mapped_column(ForeignKey("catalog_plan_versions.id"))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    billing_anchor_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The change that opened this phase (NULL for the first phase).
    change_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SubscriptionPeriod(Base):
    __tablename__ = "subscription_periods"
    __table_args__ = (
        Index("ix_subscription_periods_subscription", "subscription_id", "start_at"),
        # Invoicing's scan: periods that ended in a window.
        Index("ix_subscription_periods_ended", "status", "end_at"),
        CheckConstraint("kind IN ('trial', 'regular')", name="kind"),
        CheckConstraint("status IN ('current', 'ended')", name="status"),
        CheckConstraint(
            "nominal_start_at <= start_at AND start_at <= end_at AND end_at <= nominal_end_at",
            name="window",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    kind: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(8))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    nominal_start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    nominal_end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Why it ended: renewed | canceled | interval_changed | trial_ended | paused.
    end_reason: Mapped[str | None] = mapped_column(String(24), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SubscriptionChange(Base):
    __tablename__ = "subscription_changes"
    __table_args__ = (
        Index("ix_subscription_changes_subscription", "subscription_id", "status"),
        CheckConstraint("kind IN ('plan_change', 'cancel')", name="kind"),
        CheckConstraint("status IN ('scheduled', 'applied', 'canceled')", name="status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    from_plan_version_id: Mapped[str] = mapped_column(ForeignKey("catalog_plan_versions.id"))
    to_plan_version_id: Mapped[str | None] = mapped_column(
        ForeignKey("catalog_plan_versions.id"), nullable=True
    )
    #: upgrade | downgrade | same_price (plan changes)
    direction: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: prorate_now | now_without_proration | period_end (plan changes)
    policy: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: Immediate cancellations: whether the unused prepaid part was credited.
    credit_unused: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    invoice_now: Mapped[bool] = mapped_column(Boolean)
    #: api | migration | trial_end | …
    source: Mapped[str] = mapped_column(String(24))
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PendingCharge(Base):
    """A charge (or credit) waiting for an invoice: in-advance fees and prorations.

    ``credited_minor`` is how much of a positive charge later prorations credited back; the
    check constraint keeps it within ``[0, amount_minor]``, the database half of the "no credit
    farming" rule (the rating half caps each credit at what is left)."""

    __tablename__ = "subscription_charges"
    __table_args__ = (
        Index("ix_subscription_charges_pending", "subscription_id", "status", "service_start_at"),
        Index("ix_subscription_charges_period", "period_id"),
        CheckConstraint("status IN ('pending', 'invoiced')", name="status"),
        CheckConstraint(
            "credited_minor >= 0 AND (credited_minor = 0 OR credited_minor <= amount_minor)",
            name="credited",
        ),
        CheckConstraint("service_start_at <= service_end_at", name="window"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    period_id: Mapped[str] = mapped_column(ForeignKey("subscription_periods.id"))
    change_id: Mapped[str | None] = mapped_column(
        ForeignKey("subscription_changes.id"), nullable=True
    )
    #: fee_advance | proration_charge | proration_credit
    kind: Mapped[str] = mapped_column(String(24))
    description: Mapped[str] = mapped_column(String(500))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    credited_minor: Mapped[int] = mapped_column(BigInteger)
    #: Once a prepaid charge is credited from an instant, it only paid for the time before
    #: it: later changes in the period find nothing left on it to credit.
    credited_from_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: For a credit: the charge it credits.
    credits_charge_id: Mapped[str | None] = mapped_column(
        ForeignKey("subscription_charges.id"), nullable=True
    )
    price_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    price_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    plan_version_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    service_start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    service_end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    breakdown: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16))
    #: Invoice it on its own invoice now rather than on the next periodic one.
    invoice_now: Mapped[bool] = mapped_column(Boolean)
    invoice_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    invoiced_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Makes creating the same charge twice impossible (e.g. a period's fee on a retried run).
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
