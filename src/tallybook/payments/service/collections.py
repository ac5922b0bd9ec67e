"""Collections: how each finalized invoice gets paid.

``start`` (the ``payments.collect`` outbox handler, after invoicing finalized the invoice)
creates the collection and its first attempt. Whatever reports a payment's state (the answer to
our own confirmation, a webhook, the sync job) goes through :func:`apply_payment_state`, which
moves a payment only forward (:func:`~tallybook.payments.domain.moves_forward`), so reports may
come twice and in any order. The first time a payment succeeds it is posted to the ledger,
recorded on the invoice and the subscription recovers; the first time the current attempt fails,
dunning schedules what comes next.
"""

from __future__ import annotations

from datetime import datetime

from tallybook.db import Tx
from tallybook.kit.errors import Conflict, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.money import Money
from tallybook.payments import repository
from tallybook.payments.context import PaymentsContext
from tallybook.payments.domain import (
    CLOSED_STATUSES,
    CollectionStatus,
    Trigger,
    moves_forward,
)
from tallybook.payments.errors import PaymentsCode
from tallybook.payments.metrics import PAYMENT_STATES
from tallybook.payments.models import Collection, Payment
from tallybook.payments.providers.base import PaymentSnapshot, PaymentState, ProviderName
from tallybook.payments.service import accounts, attempts, dunning, invoices, notify, postings


def get(tx: Tx, collection_or_invoice_id: str, *, lock: bool = False) -> Collection:
    """By collection id (``col_…``) or by invoice id."""
    found = repository.collection(tx, collection_or_invoice_id, lock=lock)
    if found is None:
        found = repository.collection_for_invoice(tx, collection_or_invoice_id, lock=lock)
    if found is None:
        raise NotFound("collection", collection_or_invoice_id)
    return found


def start(tx: Tx, invoice_id: str, ctx: PaymentsContext) -> Collection:
    """Open the collection of a finalized invoice, with its first attempt (idempotent by
    invoice: a second call returns the first collection)."""
    existing = repository.collection_for_invoice(tx, invoice_id, lock=True)
    if existing is not None:
        return existing
    invoice = invoices.get_invoice(tx, invoice_id)
    if invoice.status == invoices.DRAFT:
        raise Conflict(
            PaymentsCode.INVOICE_NOT_COLLECTIBLE,
            f"invoice {invoice_id} is a draft; only finalized invoices are collected",
            param="invoice",
        )
    account = accounts.ensure(tx, invoice.customer_id, ctx.providers)
    now = tx.now()
    collection = Collection(
        id=new_id("col"),
        invoice_id=invoice.id,
        invoice_number=invoice.number,
        customer_id=invoice.customer_id,
        subscription_id=invoice.subscription_id,
        provider=account.provider,
        currency=invoice.currency,
        amount_due_minor=invoice.amount_due_minor,
        amount_paid_minor=0,
        status=str(
            CollectionStatus.AWAITING_PAYMENT
            if account.provider == ProviderName.MANUAL
            else CollectionStatus.COLLECTING
        ),
        attempt_count=0,
        retries_done=0,
        last_failed_attempt=0,
        created_at=now,
        updated_at=now,
    )
    tx.session.add(collection)
    tx.session.flush()
    if dunning.close_if_invoice_closed(tx, collection, invoice):
        return collection
    attempts.create(tx, collection, invoice, trigger=Trigger.INITIAL, ctx=ctx)
    return collection


def apply_payment_state(
    tx: Tx,
    payment_id: str,
    snapshot: PaymentSnapshot,
    ctx: PaymentsContext,
    *,
    observed_at: datetime | None = None,
) -> bool:
    """Apply what the provider reports about a payment. Returns whether anything changed.

    Locks the collection, then the payment (the one lock order of this domain)."""
    unlocked = repository.payment(tx, payment_id)
    if unlocked is None:
        raise NotFound("payment", payment_id)
    collection = repository.collection(tx, unlocked.collection_id, lock=True)
    payment = repository.payment(tx, payment_id, lock=True)
    assert collection is not None and payment is not None
    current = PaymentState(payment.status)
    if not moves_forward(current, payment.provider_state_at, snapshot.state, observed_at):
        # Stale or repeated: nothing moves, but details only ever get more complete.
        _fill_details(payment, snapshot)
        if snapshot.state is PaymentState.SUCCEEDED and current is PaymentState.SUCCEEDED:
            record_fee(tx, payment, snapshot.fee_minor)
        return False
    now = tx.now()
    payment.status = str(snapshot.state)
    # Counted once the change is committed (a rolled-back change never happened).
    tx.after_commit(PAYMENT_STATES.labels(payment.provider, payment.status).inc)
    payment.provider_status = snapshot.provider_status
    if payment.provider_payment_id is None and snapshot.provider_payment_id:
        payment.provider_payment_id = snapshot.provider_payment_id
    if snapshot.state in (PaymentState.FAILED, PaymentState.REQUIRES_ACTION):
        payment.failure_code = snapshot.failure_code or (
            "authentication_required" if snapshot.state is PaymentState.REQUIRES_ACTION else None
        )
        payment.decline_code = snapshot.decline_code
        payment.failure_message = snapshot.failure_message or (
            "the customer must authenticate this payment"
            if snapshot.state is PaymentState.REQUIRES_ACTION
            else None
        )
    _fill_details(payment, snapshot)
    if observed_at is not None:
        payment.provider_state_at = max(observed_at, payment.provider_state_at or observed_at)
    payment.updated_at = now
    if snapshot.state is PaymentState.SUCCEEDED:
        payment.succeeded_at = now
        _succeeded(tx, collection, payment, snapshot, ctx)
    elif snapshot.state in (
        PaymentState.FAILED,
        PaymentState.REQUIRES_ACTION,
        PaymentState.CANCELED,
    ):
        dunning.attempt_failed(tx, collection, payment, ctx)
    return True


