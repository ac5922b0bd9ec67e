"""Tables of the payments domain (migration ``0007_payments``).

- ``payments_accounts``: which provider collects from a customer, and the customer's id there.
- ``payments_collections``: one per invoice: the dunning state (attempts, next retry, outcome).
- ``payments_payments``: one per attempt (one Stripe PaymentIntent each) or manual payment.
- ``payments_refunds``, ``payments_disputes``, ``payments_payouts``: money moving afterwards.
- ``payments_webhook_events``: the inbox of provider events, keyed by the provider's event id.
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
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, JSONType, UTCDateTime

PROVIDER_ID_LENGTH_MAX = 255


class PaymentAccount(Base):
    __tablename__ = "payments_accounts"
    __table_args__ = (UniqueConstraint("provider", "provider_customer_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), unique=True)
    provider: Mapped[str] = mapped_column(String(20))
    provider_customer_id: Mapped[str | None] = mapped_column(
        String(PROVIDER_ID_LENGTH_MAX), nullable=True
    )
    default_payment_method_id: Mapped[str | None] = mapped_column(
        String(PROVIDER_ID_LENGTH_MAX), nullable=True
    )
    payment_method_present: Mapped[bool] = mapped_column(Boolean, default=False)
    provider_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: ``created`` of the newest provider state applied (older events never overwrite it).
    provider_state_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Collection(Base):
    __tablename__ = "payments_collections"
    __table_args__ = (
        # The dunning job's "due retries" scan.
        Index("ix_payments_collections_due", "status", "next_attempt_at"),
        CheckConstraint(
            "status IN ('collecting', 'retrying', 'awaiting_payment', 'exhausted', 'paid', "
            "'uncollectible', 'voided')",
            name="status",
        ),
        CheckConstraint("amount_due_minor >= 0 AND amount_paid_minor >= 0", name="amounts"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(String(40), unique=True)
    invoice_number: Mapped[str | None] = mapped_column(String(100), nullable=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    provider: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    amount_due_minor: Mapped[int] = mapped_column(BigInteger)
    amount_paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: collecting | retrying | awaiting_payment | exhausted | paid | uncollectible | voided
    status: Mapped[str] = mapped_column(String(20))
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Automatic retries made so far (the index into the retry schedule).
    retries_done: Mapped[int] = mapped_column(Integer, default=0)
    #: The last attempt whose failure dunning reacted to (each failure moves dunning once).
    last_failed_attempt: Mapped[int] = mapped_column(Integer, default=0)
    first_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_failure_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    last_failure_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Payment(Base):
    __tablename__ = "payments_payments"
    __table_args__ = (
        # One row per (invoice, attempt): the unit of idempotency of collection and dunning.
        UniqueConstraint("invoice_id", "attempt_number"),
        UniqueConstraint("provider", "provider_payment_id"),
        # The sync job's "still unresolved" scan.
        Index("ix_payments_payments_status", "status", "updated_at"),
        CheckConstraint(
            "status IN ('pending', 'processing', 'requires_action', 'awaiting_transfer', "
            "'succeeded', 'failed', 'canceled')",
            name="status",
        ),
        CheckConstraint(
            "amount_minor >= 0 AND amount_refunded_minor >= 0 "
            "AND amount_refunded_minor <= amount_minor",
            name="amounts",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("payments_collections.id"), index=True)
    invoice_id: Mapped[str] = mapped_column(String(40), index=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    #: 1, 2, … for collection attempts; None for manual and external payments.
    attempt_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: initial | retry | manual_retry | manual | external
    trigger: Mapped[str] = mapped_column(String(20))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: pending | processing | requires_action | awaiting_transfer | succeeded | failed | canceled
    status: Mapped[str] = mapped_column(String(20))
    provider_status: Mapped[str | None] = mapped_column(String(40), nullable=True)
    provider_payment_id: Mapped[str | None] = mapped_column(
        String(PROVIDER_ID_LENGTH_MAX), nullable=True
    )
    provider_charge_id: Mapped[str | None] = mapped_column(
        String(PROVIDER_ID_LENGTH_MAX), nullable=True, index=True
    )
    payment_method_id: Mapped[str | None] = mapped_column(
        String(PROVIDER_ID_LENGTH_MAX), nullable=True
    )
    failure_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    decline_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    fee_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    amount_refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The bank transfer's reference (manual payments).
    reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    provider_state_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Refund(Base):
    __tablename__ = "payments_refunds"
    __table_args__ = (
        UniqueConstraint("provider", "provider_refund_id"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'canceled')", name="status"),
        CheckConstraint("amount_minor > 0", name="amount"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments_payments.id"), index=True)
    invoice_id: Mapped[str] = mapped_column(String(40), index=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    provider: Mapped[str] = mapped_column(String(20))
    provider_refund_id: Mapped[str | None] = mapped_column(
        String(PROVIDER_ID_LENGTH_MAX), nullable=True
    )
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: pending | succeeded | failed | canceled
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: api (asked through tallybook) | provider (seen first in a provider event)
    origin: Mapped[str] = mapped_column(String(20))
    provider_state_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Dispute(Base):
    __tablename__ = "payments_disputes"
    __table_args__ = (UniqueConstraint("provider", "provider_dispute_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str | None] = mapped_column(
        ForeignKey("payments_payments.id"), nullable=True, index=True
    )
    invoice_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    customer_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    provider: Mapped[str] = mapped_column(String(20))
    provider_dispute_id: Mapped[str] = mapped_column(String(PROVIDER_ID_LENGTH_MAX))
    provider_charge_id: Mapped[str | None] = mapped_column(
        String(PROVIDER_ID_LENGTH_MAX), nullable=True
    )
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: The provider's status (needs_response, under_review, won, lost, warning_closed…).
    status: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: Whether the funds were withdrawn (an inquiry withdraws nothing).
    funds_withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)
    #: won | lost | None while open (warning_closed is "won" for the books: nothing was lost).
    outcome: Mapped[str | None] = mapped_column(String(10), nullable=True)
    provider_state_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Payout(Base):
    __tablename__ = "payments_payouts"
    __table_args__ = (UniqueConstraint("provider", "provider_payout_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    provider_payout_id: Mapped[str] = mapped_column(String(PROVIDER_ID_LENGTH_MAX))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: pending | in_transit | paid | failed | canceled
    status: Mapped[str] = mapped_column(String(20))
    arrival_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failure_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    provider_state_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookEvent(Base):
    """An event received from a provider, stored once under the provider's own event id.

    pending → processed | ignored (not ours, or a type we don't act on), or parked after
    ``inbox_attempts_max`` failures until a human replays it."""

    __tablename__ = "payments_webhook_events"
    __table_args__ = (
        # The processor's scan: due events in the provider's creation order.
        Index("ix_payments_webhook_events_due", "status", "next_attempt_at", "provider_created_at"),
        CheckConstraint("status IN ('pending', 'processed', 'ignored', 'parked')", name="status"),
    )

    event_id: Mapped[str] = mapped_column(String(PROVIDER_ID_LENGTH_MAX), primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    type: Mapped[str] = mapped_column(String(100), index=True)
    api_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    object_type: Mapped[str | None] = mapped_column(String(60), nullable=True)
    object_id: Mapped[str | None] = mapped_column(
        String(PROVIDER_ID_LENGTH_MAX), nullable=True, index=True
    )
    provider_created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: What processing did: "payment pay_… succeeded", "ignored: not a tallybook payment"…
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
