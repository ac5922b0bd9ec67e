"""Retrying at once when a customer in dunning fixes their payment method (a new card, a new
default), as Stripe does: waiting for the next scheduled day would only delay the recovery."""

from __future__ import annotations

from sqlalchemy import select

from tallybook.db import Tx
from tallybook.payments.context import PaymentsContext
from tallybook.payments.domain import DELINQUENT_STATUSES
from tallybook.payments.models import Collection, Payment
from tallybook.payments.service import attempts, dunning


def retry_customer_collections(tx: Tx, customer_id: str, ctx: PaymentsContext) -> list[Payment]:
    ids = list(
        tx.session.scalars(
            select(Collection.id)
            .where(
                Collection.customer_id == customer_id,
                Collection.status.in_([str(s) for s in DELINQUENT_STATUSES]),
            )
            .order_by(Collection.id)
        )
    )
    started: list[Payment] = []
    for collection_id in ids:
        from tallybook.payments import repository

        collection = repository.collection(tx, collection_id, lock=True)
        if collection is None or collection.status not in DELINQUENT_STATUSES:
            continue
        if attempts.in_flight(tx, collection) is not None:
            continue
        started.append(dunning.retry_now(tx, collection, ctx))
    return started