def _fill_details(payment: Payment, snapshot: PaymentSnapshot) -> None:
    """Details that only ever get more complete (the charge, the fee), whatever the order."""
    payment.provider_charge_id = payment.provider_charge_id or snapshot.charge_id
    payment.payment_method_id = payment.payment_method_id or snapshot.payment_method_id


def _succeeded(
    tx: Tx,
    collection: Collection,
    payment: Payment,
    snapshot: PaymentSnapshot,
    ctx: PaymentsContext,
) -> None:
    """Money arrived: post it, record it on the invoice, end dunning. Runs once per payment
    (the state moves into ``succeeded`` once)."""
    invoice = invoices.lock_invoice(tx, payment.invoice_id)
    amount = Money(snapshot.amount_minor, snapshot.currency)
    # What the invoice can't take (an overpayment, a payment that raced a void) is the
    # customer's, on their balance.
    remaining = invoice.payable_minor(amount.currency)
    payment.amount_minor = amount.amount_minor
    payment.currency = amount.currency
    applied = postings.post_payment(
        tx,
        postings.PaymentPosting(
            payment_id=payment.id,
            invoice_id=payment.invoice_id,
            customer_id=payment.customer_id,
            provider=payment.provider,
            amount=amount,
            amount_remaining_minor=remaining,
        ),
    )
    record_fee(tx, payment, snapshot.fee_minor)
    # The cause before its effect on the timeline: payment.succeeded, then invoice.paid.
    notify.payment_succeeded(tx, payment, applied_minor=applied)
    if applied:
        invoices.record_payment(
            tx,
            payment.invoice_id,
            payment_id=payment.id,
            amount=Money(applied, amount.currency),
            at=tx.now(),
        )
    collection.amount_paid_minor += applied
    collection.updated_at = tx.now()
    if remaining - applied > 0:
        return
    if collection.status == CollectionStatus.UNCOLLECTIBLE and applied:
        # Paid after the write-off (invoicing reversed it): the collection ends paid after all.
        collection.status = CollectionStatus.PAID
        notify.collection_closed(tx, collection)
    elif CollectionStatus(collection.status) not in CLOSED_STATUSES:
        dunning.close(tx, collection, CollectionStatus.PAID)
    dunning.subscription_recovered(tx, collection)


def record_fee(tx: Tx, payment: Payment, fee_minor: int | None) -> None:
    """Book the provider's fee once it is known (with the success, or from a later report)."""
    if fee_minor is None or payment.fee_minor is not None:
        return
    if payment.status != PaymentState.SUCCEEDED or payment.provider != ProviderName.STRIPE:
        return
    payment.fee_minor = fee_minor
    postings.post_fee(
        tx,
        f"payment:{payment.id}:fee",
        Money(fee_minor, payment.currency),
        metadata={"payment_id": payment.id, "invoice_id": payment.invoice_id},
    )


def record_external_payment(
    tx: Tx,
    collection: Collection,
    *,
    provider: str,
    snapshot: PaymentSnapshot,
    ctx: PaymentsContext,
    observed_at: datetime | None,
) -> Payment:
    """A provider payment for one of our invoices that we did not start (paid through a
    hosted page, a Stripe invoice, the dashboard): recorded as an ``external`` payment."""
    now = tx.now()
    payment = Payment(
        id=new_id("pay"),
        collection_id=collection.id,
        invoice_id=collection.invoice_id,
        customer_id=collection.customer_id,
        provider=provider,
        attempt_number=None,
        trigger=str(Trigger.EXTERNAL),
        amount_minor=snapshot.amount_minor,
        currency=snapshot.currency,
        status=str(PaymentState.PENDING),
        provider_payment_id=snapshot.provider_payment_id,
        amount_refunded_minor=0,
        created_at=now,
        updated_at=now,
    )
    tx.session.add(payment)
    tx.session.flush()
    apply_payment_state(tx, payment.id, snapshot, ctx, observed_at=observed_at)
    return payment
