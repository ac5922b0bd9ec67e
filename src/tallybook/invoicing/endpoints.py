"""HTTP routes of invoicing: invoices (list, get, finalize, void, mark uncollectible, explain,
the events behind a line, the HTML document), the upcoming invoice of a subscription, credit
notes and per-customer billing thresholds. Scopes ``invoices:read`` / ``invoices:write``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import HTMLResponse, Response

from tallybook.customers import service as customers
from tallybook.db import Tx
from tallybook.http.edge import Edge, make_router, page_params, require
from tallybook.http.errors import ERROR_RESPONSES
from tallybook.http.responses import ListEnvelope, list_envelope
from tallybook.invoicing import documents, explain, service
from tallybook.invoicing.schemas import (
    CreditNoteBody,
    CreditNoteOut,
    InvoiceExplanationOut,
    InvoiceOut,
    ReasonBody,
    ThresholdBody,
    ThresholdOut,
)
from tallybook.kit.errors import NotFound
from tallybook.kit.pagination import PageRequest
from tallybook.metering.schemas import EventListOut, MeteredEventOut

READ = require("invoices:read")
WRITE = require("invoices:write")

invoices_router = make_router("/v1/invoices", tags=["invoicing"])
subscriptions_router = make_router("/v1/subscriptions", tags=["invoicing"])
credit_notes_router = make_router("/v1/credit_notes", tags=["invoicing"])
thresholds_router = make_router("/v1/customers", tags=["invoicing"])


def _customer_id(tx: Tx, customer: str | None) -> str | None:
    if customer is None:
        return None
    try:
        return customers.resolve(tx, customer).id
    except NotFound:
        raise NotFound("customer", customer, param="customer") from None


@invoices_router.get("", response_model=ListEnvelope[InvoiceOut], responses=ERROR_RESPONSES)
def list_invoices(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    customer: str | None = Query(None, description="Customer id or external id"),
    subscription: str | None = Query(None),
    status: str | None = Query(None, description="draft, open, paid, void, uncollectible"),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = service.list_invoices(
            tx,
            page,
            customer_id=_customer_id(tx, customer),
            subscription_id=subscription,
            status=status,
        )
        return list_envelope(result, "/v1/invoices", [InvoiceOut.of(i) for i in result.data])

    return edge.read(run)


@invoices_router.get("/{invoice_id}", response_model=InvoiceOut, responses=ERROR_RESPONSES)
def get_invoice(invoice_id: str, edge: Edge = Depends(READ)) -> Response:
    """An invoice by id (`in_…`) or number (`TB-2026-000123`), with its lines."""
    return edge.read(lambda tx: InvoiceOut.of(service.get_invoice(tx, invoice_id)))


@invoices_router.post(
    "/{invoice_id}/finalize", response_model=InvoiceOut, responses=ERROR_RESPONSES
)
def finalize_invoice(invoice_id: str, edge: Edge = Depends(WRITE)) -> Response:
    """Finalize a draft now (assembled again as of now, numbered, posted, sent to payments).
    A finalized invoice is returned unchanged."""
    return edge.write(lambda tx: InvoiceOut.of(service.finalize_invoice(tx, invoice_id)))


@invoices_router.post("/{invoice_id}/void", response_model=InvoiceOut, responses=ERROR_RESPONSES)
def void_invoice(invoice_id: str, body: ReasonBody, edge: Edge = Depends(WRITE)) -> Response:
    """Cancel an open invoice: its ledger transfers are reversed. Paid invoices take a credit
    note instead."""
    return edge.write(
        lambda tx: InvoiceOut.of(service.void(tx, invoice_id, reason=body.reason)),
        fingerprint=body,
    )


@invoices_router.post(
    "/{invoice_id}/mark_uncollectible", response_model=InvoiceOut, responses=ERROR_RESPONSES
)
def mark_uncollectible(invoice_id: str, body: ReasonBody, edge: Edge = Depends(WRITE)) -> Response:
    """Write off what is still owed (bad debt)."""
    return edge.write(
        lambda tx: InvoiceOut.of(service.mark_uncollectible(tx, invoice_id, reason=body.reason)),
        fingerprint=body,
    )


@invoices_router.get(
    "/{invoice_id}/explain", response_model=InvoiceExplanationOut, responses=ERROR_RESPONSES
)
def explain_invoice(invoice_id: str, edge: Edge = Depends(READ)) -> Response:
    """Per line: meter, window, quantity, included quantity used, tiers and unit prices,
    credits burned, what was billed before, and the URL of the events behind the quantity."""
    return edge.read(lambda tx: InvoiceExplanationOut.of(explain.explain_invoice(tx, invoice_id)))


@invoices_router.get(
    "/{invoice_id}/lines/{line_id}/events",
    response_model=EventListOut,
    responses=ERROR_RESPONSES,
)
def line_events(
    invoice_id: str,
    line_id: str,
    edge: Edge = Depends(READ),
    after: str | None = Query(None, description="`next_cursor` of the previous page"),
    limit: int = Query(100, ge=1, le=1000),
) -> Response:
    """The events that make up a usage line's quantity, in (time, seq) order."""

    def run(tx: Tx) -> dict[str, Any]:
        page = explain.line_events(tx, invoice_id, line_id, after=after, limit=limit)
        return {
            "object": "list",
            "data": [MeteredEventOut.of(e).model_dump(mode="json") for e in page.data],
            "has_more": page.has_more,
            "url": f"/v1/invoices/{invoice_id}/lines/{line_id}/events",
            "next_cursor": page.next_cursor,
        }

    return edge.read(run)


