"""Payouts: Stripe moving our balance to the bank. ``paid`` posts ``stripe_clearing`` →
``bank``; a payout that fails after it was paid (the bank returned it) is reversed. Statuses
only move forward (pending → in_transit → paid → failed), so events may come in any order."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from tallybook.db import Tx
from tallybook.kit.ids import new_id
from tallybook.kit.money import Money
from tallybook.payments import repository
from tallybook.payments.domain import PAYOUT_RANK
from tallybook.payments.models import Payout
from tallybook.payments.providers import stripe_objects as so
from tallybook.payments.service import notify, postings


def apply_payout(
    tx: Tx, obj: Mapping[str, Any], *, provider: str = "stripe", observed_at: datetime | None
) -> Payout:
    provider_payout_id = so.object_id(obj)
    if provider_payout_id is None:
        raise ValueError("a payout without an id")
    status = str(so.field(obj, "status"))
    if status not in PAYOUT_RANK:
        raise ValueError(f"unknown payout status {status!r}")
    now = tx.now()
    # Insert-or-keep, then lock: two events of one payout never both create it.
    insert = postgresql.insert if tx.is_postgres else sqlite.insert
    tx.session.execute(
        insert(Payout)
        .values(
            id=new_id("pyo"),
            provider=provider,
            provider_payout_id=provider_payout_id,
            amount_minor=so.amount_of(obj),
            currency=so.currency_of(obj),
            status="pending",
            arrival_at=so.from_unix(so.field(obj, "arrival_date")),
            provider_state_at=None,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["provider", "provider_payout_id"])
    )
    payout = repository.payout_by_provider_id(tx, provider, provider_payout_id, lock=True)
    assert payout is not None
    current = payout.status
    forward = PAYOUT_RANK[status] > PAYOUT_RANK[current] or (
        PAYOUT_RANK[status] == PAYOUT_RANK[current]
        and status != current
        and (
            observed_at is None
            or payout.provider_state_at is None
            or observed_at >= payout.provider_state_at
        )
    )
    if not forward:
        return payout
    payout.status = status
    payout.failure_code = so.field(obj, "failure_code")
    payout.arrival_at = so.from_unix(so.field(obj, "arrival_date")) or payout.arrival_at
    payout.provider_state_at = observed_at or payout.provider_state_at
    payout.updated_at = now
    amount = Money(payout.amount_minor, payout.currency)
    if status == "paid":
        payout.paid_at = now
        postings.post_payout(tx, payout.id, amount, provider=provider)
        notify.payout_event(tx, payout, "payout.paid")
    elif status in ("failed", "canceled"):
        if current == "paid":
            postings.reverse_payout(tx, payout.id)
        notify.payout_event(tx, payout, f"payout.{status}")
    return payout
