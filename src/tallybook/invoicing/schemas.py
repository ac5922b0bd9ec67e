"""API shapes of invoices, credit notes and explanations."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tallybook.invoicing.explain import InvoiceExplanation, LineExplanation
from tallybook.invoicing.service import CreditLine
from tallybook.invoicing.views import CreditNoteView, InvoiceView, LineView
from tallybook.kit.quantity import quantity_text


def _q(value: Any) -> str | None:
    return quantity_text(value) if value is not None else None


class InvoiceLineOut(BaseModel):
    object: Literal["line_item"] = "line_item"
    id: str | None = Field(description="null on a preview")
    kind: str = Field(
        description="fee_advance, fee_arrears, usage, proration_credit, proration_charge, "
        "minimum_true_up or adjustment (late usage of an invoiced period)"
    )
    source: str = Field(description="rated, charge or adjustment")
    description: str
    currency: str
    amount_minor: int
    quantity: str | None = Field(description="Measured quantity (usage lines), before credits")
    usage_credit_quantity: str
    price: str | None
    price_key: str | None
    meter: str | None
    plan_version: str | None
    phase: str | None
    period: str | None
    charge: str | None
    service_start_at: datetime
    service_end_at: datetime
    breakdown: dict[str, Any] = Field(
        description="How the amount was computed (rating's breakdown)"
    )

    @classmethod
    def of(cls, line: LineView) -> InvoiceLineOut:
        return cls(
            id=line.id,
            kind=line.kind,
            source=line.source,
            description=line.description,
            currency=line.currency,
            amount_minor=line.amount_minor,
            quantity=_q(line.quantity),
            usage_credit_quantity=quantity_text(line.usage_credit_quantity),
            price=line.price_id,
            price_key=line.price_key,
            meter=line.meter_id,
            plan_version=line.plan_version_id,
            phase=line.phase_id,
            period=line.period_id,
            charge=line.charge_id,
            service_start_at=line.service_start,
            service_end_at=line.service_end,
            breakdown=line.breakdown,
        )


class InvoiceOut(BaseModel):
    object: Literal["invoice"] = "invoice"
    id: str | None = Field(description="null on a preview")
    number: str | None = Field(
        description="Gap-free per series, e.g. TB-2026-000123; null on drafts"
    )
    status: str = Field(description="draft, open, paid, void or uncollectible")
    kind: str = Field(description="opening, cycle, threshold or update")
    customer: str
    subscription: str
    period: str
    currency: str
    period_start_at: datetime
    period_end_at: datetime
    subtotal_minor: int = Field(description="Sum of the lines")
    discount_minor: int
    total_minor: int = Field(description="subtotal − discount")
    credits_applied_minor: int = Field(description="Monetary credit grants + customer balance")
    balance_applied_minor: int
    balance_carried_minor: int = Field(description="A negative total, credited to the balance")
    amount_due_minor: int
    amount_paid_minor: int
    amount_credited_minor: int = Field(description="Credit notes that reduced what is owed")
    amount_written_off_minor: int
    amount_remaining_minor: int
    discounts: list[dict[str, Any]]
    credits: list[dict[str, Any]]
    late_events: list[dict[str, Any]]
    content_hash: str
    status_reason: str | None
    created_at: datetime | None
    finalized_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    marked_uncollectible_at: datetime | None
    lines: list[InvoiceLineOut]

    @classmethod
    def of(cls, invoice: InvoiceView) -> InvoiceOut:
        return cls(
            id=invoice.id,
            number=invoice.number,
            status=invoice.status,
            kind=invoice.kind,
            customer=invoice.customer_id,
            subscription=invoice.subscription_id,
            period=invoice.period_id,
            currency=invoice.currency,
            period_start_at=invoice.period_start,
            period_end_at=invoice.period_end,
            subtotal_minor=invoice.subtotal_minor,
            discount_minor=invoice.discount_minor,
            total_minor=invoice.total_minor,
            credits_applied_minor=invoice.credits_applied_minor,
            balance_applied_minor=invoice.balance_applied_minor,
            balance_carried_minor=invoice.balance_carried_minor,
            amount_due_minor=invoice.amount_due_minor,
            amount_paid_minor=invoice.amount_paid_minor,
            amount_credited_minor=invoice.amount_credited_minor,
            amount_written_off_minor=invoice.amount_written_off_minor,
            amount_remaining_minor=invoice.amount_remaining_minor,
            discounts=invoice.discounts,
            credits=invoice.credits,
            late_events=invoice.late_events,
            content_hash=invoice.content_hash,
            status_reason=invoice.status_reason,
            created_at=invoice.created_at,
            finalized_at=invoice.finalized_at,
            paid_at=invoice.paid_at,
            voided_at=invoice.voided_at,
            marked_uncollectible_at=invoice.marked_uncollectible_at,
            lines=[InvoiceLineOut.of(line) for line in invoice.lines],
        )


class LineExplanationOut(BaseModel):
    object: Literal["line_explanation"] = "line_explanation"
    line: InvoiceLineOut
    meter: dict[str, Any] | None
    window_start_at: datetime
    window_end_at: datetime
    quantity: str | None
    included_quantity: str | None
    included_applied: str | None
    billable_quantity: str | None
    model: str | None
    pricing: dict[str, Any] = Field(
        description="Tiers, unit price or packages, cap, proration, rounding"
    )
    usage_credits: list[dict[str, Any]]
    previously_billed: dict[str, Any] | None
    adjusts: dict[str, Any] | None
    events_url: str | None = Field(description="The events that make up the quantity")

    @classmethod
    def of(cls, item: LineExplanation) -> LineExplanationOut:
        return cls(
            line=InvoiceLineOut.of(item.line),
            meter=item.meter,
            window_start_at=item.window[0],
            window_end_at=item.window[1],
            quantity=_q(item.quantity),
            included_quantity=_q(item.included_quantity),
            included_applied=_q(item.included_applied),
            billable_quantity=_q(item.billable_quantity),
            model=item.model,
            pricing=item.pricing,
            usage_credits=item.usage_credits,
            previously_billed=item.previously_billed,
            adjusts=item.adjusts,
            events_url=item.events_url,
        )


class InvoiceExplanationOut(BaseModel):
    object: Literal["invoice_explanation"] = "invoice_explanation"
    invoice: InvoiceOut
    lines: list[LineExplanationOut]

    @classmethod
    def of(cls, explanation: InvoiceExplanation) -> InvoiceExplanationOut:
        return cls(
            invoice=InvoiceOut.of(explanation.invoice),
            lines=[LineExplanationOut.of(line) for line in explanation.lines],
        )


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)


class CreditNoteLineBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line: str = Field(description="An invoice line id (il_…)")
    amount_minor: int


class CreditNoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoice: str
    lines: list[CreditNoteLineBody] | None = Field(
        None, max_length=500, description="Lines to credit; omit to credit the whole invoice"
    )
    reason: str = Field(
        "billing_error",
        description="duplicate, fraudulent, order_change, product_unsatisfactory, "
        "billing_error or goodwill",
    )
    memo: str | None = Field(None, max_length=500)

    def credit_lines(self) -> list[CreditLine] | None:
        if self.lines is None:
            return None
        return [CreditLine(item.line, item.amount_minor) for item in self.lines]


class CreditNoteLineOut(BaseModel):
    object: Literal["credit_note_line"] = "credit_note_line"
    id: str
    invoice_line: str
    amount_minor: int
    description: str


class CreditNoteOut(BaseModel):
    object: Literal["credit_note"] = "credit_note"
    id: str
    number: str
    invoice: str
    customer: str
    currency: str
    amount_minor: int
    receivable_minor: int = Field(description="Reduced what the invoice still owed")
    balance_minor: int = Field(description="Credited to the customer's balance (already paid)")
    reason: str
    memo: str | None
    created_at: datetime
    lines: list[CreditNoteLineOut]

    @classmethod
    def of(cls, note: CreditNoteView) -> CreditNoteOut:
        return cls(
            id=note.id,
            number=note.number,
            invoice=note.invoice_id,
            customer=note.customer_id,
            currency=note.currency,
            amount_minor=note.amount_minor,
            receivable_minor=note.receivable_minor,
            balance_minor=note.balance_minor,
            reason=note.reason,
            memo=note.memo,
            created_at=note.created_at,
            lines=[
                CreditNoteLineOut(
                    id=line.id,
                    invoice_line=line.invoice_line_id,
                    amount_minor=line.amount_minor,
                    description=line.description,
                )
                for line in note.lines
            ],
        )


class ThresholdBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: int | None = Field(
        description="Invoice early once accrued usage reaches this; null turns it off for the "
        "customer (whatever the plan says)"
    )


class ThresholdOut(BaseModel):
    object: Literal["billing_threshold"] = "billing_threshold"
    customer: str
    amount_minor: int | None
    source: str = Field(description="customer (an override) or none")
