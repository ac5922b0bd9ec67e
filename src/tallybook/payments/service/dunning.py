"""Failed-payment recovery.

The first failure of an invoice starts the schedule (``retry_days`` after it: 1, 3, 5, 7 by
default) and moves its subscription to ``past_due``. Each due retry is a new attempt (a new
PaymentIntent, a new idempotency key). When the last retry fails the subscription becomes
``unpaid`` or is canceled, per ``after_retries``, and the invoice is left open or marked
uncollectible, per ``invoice_after_retries``. A success at any point (a retry, a manual retry,
a bank transfer) makes the subscription ``active`` again once none of its invoices is overdue.

Every failure is announced (``invoice.payment_failed``) so outbound webhooks can notify the
customer. Dunning reacts to each attempt's failure once (``last_failed_attempt``), whichever of
the provider's answer, a webhook or the sync job reports it first.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Final

from tallybook.db import Tx
from tallybook.kit.errors import Conflict, NotFound
from tallybook.payments import repository
from tallybook.payments.context import PaymentsContext
from tallybook.payments.domain import (
    CLOSED_STATUSES,
    DELINQUENT_STATUSES,
    CollectionStatus,
    Trigger,
    next_retry_at,
)
from tallybook.payments.errors import PaymentsCode
from tallybook.payments.models import Collection, Payment
from tallybook.payments.providers.base import ProviderName
from tallybook.payments.service import attempts, invoices, notify
from tallybook.payments.settings import AfterRetries, InvoiceAfterRetries
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.domain import CancelAt, CancelRequest, Status

log = logging.getLogger(__name__)

DUE_BATCH_MAX: Final = 100


# Subscriptions -------------------------------------------------------------------------------------


def _subscription_status(tx: Tx, subscription_id: str) -> Status | None:
    try:
        return Status(subscriptions.get(tx, subscription_id).status)
    except NotFound:
        return None


def subscription_failed(tx: Tx, subscription_id: str | None) -> None:
    if subscription_id and _subscription_status(tx, subscription_id) == Status.ACTIVE:
        subscriptions.mark_past_due(tx, subscription_id)


def subscription_exhausted(tx: Tx, subscription_id: str | None, policy: AfterRetries) -> None:
    if not subscription_id:
        return
    status = _subscription_status(tx, subscription_id)
    if status not in (Status.ACTIVE, Status.PAST_DUE):
        return
    if policy == AfterRetries.CANCEL:
        subscriptions.cancel(
            tx,
            subscription_id,
            CancelRequest(at=CancelAt.NOW, credit_unused=False, reason="payment_failed"),
        )
        return
    if status == Status.ACTIVE:
        subscriptions.mark_past_due(tx, subscription_id)
    subscriptions.mark_unpaid(tx, subscription_id)


def subscription_recovered(tx: Tx, collection: Collection) -> None:
    """Back to active once none of the subscription's invoices is overdue."""
    subscription_id = collection.subscription_id
    if not subscription_id:
        return
    if _subscription_status(tx, subscription_id) not in (Status.PAST_DUE, Status.UNPAID):
        return
    others = repository.delinquent_collections_of_subscription(
        tx, subscription_id, [str(s) for s in DELINQUENT_STATUSES], except_id=collection.id
    )
    if others == 0:
        subscriptions.mark_active(tx, subscription_id)


# Reacting to a failed attempt --------------------------------------------------------------------


def attempt_failed(tx: Tx, collection: Collection, payment: Payment, ctx: PaymentsContext) -> None:
    """The attempt failed (declined, needs the customer's action, no payment method, or was
    canceled): schedule what comes next. Caller holds the collection's lock."""
    if (
        CollectionStatus(collection.status) in CLOSED_STATUSES
        or payment.attempt_number is None
        or payment.attempt_number != collection.attempt_count
        or payment.attempt_number <= collection.last_failed_attempt
    ):
        return
    now = tx.now()
    collection.last_failed_attempt = payment.attempt_number
    collection.last_failure_code = payment.failure_code
    collection.last_failure_message = payment.failure_message
    collection.updated_at = now
    first = collection.first_failed_at is None
    if first:
        collection.first_failed_at = now
        subscription_failed(tx, collection.subscription_id)
    assert collection.first_failed_at is not None
    was_exhausted = collection.status == CollectionStatus.EXHAUSTED
    next_at = next_retry_at(
        collection.first_failed_at, ctx.settings.retry_days, collection.retries_done
    )
    if next_at is not None:
        collection.status = CollectionStatus.RETRYING
        collection.next_attempt_at = next_at
        notify.payment_failed(tx, payment, collection, final=False)
        return
    collection.status = CollectionStatus.EXHAUSTED
    collection.next_attempt_at = None
    notify.payment_failed(tx, payment, collection, final=True)
    if was_exhausted:
        return  # a manual retry after the schedule ended: the policy was applied already
    subscription_exhausted(tx, collection.subscription_id, ctx.settings.after_retries)
    if ctx.settings.invoice_after_retries == InvoiceAfterRetries.MARK_UNCOLLECTIBLE:
        write_off(tx, collection, reason="payment retries exhausted")
    else:
        notify.collection_closed(tx, collection)


