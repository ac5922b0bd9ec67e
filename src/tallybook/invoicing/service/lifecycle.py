"""After finalization: reading, paying, voiding, writing off. Never commits."""

from __future__ import annotations

from datetime import datetime

from tallybook.db import Tx
from tallybook.invoicing import credits as credit_port
from tallybook.invoicing import postings, repository
from tallybook.invoicing.domain import FINALIZED, InvoiceStatus
from tallybook.invoicing.errors import InvoiceCode
from tallybook.invoicing.models import Invoice, InvoicePayment
from tallybook.invoicing.service.billing import _emit
from tallybook.invoicing.views import InvoiceView
from tallybook.kit.clock import ensure_utc
from tallybook.kit.errors import Conflict, IdempotencyError, InvalidRequest, NotFound
from tallybook.kit.money import Money, normalize_currency
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.ledger import service as ledger
from tallybook.ledger.values import Leg, ReverseTransfer, TransferRequest

REASON_LENGTH_MAX = 500


def load(tx: Tx, invoice_id: str, *, for_update: bool = False) -> Invoice:
    invoice = repository.get(tx, invoice_id, for_update=for_update)
    if invoice is None:
        raise NotFound("invoice", invoice_id)
    return invoice


def view_of(tx: Tx, invoice: Invoice) -> InvoiceView:
    return InvoiceView.of(invoice, repository.lines_of(tx, invoice.id))


def get_invoice(tx: Tx, invoice_id: str) -> InvoiceView:
    """An invoice with its lines (by id, or by number)."""
    invoice = repository.get(tx, invoice_id) or repository.by_number(tx, invoice_id)
    if invoice is None:
        raise NotFound("invoice", invoice_id)
    return view_of(tx, invoice)


def list_invoices(
    tx: Tx,
    request: PageRequest,
    *,
    customer_id: str | None = None,
    subscription_id: str | None = None,
    status: str | None = None,
) -> Page[InvoiceView]:
    if status is not None and status not in tuple(InvoiceStatus):
        raise InvalidRequest(
            InvoiceCode.STATUS_INVALID,
            f"status must be one of {', '.join(InvoiceStatus)}",
            param="status",
        )
    rows = repository.page(
        tx, request, customer_id=customer_id, subscription_id=subscription_id, status=status
    )
    page = page_from_rows(rows, request)
    return Page(data=[view_of(tx, row) for row in page.data], has_more=page.has_more)


def _require_status(invoice: Invoice, allowed: tuple[str, ...], action: str) -> None:
    if invoice.status not in allowed:
        raise Conflict(
            InvoiceCode.STATUS_INVALID,
            f"cannot {action} invoice {invoice.id}: it is {invoice.status}",
            param="id",
        )


def _transfer_ids(invoice: Invoice) -> list[str]:
    """The invoice's own transfers (finalize, balance, credit grants), oldest first."""
    ids = [f"invoice:{invoice.id}:finalize"]
    if invoice.balance_applied_minor:
        ids.append(f"invoice:{invoice.id}:balance")
    ids += credit_port.credit_transfer_ids(invoice.id, invoice.credits)
    return list(dict.fromkeys(ids))


def void(tx: Tx, invoice_id: str, *, reason: str | None = None) -> InvoiceView:
    """Cancel an open invoice: every transfer it posted is reversed, credits go back to their
    grants and the customer's balance. Idempotent. A paid (or partly paid) invoice is corrected
    with a credit note instead (``invoice_void_paid``)."""
    invoice = load(tx, invoice_id, for_update=True)
    if invoice.status == InvoiceStatus.VOID:
        return view_of(tx, invoice)
    _require_status(
        invoice, (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.PAID), "void"
    )
    if (
        invoice.status == InvoiceStatus.PAID
        or invoice.amount_paid_minor
        or invoice.amount_credited_minor
    ):
        raise Conflict(
            InvoiceCode.VOID_PAID,
            f"invoice {invoice.id} has payments or credit notes; issue a credit note instead",
            param="id",
        )
    ids = _transfer_ids(invoice)
    if invoice.amount_written_off_minor:
        ids.append(f"invoice:{invoice.id}:write_off")
    existing = ledger.transfers_by_id(tx, ids)
    operations = [
        ReverseTransfer(
            id=f"invoice:{invoice.id}:void:{n}",
            transfer_id=transfer_id,
            reason_code="invoice.void",
            metadata={"invoice_id": invoice.id},
        )
        for n, transfer_id in enumerate(ids)
        if transfer_id in existing
    ]
    if operations:
        for result in ledger.create_linked_batch(tx, operations):
            if not result.ok:
                raise Conflict(
                    InvoiceCode.LEDGER_REFUSED,
                    f"the ledger refused to reverse {result.id}: {result.code}",
                    param="id",
                )
    invoice.status = InvoiceStatus.VOID
    invoice.voided_at = tx.now()
    invoice.status_reason = (reason or "")[:REASON_LENGTH_MAX] or None
    invoice.updated_at = tx.now()
    tx.session.flush()
    _emit(tx, "invoice.voided", invoice)
    return view_of(tx, invoice)


