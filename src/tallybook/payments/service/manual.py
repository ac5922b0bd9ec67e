"""What finance does by hand: record a bank transfer as a payment, write an invoice off."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from tallybook.db import Tx
from tallybook.kit.clock import ensure_utc
from tallybook.kit.errors import Conflict, InvalidRequest
from tallybook.kit.ids import new_id
from tallybook.kit.money import CurrencyMismatch, check_amount_minor, normalize_currency
from tallybook.payments.context import PaymentsContext
from tallybook.payments.domain import CLOSED_STATUSES, CollectionStatus, Trigger
from tallybook.payments.errors import PaymentsCode
from tallybook.payments.models import Collection, Payment
from tallybook.payments.providers.base import PaymentSnapshot, PaymentState, ProviderName
from tallybook.payments.providers.manual import manual_payment_id
from tallybook.payments.service import collections, dunning, invoices

REFERENCE_LENGTH_MAX: Final = 200


def _open(
    tx: Tx, collection_ref: str, *, written_off_too: bool = False
) -> tuple[Collection, invoices.InvoiceFacts]:
    collection = collections.get(tx, collection_ref, lock=True)
    if written_off_too and collection.status == CollectionStatus.UNCOLLECTIBLE:
        invoice = invoices.get_invoice(tx, collection.invoice_id)
        if invoice.payable_minor(invoice.currency) > 0:
            return collection, invoice
    if CollectionStatus(collection.status) in CLOSED_STATUSES:
        raise Conflict(
            PaymentsCode.COLLECTION_CLOSED,
            f"the invoice's collection is {collection.status}",
            param="collection",
        )
    invoice = invoices.get_invoice(tx, collection.invoice_id)
    if dunning.close_if_invoice_closed(tx, collection, invoice):
        raise Conflict(
            PaymentsCode.COLLECTION_CLOSED, f"the invoice is {invoice.status}", param="collection"
        )
    return collection, invoice


def mark_paid(
    tx: Tx,
    collection_ref: str,
    ctx: PaymentsContext,
    *,
    amount_minor: int | None = None,
    currency: str | None = None,
    reference: str | None = None,
    paid_at: datetime | None = None,
) -> Payment:
    """Record a bank transfer (all that is owed, or a part): a ``manual`` payment into
    ``manual_clearing``. Works for any collection, whatever its provider, and for an invoice
    written off since (invoicing reverses the write-off by what arrives)."""
    collection, invoice = _open(tx, collection_ref, written_off_too=True)
    payable = invoice.payable_minor(invoice.currency)
    amount = payable if amount_minor is None else check_amount_minor(amount_minor)
    if amount <= 0:
        raise InvalidRequest(
            "amount_invalid", "amount_minor must be positive", param="amount_minor"
        )
    if currency is not None and normalize_currency(currency) != invoice.currency:
        raise CurrencyMismatch(invoice.currency, normalize_currency(currency))
    if amount > payable:
        raise Conflict(
            PaymentsCode.MANUAL_PAYMENT_EXCEEDS_DUE,
            f"{amount} exceeds the {payable} still owed",
            param="amount_minor",
        )
    if reference is not None and not 1 <= len(reference.strip()) <= REFERENCE_LENGTH_MAX:
        raise InvalidRequest(
            PaymentsCode.PAYMENT_REFERENCE_INVALID,
            f"reference must be 1-{REFERENCE_LENGTH_MAX} characters",
            param="reference",
        )
    if paid_at is not None:
        paid_at = ensure_utc(paid_at, param="paid_at")
    now = tx.now()
    payment = Payment(
        id=new_id("pay"),
        collection_id=collection.id,
        invoice_id=collection.invoice_id,
        customer_id=collection.customer_id,
        provider=str(ProviderName.MANUAL),
        attempt_number=None,
        trigger=str(Trigger.MANUAL),
        amount_minor=amount,
        currency=invoice.currency,
        status=str(PaymentState.AWAITING_TRANSFER),
        reference=reference.strip() if reference else None,
        amount_refunded_minor=0,
        created_at=now,
        updated_at=now,
    )
    payment.provider_payment_id = manual_payment_id(payment.id)
    tx.session.add(payment)
    tx.session.flush()
    collections.apply_payment_state(
        tx,
        payment.id,
        PaymentSnapshot(
            provider_payment_id=payment.provider_payment_id,
            state=PaymentState.SUCCEEDED,
            amount_minor=amount,
            currency=invoice.currency,
            provider_status="paid",
        ),
        ctx,
        observed_at=paid_at or now,
    )
    return payment


def mark_uncollectible(tx: Tx, collection_ref: str, *, reason: str | None) -> Collection:
    """Stop collecting and write the invoice off (invoicing posts the write-off)."""
    collection, _ = _open(tx, collection_ref)
    dunning.write_off(tx, collection, reason=reason or "marked uncollectible")
    return collection