@invoices_router.get(
    "/{invoice_id}/render",
    response_class=HTMLResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"text/html": {}}}},
)
def render_invoice(invoice_id: str, edge: Edge = Depends(READ)) -> Response:
    """The invoice as a self-contained HTML page."""
    with edge.db.read(actor=edge.caller.actor, request_id=edge.request_id) as tx:
        html = documents.render_invoice_html(tx, invoice_id)
    return HTMLResponse(html)


@subscriptions_router.get(
    "/{subscription_id}/upcoming_invoice", response_model=InvoiceOut, responses=ERROR_RESPONSES
)
def upcoming_invoice(subscription_id: str, edge: Edge = Depends(READ)) -> Response:
    """Exactly what finalizing now would produce: the oldest ended period not yet invoiced, or
    the current period with its usage so far. Nothing is written."""
    return edge.read(lambda tx: InvoiceOut.of(service.preview(tx, subscription_id)))


@credit_notes_router.post("", response_model=CreditNoteOut, responses=ERROR_RESPONSES)
def create_credit_note(body: CreditNoteBody, edge: Edge = Depends(WRITE)) -> Response:
    """Correct a finalized invoice, in full (omit `lines`) or per line."""
    return edge.write(
        lambda tx: CreditNoteOut.of(
            service.create_credit_note(
                tx, body.invoice, lines=body.credit_lines(), reason=body.reason, memo=body.memo
            )
        ),
        fingerprint=body,
    )


@credit_notes_router.get("", response_model=ListEnvelope[CreditNoteOut], responses=ERROR_RESPONSES)
def list_credit_notes(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    invoice: str | None = Query(None),
    customer: str | None = Query(None),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = service.list_credit_notes(
            tx, page, invoice_id=invoice, customer_id=_customer_id(tx, customer)
        )
        return list_envelope(result, "/v1/credit_notes", [CreditNoteOut.of(n) for n in result.data])

    return edge.read(run)


@credit_notes_router.get(
    "/{credit_note_id}", response_model=CreditNoteOut, responses=ERROR_RESPONSES
)
def get_credit_note(credit_note_id: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: CreditNoteOut.of(service.get_credit_note(tx, credit_note_id)))


@thresholds_router.post(
    "/{customer}/billing_threshold", response_model=ThresholdOut, responses=ERROR_RESPONSES
)
def set_billing_threshold(
    customer: str, body: ThresholdBody, edge: Edge = Depends(WRITE)
) -> Response:
    """Override the plan version's billing threshold for one customer (null: none for them)."""

    def run(tx: Tx) -> ThresholdOut:
        customer_id = _customer_id(tx, customer)
        assert customer_id is not None
        amount = service.set_billing_threshold(tx, customer_id, body.amount_minor)
        return ThresholdOut(customer=customer_id, amount_minor=amount, source="customer")

    return edge.write(run, fingerprint=body)


routers: list[APIRouter] = [
    invoices_router,
    subscriptions_router,
    credit_notes_router,
    thresholds_router,
]