def mark_uncollectible(tx: Tx, invoice_id: str, *, reason: str | None = None) -> InvoiceView:
    """Write off what is still owed (``invoice:<id>:write_off``: Dr ``bad_debt``, Cr the
    receivable). Idempotent. A payment arriving later is still recorded (the write-off is then
    partly reversed)."""
    invoice = load(tx, invoice_id, for_update=True)
    if invoice.status == InvoiceStatus.UNCOLLECTIBLE:
        return view_of(tx, invoice)
    _require_status(invoice, (InvoiceStatus.OPEN,), "mark uncollectible")
    remaining = invoice.amount_remaining_minor
    if remaining > 0:
        amount = Money(remaining, invoice.currency)
        result = ledger.create_transfer(
            tx,
            TransferRequest(
                id=f"invoice:{invoice.id}:write_off",
                legs=[
                    Leg.debit(postings.account_id(tx, postings.BAD_DEBT, invoice.currency), amount),
                    Leg.credit(
                        postings.account_id(tx, postings.AR, invoice.currency, invoice.customer_id),
                        amount,
                    ),
                ],
                reason_code="invoice.write_off",
                metadata={"invoice_id": invoice.id},
            ),
        )
        result.raise_for_error()
    invoice.amount_written_off_minor = remaining
    invoice.status = InvoiceStatus.UNCOLLECTIBLE
    invoice.marked_uncollectible_at = tx.now()
    invoice.status_reason = (reason or "")[:REASON_LENGTH_MAX] or None
    invoice.updated_at = tx.now()
    tx.session.flush()
    _emit(tx, "invoice.marked_uncollectible", invoice)
    return view_of(tx, invoice)


def record_payment(
    tx: Tx,
    invoice_id: str,
    *,
    payment_id: str,
    amount_minor: int,
    currency: str,
    at: datetime,
) -> InvoiceView:
    """Record a payment the payments domain posted (``payment:<id>``, in the same
    transaction). Marks the invoice paid once nothing remains. Idempotent by ``payment_id``.
    On an uncollectible invoice the write-off is reversed by what was paid."""
    invoice = load(tx, invoice_id, for_update=True)
    currency = normalize_currency(currency)
    if currency != invoice.currency:
        raise InvalidRequest(
            InvoiceCode.PAYMENT_CURRENCY_MISMATCH,
            f"invoice {invoice.id} is in {invoice.currency}, the payment in {currency}",
            param="currency",
        )
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise InvalidRequest(
            InvoiceCode.PAYMENT_AMOUNT_INVALID,
            "amount_minor must be a positive integer",
            param="amount_minor",
        )
    seen = repository.payment(tx, payment_id)
    if seen is not None:
        if seen.invoice_id != invoice.id or seen.amount_minor != amount_minor:
            raise IdempotencyError(
                InvoiceCode.PAYMENT_CONFLICT,
                f"payment {payment_id} was recorded with another invoice or amount",
                param="payment_id",
            )
        return view_of(tx, invoice)
    _require_status(
        invoice, (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE), "pay"
    )
    at = ensure_utc(at, param="at")
    tx.session.add(
        InvoicePayment(
            payment_id=payment_id,
            invoice_id=invoice.id,
            amount_minor=amount_minor,
            currency=currency,
            paid_at=at,
            created_at=tx.now(),
        )
    )
    if invoice.status == InvoiceStatus.UNCOLLECTIBLE and invoice.amount_written_off_minor:
        restored = min(amount_minor, invoice.amount_written_off_minor)
        result = ledger.reverse_transfer(
            tx,
            ReverseTransfer(
                id=postings.transfer_id(f"invoice:{invoice.id}:write_off:paid:{payment_id}"),
                transfer_id=f"invoice:{invoice.id}:write_off",
                reason_code="invoice.write_off_recovered",
                amount_minor=restored,
                metadata={"invoice_id": invoice.id, "payment_id": payment_id},
            ),
        )
        result.raise_for_error()
        invoice.amount_written_off_minor -= restored
    invoice.amount_paid_minor += amount_minor
    invoice.updated_at = tx.now()
    if invoice.status != InvoiceStatus.PAID and invoice.amount_remaining_minor == 0:
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = at
        tx.session.flush()
        _emit(tx, "invoice.paid", invoice)
    tx.session.flush()
    return view_of(tx, invoice)


def is_finalized(invoice: Invoice) -> bool:
    return invoice.status in FINALIZED
