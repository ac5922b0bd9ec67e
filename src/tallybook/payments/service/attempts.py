"""Collection attempts: one ``payments_payments`` row per (invoice, attempt number), created in
the transaction that decides on the attempt; the provider call leaves through the outbox
(``payments.attempt``) after that transaction commits."""

from __future__ import annotations

from tallybook.db import Tx
from tallybook.kit.ids import new_id
from tallybook.payments import repository, topics
from tallybook.payments.context import PaymentsContext
from tallybook.payments.domain import ATTEMPT_TRIGGERS, IN_FLIGHT_STATES, Trigger
from tallybook.payments.models import Collection, Payment
from tallybook.payments.providers.base import PaymentState, ProviderName
from tallybook.payments.service.invoices import InvoiceFacts
from tallybook.work import outbox


def current(tx: Tx, collection: Collection) -> Payment | None:
    """The collection's latest attempt (None before the first)."""
    if collection.attempt_count == 0:
        return None
    return repository.payment_for_attempt(tx, collection.invoice_id, collection.attempt_count)


def in_flight(tx: Tx, collection: Collection) -> Payment | None:
    attempt = current(tx, collection)
    if attempt is not None and PaymentState(attempt.status) in IN_FLIGHT_STATES:
        return attempt
    return None


def create(
    tx: Tx,
    collection: Collection,
    invoice: InvoiceFacts,
    *,
    trigger: Trigger,
    ctx: PaymentsContext,
) -> Payment:
    """Add the next attempt for what the invoice still owes, and queue its provider call.

    The caller holds the collection's lock, so attempt numbers never collide; the unique
    (invoice, attempt) constraint would refuse it anyway."""
    assert trigger in ATTEMPT_TRIGGERS
    now = tx.now()
    collection.attempt_count += 1
    manual = collection.provider == ProviderName.MANUAL
    payment = Payment(
        id=new_id("pay"),
        collection_id=collection.id,
        invoice_id=collection.invoice_id,
        customer_id=collection.customer_id,
        provider=collection.provider,
        attempt_number=collection.attempt_count,
        trigger=str(trigger),
        amount_minor=invoice.amount_remaining_minor,
        currency=invoice.currency,
        status=str(PaymentState.AWAITING_TRANSFER if manual else PaymentState.PENDING),
        amount_refunded_minor=0,
        created_at=now,
        updated_at=now,
    )
    tx.session.add(payment)
    collection.updated_at = now
    tx.session.flush()
    if not manual:
        outbox.enqueue(
            tx,
            topic=topics.ATTEMPT,
            dedup_key=payment.id,
            payload={"payment_id": payment.id},
            ordering_key=f"invoice:{collection.invoice_id}",
        )
    return payment
