"""Reads for the API, CLI and console."""

from __future__ import annotations

from tallybook.db import Tx
from tallybook.kit.errors import NotFound
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.payments import repository
from tallybook.payments.models import Collection, Dispute, Payment, Payout, Refund, WebhookEvent


def get_payment(tx: Tx, payment_id: str) -> Payment:
    payment = repository.payment(tx, payment_id)
    if payment is None:
        raise NotFound("payment", payment_id)
    return payment


def list_payments(
    tx: Tx,
    request: PageRequest,
    *,
    customer_id: str | None = None,
    invoice_id: str | None = None,
    status: str | None = None,
) -> Page[Payment]:
    rows = repository.payments_page(
        tx, request, customer_id=customer_id, invoice_id=invoice_id, status=status
    )
    return page_from_rows(rows, request)


def list_collections(
    tx: Tx, request: PageRequest, *, customer_id: str | None = None, status: str | None = None
) -> Page[Collection]:
    return page_from_rows(
        repository.collections_page(tx, request, customer_id=customer_id, status=status), request
    )


def payments_of(tx: Tx, collection: Collection) -> list[Payment]:
    return repository.payments_of_collection(tx, collection.id)


def list_refunds(tx: Tx, request: PageRequest, *, payment_id: str | None = None) -> Page[Refund]:
    return page_from_rows(repository.refunds_page(tx, request, payment_id=payment_id), request)


def list_disputes(tx: Tx, request: PageRequest, *, status: str | None = None) -> Page[Dispute]:
    return page_from_rows(repository.disputes_page(tx, request, status=status), request)


def list_payouts(tx: Tx, request: PageRequest) -> Page[Payout]:
    return page_from_rows(repository.payouts_page(tx, request), request)


def get_event(tx: Tx, event_id: str) -> WebhookEvent:
    event = repository.event(tx, event_id)
    if event is None:
        raise NotFound("inbound event", event_id)
    return event


def list_events(
    tx: Tx, request: PageRequest, *, status: str | None = None, type_: str | None = None
) -> Page[WebhookEvent]:
    return page_from_rows(repository.events_page(tx, request, status=status, type_=type_), request)


def inbox_counts(tx: Tx) -> dict[str, int]:
    return repository.event_counts(tx)
