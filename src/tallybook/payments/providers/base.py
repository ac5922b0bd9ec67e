"""The payment-provider boundary: what tallybook asks of Stripe (or of finance, for the manual
provider), in tallybook's words. Providers return snapshots of the provider's state; the
services decide what that means for invoices, the ledger and dunning.

Every mutating call carries an idempotency key derived from our own ids
(:func:`idempotency_key`): ``tb:<purpose>:<our id>:<attempt>``. A retry of the same call after
a timeout reuses the key, so the provider answers with what it already did; a new attempt (a
dunning retry) is a new key, and a new PaymentIntent.

Errors:

- :class:`ProviderUnavailable`: the outcome is unknown (timeout, connection reset, 5xx, rate
  limit). The caller retries the same step later with the same key, after re-reading state.
- :class:`ProviderRejected`: the provider refused the request (bad parameters, no such object,
  bad credentials); retrying the same request won't help, a human is needed.

A declined card is not an error: it is a snapshot with ``state`` failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from tallybook.kit.money import Money


class ProviderName(StrEnum):
    STRIPE = "stripe"
    MANUAL = "manual"


class PaymentState(StrEnum):
    """Our reading of a provider payment (a PaymentIntent), ordered by :data:`STATE_RANK`."""

    PENDING = "pending"  # created, not yet confirmed
    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    AWAITING_TRANSFER = "awaiting_transfer"  # manual: waiting for the bank transfer
    FAILED = "failed"
    CANCELED = "canceled"
    SUCCEEDED = "succeeded"


#: A payment only ever moves to a higher rank: an older event can't undo a newer state. A
#: failed attempt may still succeed later (a customer completing authentication); nothing
#: moves a succeeded or canceled payment.
STATE_RANK: dict[PaymentState, int] = {
    PaymentState.PENDING: 0,
    PaymentState.PROCESSING: 1,
    PaymentState.REQUIRES_ACTION: 1,
    PaymentState.AWAITING_TRANSFER: 1,
    PaymentState.FAILED: 2,
    PaymentState.CANCELED: 3,
    PaymentState.SUCCEEDED: 4,
}
FINAL_STATES = frozenset({PaymentState.SUCCEEDED, PaymentState.CANCELED})


class RefundState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


#: A refund may fail after it succeeded (the bank returns it), never the other way.
REFUND_RANK: dict[RefundState, int] = {
    RefundState.PENDING: 0,
    RefundState.SUCCEEDED: 1,
    RefundState.FAILED: 2,
    RefundState.CANCELED: 2,
}


def idempotency_key(purpose: str, our_id: str, attempt: int = 1) -> str:
    """``tb:<purpose>:<our id>:<attempt>``: the same step of the same attempt always sends the
    same key; Stripe keeps keys for at least 24 hours."""
    return f"tb:{purpose}:{our_id}:{attempt}"


@dataclass(frozen=True, slots=True)
class CustomerDetails:
    """What a provider customer is created from."""

    customer_id: str
    external_id: str
    email: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class ProviderCustomer:
    provider_customer_id: str
    default_payment_method_id: str | None
    payment_method_present: bool
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class CollectRequest:
    """One attempt to collect an invoice's amount from a customer's saved payment method."""

    payment_id: str
    invoice_id: str
    invoice_number: str | None
    customer_id: str
    provider_customer_id: str | None
    amount: Money
    attempt_number: int
    description: str

    @property
    def attempt_key(self) -> str:
        """The id the attempt's idempotency keys derive from: the invoice and the attempt."""
        return self.invoice_id


@dataclass(frozen=True, slots=True)
class PaymentSnapshot:
    provider_payment_id: str
    state: PaymentState
    amount_minor: int
    currency: str
    provider_status: str
    charge_id: str | None = None
    payment_method_id: str | None = None
    failure_code: str | None = None
    decline_code: str | None = None
    failure_message: str | None = None
    #: The provider's processing fee, once known (Stripe: the charge's balance transaction).
    fee_minor: int | None = None
    amount_refunded_minor: int = 0
    #: Our own ids, read back from the provider's metadata.
    metadata: dict[str, str] | None = None
    #: When the provider last changed it, when known (for ordering against events).
    observed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RefundRequest:
    refund_id: str
    provider_payment_id: str
    amount: Money
    reason: str | None


@dataclass(frozen=True, slots=True)
class RefundSnapshot:
    provider_refund_id: str
    state: RefundState
    amount_minor: int
    currency: str
    provider_payment_id: str | None
    charge_id: str | None
    failure_reason: str | None = None
    metadata: dict[str, str] | None = None


class ProviderError(Exception):
    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ProviderUnavailable(ProviderError):
    """The outcome is unknown: retry the same step later (same idempotency key)."""


class ProviderRejected(ProviderError):
    """The provider refused the request; retrying it unchanged won't help."""


class PaymentMethodMissing(ProviderRejected):
    """The customer has no payment method to charge: a failed attempt (the customer is asked
    to add one), not an operational problem."""


class PaymentProvider(Protocol):
    """What a provider does for tallybook. Implementations: ``StripeProvider``,
    ``ManualProvider``."""

    name: ProviderName

    def ensure_customer(self, details: CustomerDetails) -> ProviderCustomer:
        """Create the provider customer on demand (idempotent by our customer id)."""
        ...

    def fetch_customer(self, provider_customer_id: str) -> ProviderCustomer:
        """The customer as the provider has it now: is there a payment method?"""
        ...

    def start_payment(self, request: CollectRequest) -> PaymentSnapshot:
        """Create the attempt's payment without moving money (step one of two)."""
        ...

    def confirm_payment(self, request: CollectRequest, provider_payment_id: str) -> PaymentSnapshot:
        """Try to move the money (step two). Confirming an already confirmed payment answers
        its current state; it never charges twice."""
        ...

    def fetch_payment(self, provider_payment_id: str) -> PaymentSnapshot: ...

    def cancel_payment(self, provider_payment_id: str, *, key: str) -> PaymentSnapshot:
        """Make sure an abandoned attempt can never succeed later."""
        ...

    def refund(self, request: RefundRequest) -> RefundSnapshot: ...

    def fetch_refunds(self, provider_payment_id: str) -> list[RefundSnapshot]: ...
