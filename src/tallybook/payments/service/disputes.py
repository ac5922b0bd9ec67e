"""Disputes (chargebacks), from the provider's dispute object in any order.

Money: when the funds are withdrawn (any non-inquiry status) a hold moves the disputed amount
from ``stripe_clearing`` towards ``dispute_losses``; losing posts the hold, winning voids it.
Stripe's dispute fees (and their return) are booked from the dispute's balance transactions,
once each. A closed dispute never reopens: an older event can't undo the outcome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tallybook.db import Tx
from tallybook.kit.ids import new_id
from tallybook.kit.money import Money
from tallybook.payments import repository
from tallybook.payments.domain import dispute_outcome, dispute_rank
from tallybook.payments.models import Dispute, Payment
from tallybook.payments.providers import stripe_objects as so
from tallybook.payments.service import notify, postings, refunds


def _payment_of(tx: Tx, provider: str, obj: Mapping[str, Any]) -> Payment | None:
    intent_id = so.object_id(so.field(obj, "payment_intent"))
    if intent_id:
        payment = repository.payment_by_provider_id(tx, provider, intent_id)
        if payment is not None:
            return payment
    charge_id = so.object_id(so.field(obj, "charge"))
    return repository.payment_by_charge_id(tx, provider, charge_id) if charge_id else None


def _withdrawn(status: str) -> bool:
    """Inquiries (``warning_*``) withdraw nothing; a real dispute withdraws the amount."""
    return not status.startswith("warning_")


def apply_dispute(
    tx: Tx, obj: Mapping[str, Any], *, provider: str = "stripe", observed_at: datetime | None
) -> Dispute | None:
    """Apply a dispute object. None when the disputed charge is not a tallybook payment."""
    provider_dispute_id = so.object_id(obj)
    if provider_dispute_id is None:
        raise ValueError("a dispute without an id")
    status = str(so.field(obj, "status"))
    known = repository.dispute_by_provider_id(tx, provider, provider_dispute_id)
    payment = (
        repository.payment(tx, known.payment_id)
        if known is not None and known.payment_id
        else _payment_of(tx, provider, obj)
    )
    if payment is None:
        return None
    # Under the payment's lock, so two events of one dispute never both create it.
    payment = refunds.lock_payment(tx, payment)
    dispute = repository.dispute_by_provider_id(tx, provider, provider_dispute_id, lock=True)
    now = tx.now()
    if dispute is None:
        dispute = Dispute(
            id=new_id("dsp"),
            payment_id=payment.id,
            invoice_id=payment.invoice_id,
            customer_id=payment.customer_id,
            provider=provider,
            provider_dispute_id=provider_dispute_id,
            provider_charge_id=so.object_id(so.field(obj, "charge")),
            amount_minor=so.amount_of(obj),
            currency=so.currency_of(obj),
            status=status,
            reason=so.field(obj, "reason"),
            funds_withdrawn=False,
            outcome=None,
            provider_state_at=observed_at,
            created_at=now,
            updated_at=now,
        )
        tx.session.add(dispute)
        tx.session.flush()
        notify.dispute_event(tx, dispute, "payment.disputed")
    elif dispute.outcome is not None or (
        dispute_rank(status) < dispute_rank(dispute.status)
        or (
            dispute_rank(status) == dispute_rank(dispute.status)
            and observed_at is not None
            and dispute.provider_state_at is not None
            and observed_at < dispute.provider_state_at
        )
    ):
        _book_fees(tx, dispute, obj)
        return dispute  # older news, or the dispute is over
    dispute.status = status
    dispute.reason = so.field(obj, "reason") or dispute.reason
    dispute.provider_state_at = observed_at or dispute.provider_state_at
    dispute.updated_at = now
    amount = Money(dispute.amount_minor, dispute.currency)
    metadata = {"dispute_id": dispute.id, "payment_id": dispute.payment_id or ""}
    if _withdrawn(status) and not dispute.funds_withdrawn:
        postings.open_dispute_hold(tx, dispute.id, amount, metadata=metadata)
        dispute.funds_withdrawn = True
    outcome = dispute_outcome(status)
    if outcome is not None:
        dispute.outcome = outcome
        dispute.closed_at = now
        if dispute.funds_withdrawn:
            postings.close_dispute_hold(tx, dispute.id, lost=outcome == "lost")
        notify.dispute_event(tx, dispute, "payment.dispute_closed")
    _book_fees(tx, dispute, obj)
    return dispute


def _book_fees(tx: Tx, dispute: Dispute, obj: Mapping[str, Any]) -> None:
    """Each balance transaction of the dispute books its fee once (ids derive from it)."""
    for transaction in so.field(obj, "balance_transactions") or []:
        fee = so.field(transaction, "fee")
        transaction_id = so.object_id(transaction)
        if not isinstance(fee, int) or fee == 0 or transaction_id is None:
            continue
        digest = hashlib.sha256(transaction_id.encode()).hexdigest()[:12]
        transfer_id = f"dispute:{dispute.id}:fee:{digest}"
        if postings.transfer_exists(tx, transfer_id):
            continue
        currency = so.field(transaction, "currency")
        postings.post_fee(
            tx,
            transfer_id,
            Money(fee, str(currency).upper() if currency else dispute.currency),
            metadata={"dispute_id": dispute.id, "balance_transaction": transaction_id},
        )
