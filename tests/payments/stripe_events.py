"""Stripe events as Stripe sends them, for the objects tallybook reads.

The shapes follow Stripe's API reference and the fixtures Stripe publishes with its OpenAPI
spec (``stripe/openapi``, ``openapi/fixtures3.json``): every field an object of that type
carries, with test-mode values. Used where localstripe can't produce the event (disputes,
payouts in our currency, refunds failing, events out of order) — never as a stand-in for the
API itself.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from tallybook.payments.signature import signature_header

API_VERSION = "2024-06-20"
_serial = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_1Tb{next(_serial):021d}"


def event(
    event_type: str,
    obj: dict[str, Any],
    *,
    created: int,
    event_id: str | None = None,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id or _id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": _id("req"), "idempotency_key": None},
        "type": event_type,
    }


def payment_intent(
    intent_id: str,
    *,
    status: str,
    amount: int,
    created: int,
    currency: str = "usd",
    customer: str | None = None,
    metadata: dict[str, str] | None = None,
    latest_charge: str | None = None,
    payment_method: str | None = "pm_1TbVisa0000000000000000",
    last_payment_error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    succeeded = status == "succeeded"
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount if succeeded else 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": created if status == "canceled" else None,
        "cancellation_reason": "requested_by_customer" if status == "canceled" else None,
        "capture_method": "automatic",
        "client_secret": f"{intent_id}_secret_test",
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": customer,
        "description": None,
        "invoice": None,
        "last_payment_error": last_payment_error,
        "latest_charge": latest_charge,
        "livemode": False,
        "metadata": metadata or {},
        "next_action": {"type": "use_stripe_sdk"} if status == "requires_action" else None,
        "on_behalf_of": None,
        "payment_method": payment_method,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def card_declined(charge_id: str) -> dict[str, Any]:
    return {
        "charge": charge_id,
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "doc_url": "https://stripe.com/docs/error-codes/card-declined",
        "message": "Your card has insufficient funds.",
        "type": "card_error",
    }


def refund(
    refund_id: str,
    *,
    charge: str,
    payment_intent: str | None,
    amount: int,
    status: str,
    created: int,
    currency: str = "usd",
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": _id("txn"),
        "charge": charge,
        "created": created,
        "currency": currency,
        "destination_details": {
            "card": {"reference_status": "available", "type": "refund"},
            "type": "card",
        },
        "failure_reason": "lost_or_stolen_card" if status == "failed" else None,
        "metadata": metadata or {},
        "payment_intent": payment_intent,
        "reason": None,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }


def charge(
    charge_id: str,
    *,
    payment_intent: str,
    amount: int,
    created: int,
    amount_refunded: int = 0,
    refunds: list[dict[str, Any]] | None = None,
    customer: str | None = None,
    currency: str = "usd",
) -> dict[str, Any]:
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": _id("txn"),
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "captured": True,
        "created": created,
        "currency": currency,
        "customer": customer,
        "description": None,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "outcome": {"network_status": "approved_by_network", "type": "authorized"},
        "paid": True,
        "payment_intent": payment_intent,
        "payment_method": "pm_1TbVisa0000000000000000",
        "refunded": amount_refunded >= amount,
        "refunds": {
            "object": "list",
            "data": refunds or [],
            "has_more": False,
            "url": f"/v1/charges/{charge_id}/refunds",
        },
        "status": "succeeded",
    }


def dispute(
    dispute_id: str,
    *,
    charge: str,
    payment_intent: str | None,
    amount: int,
    status: str,
    created: int,
    currency: str = "usd",
    fee: int = 0,
) -> dict[str, Any]:
    transactions = []
    if not status.startswith("warning_"):
        transactions.append(
            {
                "id": f"txn_withdrawal_{dispute_id}",
                "object": "balance_transaction",
                "amount": -amount,
                "currency": currency,
                "fee": fee,
                "net": -amount - fee,
                "reporting_category": "dispute",
                "type": "adjustment",
                "status": "available",
            }
        )
    if status == "won":
        transactions.append(
            {
                "id": f"txn_reinstatement_{dispute_id}",
                "object": "balance_transaction",
                "amount": amount,
                "currency": currency,
                "fee": 0,
                "net": amount,
                "reporting_category": "dispute_reversal",
                "type": "adjustment",
                "status": "available",
            }
        )
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "balance_transactions": transactions,
        "charge": charge,
        "created": created,
        "currency": currency,
        "evidence": {"uncategorized_text": None},
        "evidence_details": {
            "due_by": created + 7 * 86400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": payment_intent,
        "reason": "fraudulent",
        "status": status,
    }


def payout(
    payout_id: str, *, amount: int, status: str, created: int, currency: str = "usd"
) -> dict[str, Any]:
    return {
        "id": payout_id,
        "object": "payout",
        "amount": amount,
        "arrival_date": created + 2 * 86400,
        "automatic": True,
        "balance_transaction": _id("txn"),
        "created": created,
        "currency": currency,
        "description": "STRIPE PAYOUT",
        "destination": "ba_1TbBank000000000000000000",
        "failure_balance_transaction": _id("txn") if status == "failed" else None,
        "failure_code": "account_closed" if status == "failed" else None,
        "failure_message": "The bank account has been closed" if status == "failed" else None,
        "livemode": False,
        "metadata": {},
        "method": "standard",
        "original_payout": None,
        "reconciliation_status": "completed",
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": None,
        "status": status,
        "type": "bank_account",
    }


def customer(
    customer_id: str, *, created: int, default_payment_method: str | None
) -> dict[str, Any]:
    return {
        "id": customer_id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": created,
        "currency": "usd",
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": "buyer@example.com",
        "invoice_prefix": "A1B2C3D4",
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": default_payment_method,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": None,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def deleted_customer(customer_id: str) -> dict[str, Any]:
    return {"id": customer_id, "object": "customer", "deleted": True}


def payment_method(method_id: str, *, customer: str | None, created: int) -> dict[str, Any]:
    return {
        "id": method_id,
        "object": "payment_method",
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "card": {
            "brand": "visa",
            "country": "US",
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": "Xt5EWLLDS7FJjR1c",
            "funding": "credit",
            "last4": "4242",
            "networks": {"available": ["visa"], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": created,
        "customer": customer,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }


def stripe_invoice(
    invoice_id: str,
    *,
    status: str,
    amount_due: int,
    amount_paid: int,
    created: int,
    customer: str,
    metadata: dict[str, str] | None = None,
    payment_intent: str | None = None,
) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "object": "invoice",
        "amount_due": amount_due,
        "amount_paid": amount_paid,
        "amount_remaining": amount_due - amount_paid,
        "attempt_count": 1,
        "attempted": True,
        "auto_advance": False,
        "billing_reason": "manual",
        "charge": None,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": "usd",
        "customer": customer,
        "hosted_invoice_url": None,
        "lines": {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": metadata or {},
        "number": "A1B2C3D4-0001",
        "paid": status == "paid",
        "payment_intent": payment_intent,
        "status": status,
        "subscription": None,
        "total": amount_due,
    }


def signed(
    event_body: dict[str, Any], secrets: list[str], timestamp: int
) -> tuple[bytes, dict[str, str]]:
    payload = orjson.dumps(event_body)
    header = signature_header(payload, secrets, timestamp)
    return payload, {"Stripe-Signature": header, "Content-Type": "application/json"}
