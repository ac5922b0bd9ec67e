"""API shapes of the payments domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tallybook.payments.models import (
    Collection,
    Dispute,
    Payment,
    PaymentAccount,
    Payout,
    Refund,
    WebhookEvent,
)
from tallybook.payments.service.postings import ClearingBalance


class PaymentOut(BaseModel):
    object: Literal["payment"] = "payment"
    id: str
    invoice: str
    customer: str
    collection: str
    provider: str
    attempt_number: int | None = Field(
        description="1, 2, … for collection attempts; null for manual and outside payments"
    )
    trigger: str = Field(description="initial | retry | manual_retry | manual | external")
    status: str = Field(
        description="pending | processing | requires_action | awaiting_transfer | succeeded | failed | canceled"
    )
    amount_minor: int
    currency: str
    amount_refunded_minor: int
    fee_minor: int | None
    failure_code: str | None
    decline_code: str | None
    failure_message: str | None
    provider_payment_id: str | None
    provider_charge_id: str | None
    reference: str | None
    succeeded_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, p: Payment) -> PaymentOut:
        return cls(
            id=p.id,
            invoice=p.invoice_id,
            customer=p.customer_id,
            collection=p.collection_id,
            provider=p.provider,
            attempt_number=p.attempt_number,
            trigger=p.trigger,
            status=p.status,
            amount_minor=p.amount_minor,
            currency=p.currency,
            amount_refunded_minor=p.amount_refunded_minor,
            fee_minor=p.fee_minor,
            failure_code=p.failure_code,
            decline_code=p.decline_code,
            failure_message=p.failure_message,
            provider_payment_id=p.provider_payment_id,
            provider_charge_id=p.provider_charge_id,
            reference=p.reference,
            succeeded_at=p.succeeded_at,
            created_at=p.created_at,
            updated_at=p.updated_at,
        )


class CollectionOut(BaseModel):
    object: Literal["collection"] = "collection"
    id: str
    invoice: str
    invoice_number: str | None
    customer: str
    subscription: str | None
    provider: str
    status: str = Field(
        description="collecting | retrying | awaiting_payment | exhausted | paid | uncollectible | voided"
    )
    currency: str
    amount_due_minor: int
    amount_paid_minor: int
    attempt_count: int
    retries_done: int
    first_failed_at: datetime | None
    next_attempt_at: datetime | None
    last_failure_code: str | None
    last_failure_message: str | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    payments: list[PaymentOut] | None = Field(
        None, description="Its attempts and payments, oldest first (on retrieval)"
    )

    @classmethod
    def of(cls, c: Collection, payments: list[Payment] | None = None) -> CollectionOut:
        return cls(
            id=c.id,
            invoice=c.invoice_id,
            invoice_number=c.invoice_number,
            customer=c.customer_id,
            subscription=c.subscription_id,
            provider=c.provider,
            status=c.status,
            currency=c.currency,
            amount_due_minor=c.amount_due_minor,
            amount_paid_minor=c.amount_paid_minor,
            attempt_count=c.attempt_count,
            retries_done=c.retries_done,
            first_failed_at=c.first_failed_at,
            next_attempt_at=c.next_attempt_at,
            last_failure_code=c.last_failure_code,
            last_failure_message=c.last_failure_message,
            closed_at=c.closed_at,
            created_at=c.created_at,
            updated_at=c.updated_at,
            payments=[PaymentOut.of(p) for p in payments] if payments is not None else None,
        )


class RefundOut(BaseModel):
    object: Literal["refund"] = "refund"
    id: str
    payment: str
    invoice: str
    customer: str
    provider: str
    provider_refund_id: str | None
    amount_minor: int
    currency: str
    status: str = Field(description="pending | succeeded | failed | canceled")
    reason: str | None
    failure_reason: str | None
    origin: str = Field(
        description="api (asked through tallybook) | provider (made at the provider)"
    )
    succeeded_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, r: Refund) -> RefundOut:
        return cls(
            id=r.id,
            payment=r.payment_id,
            invoice=r.invoice_id,
            customer=r.customer_id,
            provider=r.provider,
            provider_refund_id=r.provider_refund_id,
            amount_minor=r.amount_minor,
            currency=r.currency,
            status=r.status,
            reason=r.reason,
            failure_reason=r.failure_reason,
            origin=r.origin,
            succeeded_at=r.succeeded_at,
            created_at=r.created_at,
        )


class DisputeOut(BaseModel):
    object: Literal["dispute"] = "dispute"
    id: str
    payment: str | None
    invoice: str | None
    customer: str | None
    provider_dispute_id: str
    amount_minor: int
    currency: str
    status: str
    reason: str | None
    funds_withdrawn: bool
    outcome: str | None
    closed_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, d: Dispute) -> DisputeOut:
        return cls(
            id=d.id,
            payment=d.payment_id,
            invoice=d.invoice_id,
            customer=d.customer_id,
            provider_dispute_id=d.provider_dispute_id,
            amount_minor=d.amount_minor,
            currency=d.currency,
            status=d.status,
            reason=d.reason,
            funds_withdrawn=d.funds_withdrawn,
            outcome=d.outcome,
            closed_at=d.closed_at,
            created_at=d.created_at,
        )


class PayoutOut(BaseModel):
    object: Literal["payout"] = "payout"
    id: str
    provider: str
    provider_payout_id: str
    amount_minor: int
    currency: str
    status: str
    arrival_at: datetime | None
    failure_code: str | None
    paid_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, p: Payout) -> PayoutOut:
        return cls(
            id=p.id,
            provider=p.provider,
            provider_payout_id=p.provider_payout_id,
            amount_minor=p.amount_minor,
            currency=p.currency,
            status=p.status,
            arrival_at=p.arrival_at,
            failure_code=p.failure_code,
            paid_at=p.paid_at,
            created_at=p.created_at,
        )


class PaymentAccountOut(BaseModel):
    object: Literal["payment_account"] = "payment_account"
    id: str
    customer: str
    provider: str
    stripe_customer_id: str | None
    default_payment_method: str | None
    payment_method_present: bool
    provider_deleted: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, a: PaymentAccount) -> PaymentAccountOut:
        return cls(
            id=a.id,
            customer=a.customer_id,
            provider=a.provider,
            stripe_customer_id=a.provider_customer_id if a.provider == "stripe" else None,
            default_payment_method=a.default_payment_method_id,
            payment_method_present=a.payment_method_present,
            provider_deleted=a.provider_deleted,
            created_at=a.created_at,
            updated_at=a.updated_at,
        )


class InboundEventOut(BaseModel):
    object: Literal["inbound_event"] = "inbound_event"
    id: str = Field(description="The provider's event id (evt_…)")
    provider: str
    type: str
    status: str = Field(description="pending | processed | ignored | parked")
    attempts: int
    object_type: str | None
    object_id: str | None
    provider_created_at: datetime
    received_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime
    outcome: str | None
    last_error: str | None
    payload: dict[str, Any] | None = Field(None, description="The event as received (on retrieval)")

    @classmethod
    def of(cls, e: WebhookEvent, *, with_payload: bool = False) -> InboundEventOut:
        return cls(
            id=e.event_id,
            provider=e.provider,
            type=e.type,
            status=e.status,
            attempts=e.attempts,
            object_type=e.object_type,
            object_id=e.object_id,
            provider_created_at=e.provider_created_at,
            received_at=e.received_at,
            processed_at=e.processed_at,
            next_attempt_at=e.next_attempt_at,
            outcome=e.outcome,
            last_error=e.last_error,
            payload=dict(e.payload) if with_payload else None,
        )


class ClearingBalanceOut(BaseModel):
    object: Literal["clearing_balance"] = "clearing_balance"
    account: str
    currency: str
    posted_minor: int
    held_by_disputes_minor: int
    outstanding_minor: int = Field(
        description="What the provider should still pay out; zero once everything was paid out"
    )

    @classmethod
    def of(cls, b: ClearingBalance) -> ClearingBalanceOut:
        return cls(
            account=b.code,
            currency=b.currency,
            posted_minor=b.posted.amount_minor,
            held_by_disputes_minor=b.held_by_disputes.amount_minor,
            outstanding_minor=b.outstanding.amount_minor,
        )


class WebhookReceivedOut(BaseModel):
    received: bool = True
    event_id: str
    duplicate: bool


# Request bodies --------------------------------------------------------------------------------


class RefundCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: int | None = Field(None, description="Default: all that is still refundable")
    reason: str | None = Field(None, max_length=200)


class MarkPaidBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: int | None = Field(None, description="Default: all that the invoice still owes")
    currency: str | None = None
    reference: str | None = Field(None, description="The bank transfer's reference")
    paid_at: datetime | None = None


class MarkUncollectibleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)


class PaymentAccountBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(description="stripe | manual")
    stripe_customer_id: str | None = Field(
        None,
        description="An existing Stripe customer (cus_…); default: created on the first charge",
    )
