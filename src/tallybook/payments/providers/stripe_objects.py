"""Reading Stripe objects (API responses and webhook payloads alike) into our snapshots.

Stripe's objects are JSON; the SDK's ``StripeObject`` is a dict, so one set of readers serves
both. Readers are tolerant of API versions: expandable fields may be an id or an object, and
fields a version lacks read as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tallybook.payments.providers.base import (
    PaymentSnapshot,
    PaymentState,
    ProviderCustomer,
    RefundSnapshot,
    RefundState,
)

METADATA_PAYMENT_ID = "tallybook_payment_id"
METADATA_INVOICE_ID = "tallybook_invoice_id"
METADATA_ATTEMPT = "tallybook_attempt"
METADATA_CUSTOMER_ID = "tallybook_customer_id"
METADATA_REFUND_ID = "tallybook_refund_id"


def field(obj: Any, key: str) -> Any:
    """``obj[key]`` or None, for dicts and StripeObjects (SDK 16 has no ``.get``)."""
    if isinstance(obj, Mapping) and key in obj:
        return obj[key]
    return None


def object_id(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the expanded object."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    found = field(value, "id")
    return found if isinstance(found, str) else None


def metadata_of(obj: Any) -> dict[str, str]:
    raw = field(obj, "metadata")
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): str(v) for k, v in raw.items()}


def from_unix(seconds: Any) -> datetime | None:
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


def amount_of(obj: Any, key: str = "amount") -> int:
    value = field(obj, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field(obj, 'object')} {field(obj, 'id')} has no integer {key}")
    return value


def currency_of(obj: Any) -> str:
    value = field(obj, "currency")
    if not isinstance(value, str) or len(value) != 3:
        raise ValueError(f"{field(obj, 'object')} {field(obj, 'id')} has no currency")
    return value.upper()


_PI_STATES = {
    "succeeded": PaymentState.SUCCEEDED,
    "processing": PaymentState.PROCESSING,
    "requires_action": PaymentState.REQUIRES_ACTION,
    "requires_capture": PaymentState.PROCESSING,
    "requires_confirmation": PaymentState.PENDING,
    "canceled": PaymentState.CANCELED,
}


def payment_state(intent: Any) -> PaymentState:
    status = field(intent, "status")
    if status == "requires_payment_method":
        # Fresh (no method yet) or failed (the last confirmation was declined).
        error = field(intent, "last_payment_error")
        return PaymentState.FAILED if error else PaymentState.PENDING
    if status not in _PI_STATES:
        raise ValueError(f"unknown PaymentIntent status {status!r}")
    return _PI_STATES[status]


def payment_snapshot(intent: Any) -> PaymentSnapshot:
    """A PaymentIntent (object or event payload) as a snapshot."""
    intent_id = object_id(intent)
    if intent_id is None:
        raise ValueError("a payment intent without an id")
    error = field(intent, "last_payment_error")
    charge = field(intent, "latest_charge")
    fee_minor: int | None = None
    refunded = 0
    if isinstance(charge, Mapping):
        transaction = field(charge, "balance_transaction")
        if isinstance(transaction, Mapping) and isinstance(field(transaction, "fee"), int):
            fee_minor = field(transaction, "fee")
        refunded_value = field(charge, "amount_refunded")
        refunded = refunded_value if isinstance(refunded_value, int) else 0
    state = payment_state(intent)
    return PaymentSnapshot(
        provider_payment_id=intent_id,
        state=state,
        amount_minor=amount_of(intent),
        currency=currency_of(intent),
        provider_status=str(field(intent, "status")),
        charge_id=object_id(charge) or object_id(field(error, "charge")),
        payment_method_id=object_id(field(intent, "payment_method")),
        failure_code=field(error, "code") if state is PaymentState.FAILED else None,
        decline_code=field(error, "decline_code") if state is PaymentState.FAILED else None,
        failure_message=field(error, "message") if state is PaymentState.FAILED else None,
        fee_minor=fee_minor,
        amount_refunded_minor=refunded,
        metadata=metadata_of(intent),
        observed_at=None,
    )


_REFUND_STATES = {
    "pending": RefundState.PENDING,
    "requires_action": RefundState.PENDING,
    "succeeded": RefundState.SUCCEEDED,
    "failed": RefundState.FAILED,
    "canceled": RefundState.CANCELED,
}


def refund_snapshot(refund: Any) -> RefundSnapshot:
    refund_id = object_id(refund)
    if refund_id is None:
        raise ValueError("a refund without an id")
    status = field(refund, "status")
    if status not in _REFUND_STATES:
        raise ValueError(f"unknown refund status {status!r}")
    return RefundSnapshot(
        provider_refund_id=refund_id,
        state=_REFUND_STATES[status],
        amount_minor=amount_of(refund),
        currency=currency_of(refund),
        provider_payment_id=object_id(field(refund, "payment_intent")),
        charge_id=object_id(field(refund, "charge")),
        failure_reason=field(refund, "failure_reason"),
        metadata=metadata_of(refund),
    )


def customer_snapshot(
    customer: Any, *, payment_method_present: bool | None = None
) -> ProviderCustomer:
    customer_id = object_id(customer)
    if customer_id is None:
        raise ValueError("a customer without an id")
    default = object_id(field(field(customer, "invoice_settings"), "default_payment_method"))
    default = default or object_id(field(customer, "default_source"))
    present = payment_method_present if payment_method_present is not None else default is not None
    return ProviderCustomer(
        provider_customer_id=customer_id,
        default_payment_method_id=default,
        payment_method_present=present or default is not None,
        deleted=bool(field(customer, "deleted")),
    )