def write_off(tx: Tx, collection: Collection, *, reason: str) -> None:
    invoice = invoices.get_invoice(tx, collection.invoice_id)
    if invoice.status == invoices.OPEN:
        invoices.mark_uncollectible(tx, collection.invoice_id, reason=reason)
    close(tx, collection, CollectionStatus.UNCOLLECTIBLE)


def close(tx: Tx, collection: Collection, status: CollectionStatus) -> None:
    if CollectionStatus(collection.status) in CLOSED_STATUSES:
        return
    now = tx.now()
    collection.status = status
    collection.next_attempt_at = None
    collection.closed_at = now
    collection.updated_at = now
    notify.collection_closed(tx, collection)


def close_if_invoice_closed(tx: Tx, collection: Collection, invoice: invoices.InvoiceFacts) -> bool:
    """An invoice paid, voided or written off elsewhere ends its collection."""
    if CollectionStatus(collection.status) in CLOSED_STATUSES:
        return True
    if invoice.status == invoices.VOID:
        close(tx, collection, CollectionStatus.VOIDED)
    elif invoice.status == invoices.UNCOLLECTIBLE:
        close(tx, collection, CollectionStatus.UNCOLLECTIBLE)
    elif invoice.status == invoices.PAID or invoice.amount_remaining_minor <= 0:
        close(tx, collection, CollectionStatus.PAID)
        subscription_recovered(tx, collection)
    else:
        return False
    return True


# Retries -----------------------------------------------------------------------------------------------


def retry_due(tx: Tx, collection_id: str, ctx: PaymentsContext) -> Payment | None:
    """Start the collection's scheduled retry if it is due (idempotent: the attempt is created
    once, under the collection's lock; a retry already under way is left alone)."""
    collection = repository.collection(tx, collection_id, lock=True)
    if collection is None or collection.status != CollectionStatus.RETRYING:
        return None
    if collection.next_attempt_at is None or collection.next_attempt_at > tx.now():
        return None
    if attempts.in_flight(tx, collection) is not None:
        return None
    invoice = invoices.get_invoice(tx, collection.invoice_id)
    if close_if_invoice_closed(tx, collection, invoice):
        return None
    collection.retries_done += 1
    collection.next_attempt_at = None
    return attempts.create(tx, collection, invoice, trigger=Trigger.RETRY, ctx=ctx)


def due_collection_ids(tx: Tx, now: datetime, *, limit: int = DUE_BATCH_MAX) -> list[str]:
    return repository.due_collection_ids(
        tx, now=now, statuses=[CollectionStatus.RETRYING], limit=limit
    )


def retry_now(tx: Tx, collection: Collection, ctx: PaymentsContext) -> Payment:
    """A manual retry (API, CLI, or a new payment method): a new attempt now. It does not use
    up a scheduled retry; the schedule goes on if it fails."""
    if CollectionStatus(collection.status) in CLOSED_STATUSES:
        raise Conflict(
            PaymentsCode.COLLECTION_CLOSED,
            f"the invoice's collection is {collection.status}",
            param="collection",
        )
    if collection.provider == ProviderName.MANUAL:
        raise Conflict(
            PaymentsCode.INVOICE_NOT_COLLECTIBLE,
            "a manual (bank transfer) collection has nothing to retry; mark it paid instead",
            param="collection",
        )
    running = attempts.in_flight(tx, collection)
    if running is not None:
        raise Conflict(
            PaymentsCode.ATTEMPT_IN_PROGRESS,
            f"attempt {running.attempt_number} ({running.id}) is still {running.status}",
            param="collection",
        )
    invoice = invoices.get_invoice(tx, collection.invoice_id)
    if close_if_invoice_closed(tx, collection, invoice):
        raise Conflict(
            PaymentsCode.COLLECTION_CLOSED,
            f"the invoice is {invoice.status}",
            param="collection",
        )
    return attempts.create(tx, collection, invoice, trigger=Trigger.MANUAL_RETRY, ctx=ctx)
