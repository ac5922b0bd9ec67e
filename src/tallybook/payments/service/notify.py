"""Domain events of the payments domain (outbound webhooks deliver them; the console shows
them on the customer's timeline). Payloads are plain JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tallybook.db import Tx
from tallybook.kit.clock import isoformat_z
from tallybook.payments.models import Collection, Dispute, Payment, Payout, Refund
from tallybook.work import events


def _time(value: datetime | None) -> str | None:
    return isoformat_z(value) if value is not None else None


def payment_data(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "invoice_id": payment.invoice_id,
        "provider": payment.provider,
        "attempt_number": payment.attempt_number,
        "trigger": payment.trigger,
        "status": payment.status,
        "amount_minor": payment.amount_minor,
        "currency": payment.currency,
        "provider_payment_id": payment.provider_payment_id,
        "failure_code": payment.failure_code,
        "decline_code": payment.decline_code,
        "failure_message": payment.failure_message,
    }


def collection_data(collection: Collection) -> dict[str, Any]:
    return {
        "id": collection.id,
        "invoice_id": collection.invoice_id,
        "invoice_number": collection.invoice_number,
        "subscription_id": collection.subscription_id,
        "status": collection.status,
        "attempt_count": collection.attempt_count,
        "next_attempt_at": _time(collection.next_attempt_at),
        "amount_due_minor": collection.amount_due_minor,
        "amount_paid_minor": collection.amount_paid_minor,
        "currency": collection.currency,
    }


def payment_succeeded(tx: Tx, payment: Payment, *, applied_minor: int) -> None:
    events.emit(
        tx,
        "payment.succeeded",
        customer_id=payment.customer_id,
        object_id=payment.id,
        data={
            "payment": payment_data(payment),
            "applied_to_invoice_minor": applied_minor,
            "credited_to_balance_minor": payment.amount_minor - applied_minor,
        },
    )


def payment_failed(tx: Tx, payment: Payment, collection: Collection, *, final: bool) -> None:
    """``payment.failed`` for the record, ``invoice.payment_failed`` to tell the customer (what
    failed, when the next try is, whether it was the last)."""
    events.emit(
        tx,
        "payment.failed",
        customer_id=payment.customer_id,
        object_id=payment.id,
        data={"payment": payment_data(payment)},
    )
    events.emit(
        tx,
        "invoice.payment_failed",
        customer_id=payment.customer_id,
        object_id=collection.invoice_id,
        data={
            "invoice_id": collection.invoice_id,
            "invoice_number": collection.invoice_number,
            "amount_due_minor": payment.amount_minor,
            "currency": payment.currency,
            "attempt_number": payment.attempt_number,
            "failure_code": payment.failure_code,
            "failure_message": payment.failure_message,
            "action_required": payment.status == "requires_action",
            "next_attempt_at": _time(collection.next_attempt_at),
            "final": final,
            "collection": collection_data(collection),
        },
    )


def collection_closed(tx: Tx, collection: Collection) -> None:
    events.emit(
        tx,
        f"collection.{collection.status}",
        customer_id=collection.customer_id,
        object_id=collection.id,
        data={"collection": collection_data(collection)},
    )


def refund_event(tx: Tx, refund: Refund, event_type: str) -> None:
    events.emit(
        tx,
        event_type,
        customer_id=refund.customer_id,
        object_id=refund.id,
        data={
            "refund": {
                "id": refund.id,
                "payment_id": refund.payment_id,
                "invoice_id": refund.invoice_id,
                "status": refund.status,
                "amount_minor": refund.amount_minor,
                "currency": refund.currency,
                "reason": refund.reason,
                "provider_refund_id": refund.provider_refund_id,
            }
        },
    )


def dispute_event(tx: Tx, dispute: Dispute, event_type: str) -> None:
    events.emit(
        tx,
        event_type,
        customer_id=dispute.customer_id,
        object_id=dispute.id,
        data={
            "dispute": {
                "id": dispute.id,
                "payment_id": dispute.payment_id,
                "invoice_id": dispute.invoice_id,
                "status": dispute.status,
                "outcome": dispute.outcome,
                "reason": dispute.reason,
                "amount_minor": dispute.amount_minor,
                "currency": dispute.currency,
                "provider_dispute_id": dispute.provider_dispute_id,
            }
        },
    )


def payout_event(tx: Tx, payout: Payout, event_type: str) -> None:
    events.emit(
        tx,
        event_type,
        object_id=payout.id,
        data={
            "payout": {
                "id": payout.id,
                "status": payout.status,
                "amount_minor": payout.amount_minor,
                "currency": payout.currency,
                "provider_payout_id": payout.provider_payout_id,
                "arrival_at": _time(payout.arrival_at),
            }
        },
    )
