"""The calls payments makes into invoicing (ADR 0002), in one place.

Invoicing owns the invoice: payments reads it (``get_invoice``), tells it about money received
(``record_payment``: the part of a payment applied to the invoice) and about write-offs
(``mark_uncollectible``). The ledger transfer of a payment is ours, posted in the same
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tallybook.db import Tx
from tallybook.invoicing import service as invoicing
from tallybook.invoicing.models import Invoice
from tallybook.invoicing.service.lifecycle import load as load_invoice
from tallybook.kit.invariant import invariant
from tallybook.kit.money import Money

OPEN = "open"
PAID = "paid"
VOID = "void"
UNCOLLECTIBLE = "uncollectible"
DRAFT = "draft"


@dataclass(frozen=True, slots=True)
class InvoiceFacts:
    id: str
    number: str | None
    customer_id: str
    subscription_id: str | None
    currency: str
    status: str
    amount_due_minor: int
    #: What the customer still owes (after payments, credit notes and write-offs).
    amount_remaining_minor: int
    amount_written_off_minor: int

    @property
    def amount_remaining(self) -> Money:
        return Money(self.amount_remaining_minor, self.currency)

    def payable_minor(self, currency: str) -> int:
        """How much of a payment the invoice can take: what is still owed, plus (on a written
        off invoice) what was written off, since invoicing reverses the write-off by what is
        paid. Zero for a voided or draft invoice, or another currency."""
        if currency != self.currency:
            return 0
        if self.status == OPEN:
            return self.amount_remaining_minor
        if self.status == UNCOLLECTIBLE:
            return self.amount_remaining_minor + self.amount_written_off_minor
        return 0


def get_invoice(tx: Tx, invoice_id: str) -> InvoiceFacts:
    invoice = invoicing.get_invoice(tx, invoice_id)
    invariant(invoice.id is not None, "a stored invoice has an id")
    assert invoice.id is not None
    return InvoiceFacts(
        id=invoice.id,
        number=invoice.number,
        customer_id=invoice.customer_id,
        subscription_id=invoice.subscription_id,
        currency=invoice.currency,
        status=str(invoice.status),
        amount_due_minor=invoice.amount_due_minor,
        amount_remaining_minor=invoice.amount_remaining_minor,
        amount_written_off_minor=invoice.amount_written_off_minor,
    )


def lock_invoice(tx: Tx, invoice_id: str) -> InvoiceFacts:
    """The invoice, locked for the rest of the transaction, before deciding how much of a
    payment it takes. Invoicing locks the invoice before the ledger accounts (credit notes,
    write-offs); payments does the same, so the two never wait on each other in a cycle.
    (``invoicing.service`` has no public lock; ``lifecycle.load`` is what its own writes use.)"""
    row: Invoice = load_invoice(tx, invoice_id, for_update=True)
    return InvoiceFacts(
        id=row.id,
        number=row.number,
        customer_id=row.customer_id,
        subscription_id=row.subscription_id,
        currency=row.currency,
        status=str(row.status),
        amount_due_minor=row.amount_due_minor,
        amount_remaining_minor=row.amount_remaining_minor,
        amount_written_off_minor=row.amount_written_off_minor,
    )


def record_payment(
    tx: Tx, invoice_id: str, *, payment_id: str, amount: Money, at: datetime
) -> None:
    invoicing.record_payment(
        tx,
        invoice_id,
        payment_id=payment_id,
        amount_minor=amount.amount_minor,
        currency=amount.currency,
        at=at,
    )


def mark_uncollectible(tx: Tx, invoice_id: str, *, reason: str) -> None:
    invoicing.mark_uncollectible(tx, invoice_id, reason=reason)
