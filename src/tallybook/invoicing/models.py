"""Invoicing tables.

- ``invoicing_invoices``: one invoice per (subscription, period, kind, sequence): the unique
  constraint is what makes two workers unable to bill one period twice. Amounts are integer
  minor units; ``docs/invoicing.md`` defines each total.
- ``invoicing_invoice_lines``: its lines. ``line_key`` names what a line bills (a period's
  price in a phase, a pending charge): lines with the same key on several invoices (an interim
  threshold invoice and the final one, a late-usage adjustment) add up to what was billed for
  it. Lines of a finalized invoice never change (a database trigger refuses it).
- ``invoicing_payments``: payments recorded against invoices (idempotent by payment id).
- ``invoicing_credit_notes`` / ``invoicing_credit_note_lines``: corrections of finalized
  invoices, in full or per line.
- ``invoicing_number_series``: the gap-free counters (``TB-2026`` → next number), locked in
  the finalizing transaction.
- ``invoicing_billing_thresholds``: per-customer threshold overrides.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, DecimalType, JSONType, UTCDateTime


class Invoice(Base):
    __tablename__ = "invoicing_invoices"
    __table_args__ = (
        # One invoice per billing moment: two workers can never bill one period twice.
        UniqueConstraint("subscription_id", "period_id", "kind", "sequence"),
        Index("ix_invoicing_invoices_customer", "customer_id", "id"),
        Index("ix_invoicing_invoices_subscription", "subscription_id", "id"),
        Index("ix_invoicing_invoices_period", "period_id"),
        Index("ix_invoicing_invoices_status", "status", "id"),
        CheckConstraint(
            "status IN ('draft', 'open', 'paid', 'void', 'uncollectible')", name="status"
        ),
        CheckConstraint("kind IN ('opening', 'cycle', 'threshold', 'update')", name="kind"),
        CheckConstraint("status = 'draft' OR number IS NOT NULL", name="numbered"),
        CheckConstraint(
            "amount_due_minor >= 0 AND credits_applied_minor >= 0 AND balance_carried_minor >= 0",
            name="amounts",
        ),
        CheckConstraint(
            "total_minor = subtotal_minor - discount_minor "
            "AND amount_due_minor = total_minor + balance_carried_minor - credits_applied_minor",
            name="totals",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    subscription_id: Mapped[str] = mapped_column(String(40))
    #: The billing period this invoice closes (cycle), accrues (threshold) or opens (opening).
    period_id: Mapped[str] = mapped_column(String(40))
    #: opening | cycle | threshold | update
    kind: Mapped[str] = mapped_column(String(16))
    #: 0, or the n-th threshold (or immediate update) invoice of the period.
    sequence: Mapped[int] = mapped_column(Integer)
    #: draft | open | paid | void | uncollectible
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    number: Mapped[str | None] = mapped_column(String(40), nullable=True, unique=True)
    #: The service window the invoice covers.
    period_start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    subtotal_minor: Mapped[int] = mapped_column(BigInteger)
    discount_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    #: Monetary credit grants plus customer balance applied to the total.
    credits_applied_minor: Mapped[int] = mapped_column(BigInteger)
    #: Of which from the customer balance.
    balance_applied_minor: Mapped[int] = mapped_column(BigInteger)
    #: A negative total is owed to the customer: carried to their balance.
    balance_carried_minor: Mapped[int] = mapped_column(BigInteger)
    amount_due_minor: Mapped[int] = mapped_column(BigInteger)
    amount_paid_minor: Mapped[int] = mapped_column(BigInteger)
    #: Credit notes that reduced what is owed (the receivable part of each).
    amount_credited_minor: Mapped[int] = mapped_column(BigInteger)
    amount_written_off_minor: Mapped[int] = mapped_column(BigInteger)
    #: Discounts applied: [{redemption_id, code, percent_off, amount_off_minor, amount_minor}]
    discounts: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    #: Credits applied: [{type: money|units|balance, grant_id, amount_minor, quantity, meter_id}]
    credits: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    #: SHA-256 of the canonical JSON of lines and totals: re-rating reproduces it.
    content_hash: Mapped[str] = mapped_column(String(64))
    #: Late events billed here: [{seq, period_id}] (provenance of adjustment lines).
    late_events: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    status_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    marked_uncollectible_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    @property
    def amount_remaining_minor(self) -> int:
        """What the customer still owes on it."""
        if self.status in ("draft", "void"):
            return 0
        return max(
            0,
            self.amount_due_minor
            - self.amount_paid_minor
            - self.amount_credited_minor
            - self.amount_written_off_minor,
        )


class InvoiceLine(Base):
    __tablename__ = "invoicing_invoice_lines"
    __table_args__ = (
        Index("ix_invoicing_invoice_lines_invoice", "invoice_id", "position"),
        Index("ix_invoicing_invoice_lines_period_key", "period_id", "line_key"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoicing_invoices.id"))
    position: Mapped[int] = mapped_column(Integer)
    #: fee_advance | fee_arrears | usage | proration_credit | proration_charge |
    #: minimum_true_up | adjustment
    kind: Mapped[str] = mapped_column(String(24))
    #: rated (period rating) | charge (a subscription's pending charge) | adjustment (late usage)
    source: Mapped[str] = mapped_column(String(16))
    line_key: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(500))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    #: The measured quantity (usage lines), before usage credits.
    quantity: Mapped[Decimal | None] = mapped_column(DecimalType(), nullable=True)
    #: Units of usage credits this line burned.
    usage_credit_quantity: Mapped[Decimal] = mapped_column(DecimalType())
    price_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    price_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    meter_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    plan_version_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    phase_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: The billing period the line belongs to (an adjustment: the invoiced period it corrects).
    period_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    charge_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    service_start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    service_end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    breakdown: Mapped[dict[str, Any]] = mapped_column(JSONType)


class InvoicePayment(Base):
    __tablename__ = "invoicing_payments"

    payment_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoicing_invoices.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CreditNote(Base):
    __tablename__ = "invoicing_credit_notes"
    __table_args__ = (
        Index("ix_invoicing_credit_notes_invoice", "invoice_id", "id"),
        Index("ix_invoicing_credit_notes_customer", "customer_id", "id"),
        CheckConstraint(
            "amount_minor > 0 AND receivable_minor >= 0 AND balance_minor >= 0 "
            "AND amount_minor = receivable_minor + balance_minor",
            name="amounts",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoicing_invoices.id"))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    number: Mapped[str] = mapped_column(String(40), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    #: The part that reduced what the invoice still owed.
    receivable_minor: Mapped[int] = mapped_column(BigInteger)
    #: The rest (already paid), credited to the customer's balance.
    balance_minor: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(40))
    memo: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CreditNoteLine(Base):
    __tablename__ = "invoicing_credit_note_lines"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    credit_note_id: Mapped[str] = mapped_column(ForeignKey("invoicing_credit_notes.id"), index=True)
    invoice_line_id: Mapped[str] = mapped_column(
        ForeignKey("invoicing_invoice_lines.id"), index=True
    )
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(String(500))


class NumberSeries(Base):
    """A gap-free counter: the finalizing transaction takes numbers from it under a row lock,
    so a rolled-back finalization gives its numbers back."""

    __tablename__ = "invoicing_number_series"

    series: Mapped[str] = mapped_column(String(40), primary_key=True)
    next_number: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BillingThreshold(Base):
    """A per-customer threshold overriding the plan version's ``billing_threshold_minor``
    (``amount_minor`` NULL turns threshold billing off for the customer)."""

    __tablename__ = "invoicing_billing_thresholds"

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    amount_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
