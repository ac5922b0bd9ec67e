"""Refunds: asked through tallybook (``request``, then the provider call through the outbox) or
seen first in a provider event (a refund made in Stripe's dashboard). Either way the refund is
posted when it succeeds, and reversed if it fails afterwards (the bank returned it)."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from tallybook.db import Tx
from tallybook.kit.errors import Conflict, InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.money import Money, check_amount_minor
from tallybook.payments import repository, topics
from tallybook.payments.context import PaymentsContext
from tallybook.payments.domain import refund_moves_forward
from tallybook.payments.errors import PaymentsCode
from tallybook.payments.models import Payment, Refund
from tallybook.payments.providers.base import PaymentState, RefundSnapshot, RefundState
from tallybook.payments.providers.stripe_objects import METADATA_REFUND_ID
from tallybook.payments.service import notify, postings
from tallybook.work import outbox

REASON_LENGTH_MAX: Final = 200
#: States in which a refund counts against what can still be refunded.
_COUNTED: Final = frozenset({RefundState.PENDING, RefundState.SUCCEEDED})


def get(tx: Tx, refund_id: str) -> Refund:
    refund = repository.refund(tx, refund_id)
    if refund is None:
        raise NotFound("refund", refund_id)
    return refund


def refundable_minor(tx: Tx, payment: Payment) -> int:
    taken = sum(
        r.amount_minor
        for r in repository.refunds_of_payment(tx, payment.id)
        if RefundState(r.status) in _COUNTED
    )
    return payment.amount_minor - taken


def request(
    tx: Tx,
    payment_id: str,
    *,
    amount_minor: int | None,
    reason: str | None,
    ctx: PaymentsContext,
) -> Refund:
    """Refund all or part of a succeeded payment (the provider call follows after commit)."""
    unlocked = repository.payment(tx, payment_id)
    if unlocked is None:
        raise NotFound("payment", payment_id)
    repository.collection(tx, unlocked.collection_id, lock=True)
    payment = repository.payment(tx, payment_id, lock=True)
    assert payment is not None
    if payment.status != PaymentState.SUCCEEDED:
        raise Conflict(
            PaymentsCode.PAYMENT_NOT_REFUNDABLE,
            f"payment {payment.id} is {payment.status}; only succeeded payments are refunded",
            param="payment",
        )
    if reason is not None and len(reason) > REASON_LENGTH_MAX:
        raise InvalidRequest(
            PaymentsCode.PAYMENT_REFERENCE_INVALID,
            f"reason must be at most {REASON_LENGTH_MAX} characters",
            param="reason",
        )
    available = refundable_minor(tx, payment)
    amount = available if amount_minor is None else check_amount_minor(amount_minor)
    if amount <= 0 and amount_minor is not None:
        raise InvalidRequest(
            "amount_invalid", "amount_minor must be positive", param="amount_minor"
        )
    if amount > available or amount <= 0:
        raise Conflict(
            PaymentsCode.REFUND_EXCEEDS_REFUNDABLE,
            f"{Money(amount, payment.currency)} exceeds what is refundable "
            f"({Money(available, payment.currency)})",
            param="amount_minor",
        )
    now = tx.now()
    refund = Refund(
        id=new_id("rfd"),
        payment_id=payment.id,
        invoice_id=payment.invoice_id,
        customer_id=payment.customer_id,
        provider=payment.provider,
        provider_refund_id=None,
        amount_minor=amount,
        currency=payment.currency,
        status=str(RefundState.PENDING),
        reason=reason,
        origin="api",
        created_at=now,
        updated_at=now,
    )
    tx.session.add(refund)
    tx.session.flush()
    outbox.enqueue(
        tx,
        topic=topics.REFUND,
        dedup_key=refund.id,
        payload={"refund_id": refund.id},
        ordering_key=f"payment:{payment.id}",
    )
    notify.refund_event(tx, refund, "refund.created")
    return refund


def refused(tx: Tx, refund_id: str, message: str) -> None:
    """The provider refused the refund outright: nothing moved."""
    refund = repository.refund(tx, refund_id, lock=True)
    if refund is None or refund.status != RefundState.PENDING:
        return
    refund.status = str(RefundState.FAILED)
    refund.failure_reason = message[:REASON_LENGTH_MAX]
    refund.updated_at = tx.now()
    notify.refund_event(tx, refund, "refund.failed")


def _payment_of(tx: Tx, provider: str, snapshot: RefundSnapshot) -> Payment | None:
    if snapshot.provider_payment_id:
        payment = repository.payment_by_provider_id(tx, provider, snapshot.provider_payment_id)
        if payment is not None:
            return payment
    if snapshot.charge_id:
        return repository.payment_by_charge_id(tx, provider, snapshot.charge_id)
    return None


def lock_payment(tx: Tx, payment: Payment) -> Payment:
    """Lock the payment (after its collection: the domain's lock order). Every change to a
    payment's refunds and disputes happens under it, so two events about one refund never
    both create it."""
    repository.collection(tx, payment.collection_id, lock=True)
    locked = repository.payment(tx, payment.id, lock=True)
    assert locked is not None
    return locked


def apply_refund_state(
    tx: Tx,
    snapshot: RefundSnapshot,
    ctx: PaymentsContext,
    *,
    refund_id: str | None = None,
    provider: str = "stripe",
    observed_at: datetime | None = None,
) -> Refund | None:
    """Apply a provider refund state (ours or made elsewhere). None when the refund is of a
    payment tallybook doesn't know (not ours)."""
    ours = refund_id or (snapshot.metadata or {}).get(METADATA_REFUND_ID)
    requested = repository.refund(tx, ours) if ours else None
    known = requested or repository.refund_by_provider_id(tx, provider, snapshot.provider_refund_id)
    payment = (
        repository.payment(tx, known.payment_id)
        if known is not None
        else _payment_of(tx, provider, snapshot)
    )
    if payment is None:
        return None
    payment = lock_payment(tx, payment)
    refund = repository.refund_by_provider_id(tx, provider, snapshot.provider_refund_id, lock=True)
    if refund is None and requested is not None:
        refund = repository.refund(tx, requested.id, lock=True)
    if refund is None:
        now = tx.now()
        refund = Refund(
            id=new_id("rfd"),
            payment_id=payment.id,
            invoice_id=payment.invoice_id,
            customer_id=payment.customer_id,
            provider=provider,
            provider_refund_id=snapshot.provider_refund_id,
            amount_minor=snapshot.amount_minor,
            currency=snapshot.currency,
            status=str(RefundState.PENDING),
            origin="provider",
            created_at=now,
            updated_at=now,
        )
        tx.session.add(refund)
        tx.session.flush()
        notify.refund_event(tx, refund, "refund.created")
    refund.provider_refund_id = refund.provider_refund_id or snapshot.provider_refund_id
    current = RefundState(refund.status)
    if not refund_moves_forward(current, snapshot.state):
        return refund
    now = tx.now()
    refund.status = str(snapshot.state)
    refund.failure_reason = snapshot.failure_reason
    refund.provider_state_at = observed_at or refund.provider_state_at
    refund.updated_at = now
    if snapshot.state is RefundState.SUCCEEDED:
        refund.succeeded_at = now
        postings.post_refund(
            tx,
            refund_id=refund.id,
            payment_id=payment.id,
            invoice_id=payment.invoice_id,
            customer_id=payment.customer_id,
            provider=payment.provider,
            amount=Money(refund.amount_minor, refund.currency),
        )
        payment.amount_refunded_minor += refund.amount_minor
        notify.refund_event(tx, refund, "payment.refunded")
    elif current is RefundState.SUCCEEDED:
        # Failed after it succeeded: the money is back with the provider.
        postings.reverse_refund(tx, refund.id)
        payment.amount_refunded_minor -= refund.amount_minor
        notify.refund_event(tx, refund, "refund.failed")
    else:
        notify.refund_event(tx, refund, "refund.failed")
    payment.updated_at = now
    return refund
