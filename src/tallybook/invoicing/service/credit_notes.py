"""Credit notes: corrections of a finalized invoice, in full or per line. Never commits.

A credit note debits revenue for what it credits (per revenue account), and credits the
customer's receivable for the part the invoice still owed, the customer's balance for the rest
(what was already paid becomes money we owe them, applied to their next invoices or refunded
by payments). ``credit_note:<id>`` in the ledger (ADR 0002).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tallybook.db import Tx
from tallybook.invoicing import numbering, postings, repository
from tallybook.invoicing.domain import InvoiceStatus
from tallybook.invoicing.errors import InvoiceCode
from tallybook.invoicing.models import CreditNote, CreditNoteLine, InvoiceLine
from tallybook.invoicing.service.billing import _emit
from tallybook.invoicing.service.lifecycle import load
from tallybook.invoicing.settings import InvoicingSettings
from tallybook.invoicing.views import CreditNoteView
from tallybook.kit.errors import Conflict, InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.money import Money, check_amount_minor
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.ledger import service as ledger
from tallybook.ledger.values import Leg, TransferRequest
from tallybook.work import events

LINES_MAX: Final = 500
MEMO_LENGTH_MAX: Final = 500


class CreditNoteReason(StrEnum):
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    ORDER_CHANGE = "order_change"
    PRODUCT_UNSATISFACTORY = "product_unsatisfactory"
    BILLING_ERROR = "billing_error"
    GOODWILL = "goodwill"


@dataclass(frozen=True, slots=True)
class CreditLine:
    invoice_line_id: str
    amount_minor: int


def create_credit_note(
    tx: Tx,
    invoice_id: str,
    *,
    lines: Sequence[CreditLine] | None = None,
    reason: str = CreditNoteReason.BILLING_ERROR,
    memo: str | None = None,
    settings: InvoicingSettings | None = None,
) -> CreditNoteView:
    """Credit ``lines`` (each at most what is left to credit on it), or with ``lines`` None
    everything still creditable on the invoice."""
    settings = settings or InvoicingSettings.from_settings()
    invoice = load(tx, invoice_id, for_update=True)
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID):
        raise Conflict(
            InvoiceCode.STATUS_INVALID,
            f"credit notes apply to open or paid invoices; {invoice.id} is {invoice.status}",
            param="invoice",
        )
    try:
        reason = CreditNoteReason(reason)
    except ValueError:
        raise InvalidRequest(
            InvoiceCode.CREDIT_NOTE_REASON_INVALID,
            f"reason must be one of {', '.join(CreditNoteReason)}",
            param="reason",
        ) from None
    invoice_lines = {line.id: line for line in repository.lines_of(tx, invoice.id)}
    credited = repository.credited_by_line(tx, invoice.id)
    already = sum(n.amount_minor for n in repository.credit_notes_of(tx, invoice.id))
    creditable_total = invoice.total_minor - already
    if lines is None:
        requested = _full(invoice_lines, credited, creditable_total)
    else:
        requested = list(lines)
    if not requested or len(requested) > LINES_MAX:
        raise InvalidRequest(
            InvoiceCode.CREDIT_NOTE_AMOUNT_INVALID,
            f"nothing left to credit on {invoice.id}"
            if not requested
            else f"at most {LINES_MAX} lines",
            param="lines",
        )
    seen: set[str] = set()
    for index, item in enumerate(requested):
        param = f"lines[{index}]"
        line = invoice_lines.get(item.invoice_line_id)
        if line is None or item.invoice_line_id in seen:
            raise InvalidRequest(
                InvoiceCode.CREDIT_NOTE_LINE_INVALID,
                f"{item.invoice_line_id} is not a line of {invoice.id} (or is repeated)",
                param=f"{param}.line",
            )
        seen.add(item.invoice_line_id)
        check_amount_minor(item.amount_minor, param=f"{param}.amount_minor")
        left = line.amount_minor - credited.get(line.id, 0)
        if item.amount_minor <= 0 or item.amount_minor > left:
            raise InvalidRequest(
                InvoiceCode.CREDIT_NOTE_AMOUNT_INVALID,
                f"line {line.id} has {Money(max(left, 0), invoice.currency)} left to credit",
                param=f"{param}.amount_minor",
            )
    amount = sum(item.amount_minor for item in requested)
    if amount > creditable_total:
        raise InvalidRequest(
            InvoiceCode.CREDIT_NOTE_AMOUNT_INVALID,
            f"invoice {invoice.id} has {Money(max(creditable_total, 0), invoice.currency)} left "
            "to credit (its total after discounts, less earlier credit notes)",
            param="lines",
        )
    receivable = min(amount, invoice.amount_remaining_minor)
    to_balance = amount - receivable
    note_id = new_id("cn")
    series = numbering.credit_note_series(settings.number_prefix, tx.now())
    revenue = postings.revenue_by_account(
        (invoice_lines[item.invoice_line_id].kind, item.amount_minor) for item in requested
    )
    _post(tx, note_id, invoice.customer_id, invoice.currency, revenue, receivable, to_balance)
    number = numbering.take_numbers(tx, series, 1)[0]
    note = CreditNote(
        id=note_id,
        invoice_id=invoice.id,
        customer_id=invoice.customer_id,
        number=number,
        currency=invoice.currency,
        amount_minor=amount,
        receivable_minor=receivable,
        balance_minor=to_balance,
        reason=str(reason),
        memo=(memo or "")[:MEMO_LENGTH_MAX] or None,
        created_at=tx.now(),
    )
    tx.session.add(note)
    tx.session.flush()
    rows = [
        CreditNoteLine(
            id=new_id("cnl"),
            credit_note_id=note.id,
            invoice_line_id=item.invoice_line_id,
            amount_minor=item.amount_minor,
            description=invoice_lines[item.invoice_line_id].description,
        )
        for item in requested
    ]
    tx.session.add_all(rows)
    invoice.amount_credited_minor += receivable
    invoice.updated_at = tx.now()
    if invoice.status == InvoiceStatus.OPEN and invoice.amount_remaining_minor == 0:
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = tx.now()
        tx.session.flush()
        _emit(tx, "invoice.paid", invoice)
    tx.session.flush()
    view = CreditNoteView.of(note, rows)
    events.emit(
        tx,
        "credit_note.created",
        customer_id=invoice.customer_id,
        object_id=note.id,
        data={
            "credit_note": {
                "id": note.id,
                "number": note.number,
                "invoice_id": invoice.id,
                "amount_minor": amount,
                "receivable_minor": receivable,
                "balance_minor": to_balance,
                "currency": invoice.currency,
                "reason": note.reason,
            }
        },
    )
    return view


def _full(
    lines: dict[str, InvoiceLine], credited: dict[str, int], creditable_total: int
) -> list[CreditLine]:
    """Every positive line's remaining amount, scaled down to what the invoice still allows
    (a discounted invoice credits its total, spread over the lines by largest remainder)."""
    remaining = []
    for line_id, line in lines.items():
        left = line.amount_minor - credited.get(line_id, 0)
        if left > 0:
            remaining.append((line_id, left, line.currency))
    if not remaining or creditable_total <= 0:
        return []
    gross = sum(left for _, left, _ in remaining)
    if gross <= creditable_total:
        return [CreditLine(line_id, left) for line_id, left, _ in remaining]
    parts = Money(creditable_total, remaining[0][2]).allocate([left for _, left, _ in remaining])
    return [
        CreditLine(line_id, part.amount_minor)
        for (line_id, _, _), part in zip(remaining, parts, strict=True)
        if part.amount_minor > 0
    ]


def _post(
    tx: Tx,
    note_id: str,
    customer_id: str,
    currency: str,
    revenue: dict[str, int],
    receivable: int,
    to_balance: int,
) -> None:
    legs: list[Leg] = []
    for code in sorted(revenue):
        amount = revenue[code]
        if amount > 0:
            legs.append(Leg.debit(postings.account_id(tx, code, currency), Money(amount, currency)))
        elif amount < 0:
            legs.append(
                Leg.credit(postings.account_id(tx, code, currency), Money(-amount, currency))
            )
    if receivable:
        legs.append(
            Leg.credit(
                postings.account_id(tx, postings.AR, currency, customer_id),
                Money(receivable, currency),
            )
        )
    if to_balance:
        legs.append(
            Leg.credit(
                postings.account_id(tx, postings.BALANCE, currency, customer_id),
                Money(to_balance, currency),
            )
        )
    result = ledger.create_transfer(
        tx,
        TransferRequest(
            id=f"credit_note:{note_id}",
            legs=legs,
            reason_code="credit_note",
            metadata={"credit_note_id": note_id},
        ),
    )
    result.raise_for_error()


def get_credit_note(tx: Tx, credit_note_id: str) -> CreditNoteView:
    note = repository.credit_note(tx, credit_note_id)
    if note is None:
        raise NotFound("credit note", credit_note_id)
    return CreditNoteView.of(note, repository.credit_note_lines(tx, [note.id]))


def list_credit_notes(
    tx: Tx, request: PageRequest, *, invoice_id: str | None = None, customer_id: str | None = None
) -> Page[CreditNoteView]:
    rows = repository.credit_notes_page(tx, request, invoice_id=invoice_id, customer_id=customer_id)
    page = page_from_rows(rows, request)
    lines = repository.credit_note_lines(tx, [n.id for n in page.data])
    by_note: dict[str, list[CreditNoteLine]] = {}
    for line in lines:
        by_note.setdefault(line.credit_note_id, []).append(line)
    return Page(
        data=[CreditNoteView.of(n, by_note.get(n.id, [])) for n in page.data],
        has_more=page.has_more,
    )
