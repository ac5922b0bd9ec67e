"""The invoice page (header, lines explained down to the events, credits, totals, credit notes,
payments), the events behind one line, the rendered document, and two audited actions:
void the invoice and issue an adjustment (a credit note)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

from fastapi import Depends, Form
from starlette.responses import HTMLResponse, Response

from tallybook.console.actions import ActionForm, Done, action_form, respond, run_action
from tallybook.console.errors import ConsoleCode
from tallybook.console.web import ConsoleContext, console_router, safe_next, signed_in
from tallybook.db import Tx
from tallybook.invoicing import documents, explain
from tallybook.invoicing import service as invoicing
from tallybook.kit.errors import InvalidRequest, NotFound
from tallybook.kit.money import Money
from tallybook.kit.pagination import PageRequest
from tallybook.payments import service as payments

router = console_router()

EVENTS_PAGE_SIZE: Final = 50
RELATED_SHOWN_MAX: Final = 50
#: The rendered document is a self-contained page with its own inline styles.
DOCUMENT_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


@router.get("/invoices/{invoice_ref}")
def invoice_page(invoice_ref: str, ctx: ConsoleContext = Depends(signed_in())) -> Response:
    with ctx.read() as tx:
        explained = explain.explain_invoice(tx, invoice_ref)
        invoice = explained.invoice
        assert invoice.id is not None
        notes = invoicing.list_credit_notes(
            tx, PageRequest(limit=RELATED_SHOWN_MAX), invoice_id=invoice.id
        )
        paid = payments.list_payments(
            tx, PageRequest(limit=RELATED_SHOWN_MAX), invoice_id=invoice.id
        )
        return ctx.render(
            "invoices/show.html",
            tx=tx,
            invoice=invoice,
            lines=explained.lines,
            credit_notes=list(notes.data),
            payments=list(paid.data),
            creditable_lines=[line for line in invoice.lines if line.amount_minor > 0],
        )


@router.get("/invoices/{invoice_ref}/lines/{line_id}/events")
def line_events(
    invoice_ref: str, line_id: str, ctx: ConsoleContext = Depends(signed_in())
) -> Response:
    after = ctx.request.query_params.get("after") or None
    with ctx.read() as tx:
        invoice = invoicing.get_invoice(tx, invoice_ref)
        assert invoice.id is not None
        line = next((item for item in invoice.lines if item.id == line_id), None)
        page = explain.line_events(tx, invoice.id, line_id, after=after, limit=EVENTS_PAGE_SIZE)
        return ctx.render(
            "invoices/events.html",
            tx=tx,
            invoice=invoice,
            line=line,
            events=page.data,
            next_after=page.next_cursor,
            first_page=after is None,
        )


@router.get("/invoices/{invoice_ref}/document")
def invoice_document(invoice_ref: str, ctx: ConsoleContext = Depends(signed_in())) -> Response:
    with ctx.read() as tx:
        invoice = invoicing.get_invoice(tx, invoice_ref)
        assert invoice.id is not None
        html = documents.render_invoice_html(tx, invoice.id)
    return HTMLResponse(
        html, headers={"Content-Security-Policy": DOCUMENT_CSP, "Cache-Control": "no-store"}
    )


@router.post("/invoices/{invoice_id}/void")
def void_invoice(
    invoice_id: str,
    ctx: ConsoleContext = Depends(signed_in()),
    form: ActionForm = Depends(action_form),
    back: str = Form(""),
) -> Response:
    customer_id = _customer_of(ctx, invoice_id)

    def perform(tx: Tx) -> Done:
        before = invoicing.get_invoice(tx, invoice_id)
        voided = invoicing.void(tx, invoice_id, reason=form.reason)
        return Done(
            f"Voided invoice {voided.number or voided.id}",
            details={
                "number": voided.number,
                "total": Money(voided.total_minor, voided.currency),
                "previous": {"status": before.status},
            },
        )

    outcome = run_action(
        ctx,
        form,
        action="invoice.void",
        object_type="invoice",
        object_id=invoice_id,
        customer_id=customer_id,
        perform=perform,
    )
    return respond(ctx, outcome, back=safe_next(back or f"/console/invoices/{invoice_id}"))


def parse_amount(value: str, currency: str) -> Money:
    """A positive major amount typed by a person (``25``, ``25.00``, ``1,250.50``)."""
    text = value.strip().replace(",", "").replace(" ", "")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = Decimal(0)
    if not text or not amount.is_finite() or amount <= 0:
        raise InvalidRequest(
            ConsoleCode.AMOUNT_INVALID,
            f"'{value}' is not a positive amount; type it like 25.00",
            param="amount",
        )
    money = Money.from_major(amount, currency)
    if money.to_major() != amount:
        raise InvalidRequest(
            ConsoleCode.AMOUNT_INVALID,
            f"{value} has more decimals than {currency} allows",
            param="amount",
        )
    return money


@router.post("/invoices/{invoice_id}/adjustments")
def issue_adjustment(
    invoice_id: str,
    ctx: ConsoleContext = Depends(signed_in()),
    form: ActionForm = Depends(action_form),
    line_id: str = Form(""),
    amount: str = Form(""),
    credit_reason: str = Form(invoicing.CreditNoteReason.BILLING_ERROR.value),
    back: str = Form(""),
) -> Response:
    customer_id = _customer_of(ctx, invoice_id)

    def perform(tx: Tx) -> Done:
        invoice = invoicing.get_invoice(tx, invoice_id)
        lines = None
        if line_id:
            money = parse_amount(amount, invoice.currency)
            lines = [invoicing.CreditLine(invoice_line_id=line_id, amount_minor=money.amount_minor)]
        note = invoicing.create_credit_note(
            tx, invoice_id, lines=lines, reason=credit_reason, memo=form.reason
        )
        credited = Money(note.amount_minor, note.currency)
        return Done(
            f"Credit note {note.number} of {credited.format()} on {invoice.number or invoice_id}",
            details={
                "credit_note_id": note.id,
                "number": note.number,
                "amount": credited,
                "line_id": line_id or None,
                "credit_reason": note.reason,
            },
        )

    outcome = run_action(
        ctx,
        form,
        action="invoice.issue_adjustment",
        object_type="invoice",
        object_id=invoice_id,
        customer_id=customer_id,
        perform=perform,
    )
    return respond(ctx, outcome, back=safe_next(back or f"/console/invoices/{invoice_id}"))


def _customer_of(ctx: ConsoleContext, invoice_id: str) -> str | None:
    """The invoice's customer for the audit entry (None for an unknown invoice: the action
    then fails with ``not_found`` and is recorded as such)."""
    with ctx.read() as tx:
        try:
            return invoicing.get_invoice(tx, invoice_id).customer_id
        except NotFound:
            return None
