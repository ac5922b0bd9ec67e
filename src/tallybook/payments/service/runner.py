"""The steps that call a provider, each between two short transactions.

This is the only module that talks to providers for collections and refunds. It takes a
``Database`` (like a job) and commits after every step, so what the provider did is recorded
before the next step starts, and a crash or timeout anywhere leaves a state the next run (the
outbox redelivers, with backoff) continues from with the same idempotency keys:

1. read the plan (the attempt, the invoice, the customer's provider account);
2. create the provider customer if there is none yet (key ``tb:customer:<cus>:1``);
3. cancel the previous attempts' PaymentIntents, so an abandoned attempt can never succeed
   beside a new one (key ``tb:cancel:<invoice>:<attempt>``);
4. create this attempt's PaymentIntent (``tb:payment:<invoice>:<attempt>``) and store its id;
5. confirm it by id (``tb:confirm:<invoice>:<attempt>``) and apply the answer.

A provider that is unreachable raises :class:`ProviderUnavailable` out of here (the outbox
retries). A provider that refuses fails the attempt (dunning goes on) and raises
:class:`~tallybook.work.outbox.PermanentDeliveryError` so the message is parked for a human.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from tallybook.db import Database, Tx
from tallybook.kit.money import Money
from tallybook.payments import repository
from tallybook.payments.context import PaymentsContext
from tallybook.payments.domain import CLOSED_STATUSES, UNRESOLVED_STATES, CollectionStatus
from tallybook.payments.providers.base import (
    CollectRequest,
    PaymentMethodMissing,
    PaymentSnapshot,
    PaymentState,
    ProviderName,
    ProviderRejected,
    RefundRequest,
    idempotency_key,
)
from tallybook.payments.service import accounts, collections, dunning, invoices, refunds
from tallybook.work.outbox import PermanentDeliveryError

log = logging.getLogger(__name__)

ACTOR = "system:payments"


@dataclass(frozen=True, slots=True)
class _Previous:
    payment_id: str
    attempt_number: int
    provider_payment_id: str


@dataclass(frozen=True, slots=True)
class _Plan:
    request: CollectRequest
    provider: str
    provider_payment_id: str | None
    previous: tuple[_Previous, ...]


def _fail_attempt(
    tx: Tx, payment_id: str, ctx: PaymentsContext, *, code: str, message: str
) -> None:
    """An attempt that failed before the provider had a payment for it."""
    payment = repository.payment(tx, payment_id)
    assert payment is not None
    snapshot = PaymentSnapshot(
        provider_payment_id=payment.provider_payment_id or "",
        state=PaymentState.FAILED,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        provider_status="not_created",
        failure_code=code,
        failure_message=message,
    )
    collections.apply_payment_state(tx, payment_id, snapshot, ctx)


def _cancel_unstarted(tx: Tx, payment_id: str, ctx: PaymentsContext, reason: str) -> None:
    payment = repository.payment(tx, payment_id)
    assert payment is not None
    collections.apply_payment_state(
        tx,
        payment_id,
        PaymentSnapshot(
            provider_payment_id=payment.provider_payment_id or "",
            state=PaymentState.CANCELED,
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            provider_status="canceled",
            failure_code="collection_closed",
            failure_message=reason,
        ),
        ctx,
    )


def _plan(tx: Tx, payment_id: str, ctx: PaymentsContext) -> _Plan | None:
    payment = repository.payment(tx, payment_id)
    if payment is None or payment.attempt_number is None:
        return None
    if payment.provider == ProviderName.MANUAL:
        return None
    if PaymentState(payment.status) not in UNRESOLVED_STATES:
        return None  # done already (a redelivery, or a webhook got there first)
    collection = repository.collection(tx, payment.collection_id, lock=True)
    assert collection is not None
    invoice = invoices.get_invoice(tx, payment.invoice_id)
    closed = CollectionStatus(
        collection.status
    ) in CLOSED_STATUSES or dunning.close_if_invoice_closed(tx, collection, invoice)
    if (
        closed or payment.attempt_number != collection.attempt_count
    ) and payment.provider_payment_id is None:
        _cancel_unstarted(tx, payment.id, ctx, f"the invoice's collection is {collection.status}")
        return None
    if (
        payment.provider_payment_id is None
        and invoice.amount_remaining_minor != payment.amount_minor
    ):
        # A credit note since the attempt was planned: charge what is owed now.
        payment.amount_minor = invoice.amount_remaining_minor
    account = accounts.ensure(tx, payment.customer_id, ctx.providers)
    previous = tuple(
        _Previous(p.id, p.attempt_number, p.provider_payment_id)
        for p in repository.payments_of_collection(tx, collection.id)
        if p.id != payment.id
        and p.attempt_number is not None
        and p.provider_payment_id is not None
        and p.provider == payment.provider
        and PaymentState(p.status) not in (PaymentState.CANCELED, PaymentState.SUCCEEDED)
    )
    request = CollectRequest(
        payment_id=payment.id,
        invoice_id=payment.invoice_id,
        invoice_number=invoice.number,
        customer_id=payment.customer_id,
        provider_customer_id=account.provider_customer_id
        if account.provider == payment.provider
        else None,
        amount=Money(payment.amount_minor, payment.currency),
        attempt_number=payment.attempt_number,
        description=f"Invoice {invoice.number or invoice.id}",
    )
    return _Plan(request, payment.provider, payment.provider_payment_id, previous)


def _still_wanted(tx: Tx, payment_id: str, ctx: PaymentsContext) -> bool:
    """Checked just before money moves: the invoice may have been paid another way (a bank
    transfer marked paid, an earlier attempt) or voided since the plan was made."""
    payment = repository.payment(tx, payment_id)
    assert payment is not None
    collection = repository.collection(tx, payment.collection_id, lock=True)
    assert collection is not None
    if CollectionStatus(collection.status) in CLOSED_STATUSES:
        return False
    if payment.attempt_number != collection.attempt_count:
        return False
    invoice = invoices.get_invoice(tx, payment.invoice_id)
    return not dunning.close_if_invoice_closed(tx, collection, invoice)


def run_attempt(db: Database, payment_id: str, ctx: PaymentsContext) -> str:
    """Carry one attempt as far as it goes. Returns a short outcome for logs and tests."""
    with db.transaction(actor=ACTOR) as tx:
        plan = _plan(tx, payment_id, ctx)
    if plan is None:
        return "nothing to do"
    provider = ctx.providers.get(plan.provider)
    request = plan.request
    try:
        if request.provider_customer_id is None:
            with db.read(actor=ACTOR) as tx:
                details = accounts.details(tx, request.customer_id)
            customer = provider.ensure_customer(details)
            with db.transaction(actor=ACTOR) as tx:
                account = accounts.record_provider_customer(
                    tx, request.customer_id, customer, observed_at=None
                )
                request = replace(request, provider_customer_id=account.provider_customer_id)
        for previous in plan.previous:
            snapshot = provider.cancel_payment(
                previous.provider_payment_id,
                key=idempotency_key("cancel", request.invoice_id, previous.attempt_number),
            )
            with db.transaction(actor=ACTOR) as tx:
                collections.apply_payment_state(tx, previous.payment_id, snapshot, ctx)
            if snapshot.state is PaymentState.SUCCEEDED:
                # The earlier attempt went through after all: this one must not charge.
                return run_attempt(db, payment_id, ctx)
        provider_payment_id = plan.provider_payment_id
        if provider_payment_id is None:
            started = provider.start_payment(request)
            with db.transaction(actor=ACTOR) as tx:
                payment = repository.payment(tx, payment_id, lock=True)
                assert payment is not None
                if payment.provider_payment_id is None:
                    # Stored before confirming: from here on every retry confirms this one.
                    payment.provider_payment_id = started.provider_payment_id
                    payment.provider_status = started.provider_status
                    payment.updated_at = tx.now()
                provider_payment_id = payment.provider_payment_id
        assert provider_payment_id is not None
        with db.transaction(actor=ACTOR) as tx:
            if not _still_wanted(tx, payment_id, ctx):
                snapshot = provider.cancel_payment(
                    provider_payment_id,
                    key=idempotency_key("cancel", request.invoice_id, request.attempt_number),
                )
                collections.apply_payment_state(tx, payment_id, snapshot, ctx)
                return "canceled: the invoice no longer needs it"
        confirmed = provider.confirm_payment(request, provider_payment_id)
    except ProviderRejected as error:
        log.error(
            "payment provider refused an attempt",
            extra={"payment_id": payment_id, "code": error.code, "error": str(error)},
        )
        with db.transaction(actor=ACTOR) as tx:
            payment = repository.payment(tx, payment_id)
            assert payment is not None
            if PaymentState(payment.status) in UNRESOLVED_STATES:
                code = error.code or "provider_rejected"
                _fail_attempt(tx, payment_id, ctx, code=code, message=str(error))
        if isinstance(error, PaymentMethodMissing):
            return f"failed: {error.code}"
        raise PermanentDeliveryError(str(error)) from error
    with db.transaction(actor=ACTOR) as tx:
        collections.apply_payment_state(tx, payment_id, confirmed, ctx)
    return str(confirmed.state)


def sync_payment(db: Database, payment_id: str, ctx: PaymentsContext) -> str:
    """Re-read an unresolved payment from its provider (the safety net for webhooks that never
    came, and for attempts whose confirmation was lost)."""
    with db.read(actor=ACTOR) as tx:
        payment = repository.payment(tx, payment_id)
        if payment is None or PaymentState(payment.status) not in UNRESOLVED_STATES:
            return "resolved"
        provider_name, provider_payment_id = payment.provider, payment.provider_payment_id
    if provider_name == ProviderName.MANUAL:
        return "manual"
    if provider_payment_id is None:
        # Never reached the provider: run the attempt (its message may be dead or lost).
        return run_attempt(db, payment_id, ctx)
    snapshot = ctx.providers.get(provider_name).fetch_payment(provider_payment_id)
    if snapshot.state is PaymentState.PENDING:
        # Created but never confirmed (the confirmation was lost): finish the attempt.
        return run_attempt(db, payment_id, ctx)
    with db.transaction(actor=ACTOR) as tx:
        collections.apply_payment_state(tx, payment_id, snapshot, ctx)
    return str(snapshot.state)


def run_refund(db: Database, refund_id: str, ctx: PaymentsContext) -> str:
    """Ask the provider for a refund requested through tallybook (key ``tb:refund:<rfd>:1``)."""
    with db.read(actor=ACTOR) as tx:
        refund = repository.refund(tx, refund_id)
        if refund is None or refund.provider_refund_id is not None:
            return "nothing to do"
        payment = repository.payment(tx, refund.payment_id)
        assert payment is not None and payment.provider_payment_id is not None
        request = RefundRequest(
            refund_id=refund.id,
            provider_payment_id=payment.provider_payment_id,
            amount=Money(refund.amount_minor, refund.currency),
            reason=refund.reason,
        )
        provider_name = refund.provider
    try:
        snapshot = ctx.providers.get(provider_name).refund(request)
    except ProviderRejected as error:
        with db.transaction(actor=ACTOR) as tx:
            refunds.refused(tx, refund_id, str(error))
        raise PermanentDeliveryError(str(error)) from error
    with db.transaction(actor=ACTOR) as tx:
        refunds.apply_refund_state(tx, snapshot, ctx, refund_id=refund_id)
    return str(snapshot.state)


def sync_customer(db: Database, customer_id: str, ctx: PaymentsContext) -> str:
    """Re-read whether a customer has a payment method (after payment method events)."""
    with db.read(actor=ACTOR) as tx:
        account = accounts.find(tx, customer_id)
        if account is None or account.provider_customer_id is None:
            return "no provider customer"
        provider_name, provider_customer_id = account.provider, account.provider_customer_id
    snapshot = ctx.providers.get(provider_name).fetch_customer(provider_customer_id)
    with db.transaction(actor=ACTOR) as tx:
        now = tx.now()
        became_usable = False
        account = accounts.find(tx, customer_id)
        if account is not None:
            became_usable = accounts.apply_customer_state(tx, account, snapshot, observed_at=now)
        if became_usable and ctx.settings.retry_on_new_payment_method:
            from tallybook.payments.service import recovery

            recovery.retry_customer_collections(tx, customer_id, ctx)
    return "present" if snapshot.payment_method_present else "absent"
