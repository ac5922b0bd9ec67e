"""All SQL of the payments domain.

Rows that change state are read ``FOR UPDATE`` on PostgreSQL before they change (SQLite
serializes writers with ``BEGIN IMMEDIATE``), always in one order: collection, then payment,
then refund or dispute. So the worker recording a confirmation and the worker applying a webhook
for the same payment meet on the same lock and the second sees what the first did.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.dialects import postgresql, sqlite

from tallybook.db import Tx
from tallybook.invoicing.models import Invoice
from tallybook.kit.pagination import PageRequest
from tallybook.payments.models import (
    Collection,
    Dispute,
    Payment,
    PaymentAccount,
    Payout,
    Refund,
    WebhookEvent,
)


def _locked(tx: Tx, query: Select[Any]) -> Any:
    """The row, locked for the transaction. ``populate_existing``: a row read earlier in the
    same session must be reloaded once locked, or its stale values would be written back
    (a lost update under concurrency)."""
    if tx.is_postgres:
        query = query.with_for_update().execution_options(populate_existing=True)
    return tx.session.scalar(query)


# Payment accounts -----------------------------------------------------------------------------


def account_for_customer(tx: Tx, customer_id: str, *, lock: bool = False) -> PaymentAccount | None:
    query = select(PaymentAccount).where(PaymentAccount.customer_id == customer_id)
    return _locked(tx, query) if lock else tx.session.scalar(query)


def account_by_provider_id(
    tx: Tx, provider: str, provider_customer_id: str, *, lock: bool = False
) -> PaymentAccount | None:
    query = select(PaymentAccount).where(
        PaymentAccount.provider == provider,
        PaymentAccount.provider_customer_id == provider_customer_id,
    )
    return _locked(tx, query) if lock else tx.session.scalar(query)


# Collections ----------------------------------------------------------------------------------


def collection_for_invoice(tx: Tx, invoice_id: str, *, lock: bool = False) -> Collection | None:
    query = select(Collection).where(Collection.invoice_id == invoice_id)
    return _locked(tx, query) if lock else tx.session.scalar(query)


def collection(tx: Tx, collection_id: str, *, lock: bool = False) -> Collection | None:
    query = select(Collection).where(Collection.id == collection_id)
    return _locked(tx, query) if lock else tx.session.scalar(query)


def due_collection_ids(tx: Tx, *, now: datetime, statuses: Sequence[str], limit: int) -> list[str]:
    query = (
        select(Collection.id)
        .where(
            Collection.status.in_(list(statuses)),
            Collection.next_attempt_at.is_not(None),
            Collection.next_attempt_at <= now,
        )
        .order_by(Collection.next_attempt_at, Collection.id)
        .limit(limit)
    )
    return list(tx.session.scalars(query))


def delinquent_collections_of_subscription(
    tx: Tx, subscription_id: str, statuses: Sequence[str], *, except_id: str
) -> int:
    return int(
        tx.session.scalar(
            select(func.count())
            .select_from(Collection)
            .where(
                Collection.subscription_id == subscription_id,
                Collection.status.in_(list(statuses)),
                Collection.id != except_id,
            )
        )
        or 0
    )


def collections_page(
    tx: Tx,
    request: PageRequest,
    *,
    customer_id: str | None = None,
    status: str | None = None,
) -> list[Collection]:
    query = select(Collection)
    if customer_id is not None:
        query = query.where(Collection.customer_id == customer_id)
    if status is not None:
        query = query.where(Collection.status == status)
    return _page(tx, query, Collection.id, request)


def open_collection_ids(
    tx: Tx, statuses: Sequence[str], *, after_id: str | None, limit: int
) -> list[str]:
    query = select(Collection.id).where(Collection.status.in_(list(statuses)))
    if after_id is not None:
        query = query.where(Collection.id > after_id)
    return list(tx.session.scalars(query.order_by(Collection.id).limit(limit)))


# Payments -------------------------------------------------------------------------------------


def payment(tx: Tx, payment_id: str, *, lock: bool = False) -> Payment | None:
    query = select(Payment).where(Payment.id == payment_id)
    return _locked(tx, query) if lock else tx.session.scalar(query)


def payment_by_provider_id(
    tx: Tx, provider: str, provider_payment_id: str, *, lock: bool = False
) -> Payment | None:
    query = select(Payment).where(
        Payment.provider == provider, Payment.provider_payment_id == provider_payment_id
    )
    return _locked(tx, query) if lock else tx.session.scalar(query)


def payment_by_charge_id(tx: Tx, provider: str, charge_id: str) -> Payment | None:
    return tx.session.scalar(
        select(Payment).where(Payment.provider == provider, Payment.provider_charge_id == charge_id)
    )


def payment_for_attempt(tx: Tx, invoice_id: str, attempt_number: int) -> Payment | None:
    return tx.session.scalar(
        select(Payment).where(
            Payment.invoice_id == invoice_id, Payment.attempt_number == attempt_number
        )
    )


def payments_of_collection(tx: Tx, collection_id: str) -> list[Payment]:
    return list(
        tx.session.scalars(
            select(Payment).where(Payment.collection_id == collection_id).order_by(Payment.id)
        )
    )


def stale_payment_ids(
    tx: Tx, *, statuses: Sequence[str], provider: str, updated_before: datetime, limit: int
) -> list[str]:
    query = (
        select(Payment.id)
        .where(
            Payment.status.in_(list(statuses)),
            Payment.provider == provider,
            Payment.updated_at <= updated_before,
        )
        .order_by(Payment.updated_at, Payment.id)
        .limit(limit)
    )
    return list(tx.session.scalars(query))


def payments_page(
    tx: Tx,
    request: PageRequest,
    *,
    customer_id: str | None = None,
    invoice_id: str | None = None,
    status: str | None = None,
) -> list[Payment]:
    query = select(Payment)
    if customer_id is not None:
        query = query.where(Payment.customer_id == customer_id)
    if invoice_id is not None:
        query = query.where(Payment.invoice_id == invoice_id)
    if status is not None:
        query = query.where(Payment.status == status)
    return _page(tx, query, Payment.id, request)


# Refunds, disputes, payouts ---------------------------------------------------------------------


def refund(tx: Tx, refund_id: str, *, lock: bool = False) -> Refund | None:
    query = select(Refund).where(Refund.id == refund_id)
    return _locked(tx, query) if lock else tx.session.scalar(query)


def refund_by_provider_id(
    tx: Tx, provider: str, provider_refund_id: str, *, lock: bool = False
) -> Refund | None:
    query = select(Refund).where(
        Refund.provider == provider, Refund.provider_refund_id == provider_refund_id
    )
    return _locked(tx, query) if lock else tx.session.scalar(query)


def refunds_of_payment(tx: Tx, payment_id: str) -> list[Refund]:
    return list(
        tx.session.scalars(
            select(Refund).where(Refund.payment_id == payment_id).order_by(Refund.id)
        )
    )


def dispute_by_provider_id(
    tx: Tx, provider: str, provider_dispute_id: str, *, lock: bool = False
) -> Dispute | None:
    query = select(Dispute).where(
        Dispute.provider == provider, Dispute.provider_dispute_id == provider_dispute_id
    )
    return _locked(tx, query) if lock else tx.session.scalar(query)


def payout_by_provider_id(
    tx: Tx, provider: str, provider_payout_id: str, *, lock: bool = False
) -> Payout | None:
    query = select(Payout).where(
        Payout.provider == provider, Payout.provider_payout_id == provider_payout_id
    )
    return _locked(tx, query) if lock else tx.session.scalar(query)


def disputes_page(tx: Tx, request: PageRequest, *, status: str | None = None) -> list[Dispute]:
    query = select(Dispute)
    if status is not None:
        query = query.where(Dispute.status == status)
    return _page(tx, query, Dispute.id, request)


def payouts_page(tx: Tx, request: PageRequest) -> list[Payout]:
    return _page(tx, select(Payout), Payout.id, request)


def refunds_page(tx: Tx, request: PageRequest, *, payment_id: str | None = None) -> list[Refund]:
    query = select(Refund)
    if payment_id is not None:
        query = query.where(Refund.payment_id == payment_id)
    return _page(tx, query, Refund.id, request)


# Webhook inbox -----------------------------------------------------------------------------------


def insert_event(tx: Tx, values: dict[str, Any]) -> bool:
    """Store an event unless its id is stored already. Returns whether it was new."""
    insert = postgresql.insert if tx.is_postgres else sqlite.insert
    result = tx.session.execute(
        insert(WebhookEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(WebhookEvent.event_id)
    ).first()
    return result is not None


def claim_due_event(tx: Tx, *, now: datetime, statuses: Sequence[str]) -> WebhookEvent | None:
    """The oldest due event, locked for this transaction (others skip it)."""
    query = (
        select(WebhookEvent)
        .where(WebhookEvent.status.in_(list(statuses)), WebhookEvent.next_attempt_at <= now)
        .order_by(WebhookEvent.provider_created_at, WebhookEvent.event_id)
        .limit(1)
    )
    if tx.is_postgres:
        query = query.with_for_update(skip_locked=True)
    return tx.session.scalar(query)


def event(tx: Tx, event_id: str, *, lock: bool = False) -> WebhookEvent | None:
    query = select(WebhookEvent).where(WebhookEvent.event_id == event_id)
    return _locked(tx, query) if lock else tx.session.scalar(query)


def events_page(
    tx: Tx, request: PageRequest, *, status: str | None = None, type_: str | None = None
) -> list[WebhookEvent]:
    """Newest received first; the cursor is the event id (Stripe's ids are not time-ordered, so
    the page is ordered by (received_at, event_id) and the cursor looks the row up)."""
    query = select(WebhookEvent)
    if status is not None:
        query = query.where(WebhookEvent.status == status)
    if type_ is not None:
        query = query.where(WebhookEvent.type == type_)
    order = (WebhookEvent.received_at.desc(), WebhookEvent.event_id.desc())
    if request.starting_after:
        anchor = event(tx, request.starting_after)
        if anchor is not None:
            query = query.where(
                (WebhookEvent.received_at < anchor.received_at)
                | (
                    (WebhookEvent.received_at == anchor.received_at)
                    & (WebhookEvent.event_id < anchor.event_id)
                )
            )
    return list(tx.session.scalars(query.order_by(*order).limit(request.limit + 1)))


def event_counts(tx: Tx) -> dict[str, int]:
    rows = tx.session.execute(
        select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
    )
    return {status: count for status, count in rows}


# Paging -------------------------------------------------------------------------------------------


def _page(tx: Tx, query: Select[Any], id_column: Any, request: PageRequest) -> list[Any]:
    """Newest first by id; up to ``limit + 1`` rows so the caller can tell ``has_more``."""
    if request.starting_after:
        query = query.where(id_column < request.starting_after).order_by(id_column.desc())
    elif request.ending_before:
        query = query.where(id_column > request.ending_before).order_by(id_column.asc())
    else:
        query = query.order_by(id_column.desc())
    rows = list(tx.session.scalars(query.limit(request.limit + 1)))
    if request.ending_before:
        marker = rows[request.limit :]
        rows = list(reversed(rows[: request.limit])) + marker
    return rows


# Provider comparison (read-only, for reconciliation) ---------------------------------------------


def finalized_collections_between(
    tx: Tx, *, since: datetime, until: datetime, provider: str | None, limit: int
) -> list[tuple[Collection, Invoice]]:
    """Collections of invoices finalized in ``[since, until)``, oldest first, with the invoice
    (invoicing's table, read only)."""
    query = (
        select(Collection, Invoice)
        .join(Invoice, Invoice.id == Collection.invoice_id)
        .where(
            Invoice.finalized_at.is_not(None),
            Invoice.finalized_at >= since,
            Invoice.finalized_at < until,
        )
        .order_by(Invoice.finalized_at, Invoice.id)
        .limit(limit)
    )
    if provider is not None:
        query = query.where(Collection.provider == provider)
    return [(row[0], row[1]) for row in tx.session.execute(query)]


def payments_of_collections(tx: Tx, collection_ids: Sequence[str]) -> list[Payment]:
    if not collection_ids:
        return []
    return list(
        tx.session.scalars(
            select(Payment)
            .where(Payment.collection_id.in_(list(collection_ids)))
            .order_by(Payment.collection_id, Payment.id)
        )
    )


def events_of_objects(
    tx: Tx, provider: str, object_ids: Sequence[str], *, object_types: Sequence[str]
) -> list[WebhookEvent]:
    """Every stored event about these provider objects, oldest first."""
    if not object_ids:
        return []
    return list(
        tx.session.scalars(
            select(WebhookEvent)
            .where(
                WebhookEvent.provider == provider,
                WebhookEvent.object_id.in_(list(object_ids)),
                WebhookEvent.object_type.in_(list(object_types)),
            )
            .order_by(WebhookEvent.provider_created_at, WebhookEvent.event_id)
        )
    )


def events_between(
    tx: Tx,
    *,
    provider: str | None,
    object_types: Sequence[str],
    since: datetime,
    until: datetime,
    limit: int,
) -> list[WebhookEvent]:
    """Stored events about objects of these types created (by the provider) in
    ``[since, until)``, oldest first."""
    query = select(WebhookEvent).where(
        WebhookEvent.object_type.in_(list(object_types)),
        WebhookEvent.provider_created_at >= since,
        WebhookEvent.provider_created_at < until,
    )
    if provider is not None:
        query = query.where(WebhookEvent.provider == provider)
    query = query.order_by(WebhookEvent.provider_created_at, WebhookEvent.event_id).limit(limit)
    return list(tx.session.scalars(query))


def known_provider_payment_ids(tx: Tx, provider: str, ids: Sequence[str]) -> set[str]:
    if not ids:
        return set()
    return set(
        tx.session.scalars(
            select(Payment.provider_payment_id).where(
                Payment.provider == provider, Payment.provider_payment_id.in_(list(ids))
            )
        )
    )


def known_provider_refund_ids(tx: Tx, provider: str, ids: Sequence[str]) -> set[str]:
    if not ids:
        return set()
    return {
        found
        for found in tx.session.scalars(
            select(Refund.provider_refund_id).where(
                Refund.provider == provider, Refund.provider_refund_id.in_(list(ids))
            )
        )
        if found is not None
    }


def known_provider_dispute_ids(tx: Tx, provider: str, ids: Sequence[str]) -> set[str]:
    if not ids:
        return set()
    return set(
        tx.session.scalars(
            select(Dispute.provider_dispute_id).where(
                Dispute.provider == provider, Dispute.provider_dispute_id.in_(list(ids))
            )
        )
    )


def invoice_ids_with_collections(tx: Tx, invoice_ids: Sequence[str]) -> set[str]:
    if not invoice_ids:
        return set()
    return set(
        tx.session.scalars(
            select(Collection.invoice_id).where(Collection.invoice_id.in_(list(invoice_ids)))
        )
    )
