"""Plain values describing invoices and credit notes: what the service returns to other
domains (payments, console) and to the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tallybook.invoicing.models import CreditNote, CreditNoteLine, Invoice, InvoiceLine


@dataclass(frozen=True, slots=True)
class LineView:
    id: str | None
    position: int
    kind: str
    source: str
    line_key: str
    description: str
    currency: str
    amount_minor: int
    quantity: Decimal | None
    usage_credit_quantity: Decimal
    price_id: str | None
    price_key: str | None
    meter_id: str | None
    plan_version_id: str | None
    phase_id: str | None
    period_id: str | None
    charge_id: str | None
    service_start: datetime
    service_end: datetime
    breakdown: dict[str, Any]

    @classmethod
    def of(cls, row: InvoiceLine) -> LineView:
        return cls(
            id=row.id,
            position=row.position,
            kind=row.kind,
            source=row.source,
            line_key=row.line_key,
            description=row.description,
            currency=row.currency,
            amount_minor=row.amount_minor,
            quantity=row.quantity,
            usage_credit_quantity=row.usage_credit_quantity,
            price_id=row.price_id,
            price_key=row.price_key,
            meter_id=row.meter_id,
            plan_version_id=row.plan_version_id,
            phase_id=row.phase_id,
            period_id=row.period_id,
            charge_id=row.charge_id,
            service_start=row.service_start_at,
            service_end=row.service_end_at,
            breakdown=dict(row.breakdown),
        )

    def canonical(self) -> dict[str, Any]:
        """The line as the content hash sees it (``domain.LineDraft.to_dict``)."""
        return {
            "kind": self.kind,
            "source": self.source,
            "line_key": self.line_key,
            "description": self.description,
            "currency": self.currency,
            "amount_minor": self.amount_minor,
            "quantity": self.quantity,
            "usage_credit_quantity": self.usage_credit_quantity,
            "price_id": self.price_id,
            "price_key": self.price_key,
            "meter_id": self.meter_id,
            "plan_version_id": self.plan_version_id,
            "phase_id": self.phase_id,
            "period_id": self.period_id,
            "charge_id": self.charge_id,
            "service_start": self.service_start,
            "service_end": self.service_end,
            "breakdown": self.breakdown,
        }


@dataclass(frozen=True, slots=True)
class InvoiceView:
    id: str | None
    number: str | None
    status: str
    kind: str
    sequence: int
    customer_id: str
    subscription_id: str
    period_id: str
    currency: str
    period_start: datetime
    period_end: datetime
    subtotal_minor: int
    discount_minor: int
    total_minor: int
    credits_applied_minor: int
    balance_applied_minor: int
    balance_carried_minor: int
    amount_due_minor: int
    amount_paid_minor: int
    amount_credited_minor: int
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
    lines: tuple[LineView, ...]

    @classmethod
    def of(cls, row: Invoice, lines: list[InvoiceLine]) -> InvoiceView:
        return cls(
            id=row.id,
            number=row.number,
            status=row.status,
            kind=row.kind,
            sequence=row.sequence,
            customer_id=row.customer_id,
            subscription_id=row.subscription_id,
            period_id=row.period_id,
            currency=row.currency,
            period_start=row.period_start_at,
            period_end=row.period_end_at,
            subtotal_minor=row.subtotal_minor,
            discount_minor=row.discount_minor,
            total_minor=row.total_minor,
            credits_applied_minor=row.credits_applied_minor,
            balance_applied_minor=row.balance_applied_minor,
            balance_carried_minor=row.balance_carried_minor,
            amount_due_minor=row.amount_due_minor,
            amount_paid_minor=row.amount_paid_minor,
            amount_credited_minor=row.amount_credited_minor,
            amount_written_off_minor=row.amount_written_off_minor,
            amount_remaining_minor=row.amount_remaining_minor,
            discounts=list(row.discounts),
            credits=list(row.credits),
            late_events=list(row.late_events),
            content_hash=row.content_hash,
            status_reason=row.status_reason,
            created_at=row.created_at,
            finalized_at=row.finalized_at,
            paid_at=row.paid_at,
            voided_at=row.voided_at,
            marked_uncollectible_at=row.marked_uncollectible_at,
            lines=tuple(LineView.of(line) for line in lines),
        )


@dataclass(frozen=True, slots=True)
class CreditNoteLineView:
    id: str
    invoice_line_id: str
    amount_minor: int
    description: str

    @classmethod
    def of(cls, row: CreditNoteLine) -> CreditNoteLineView:
        return cls(row.id, row.invoice_line_id, row.amount_minor, row.description)


@dataclass(frozen=True, slots=True)
class CreditNoteView:
    id: str
    number: str
    invoice_id: str
    customer_id: str
    currency: str
    amount_minor: int
    receivable_minor: int
    balance_minor: int
    reason: str
    memo: str | None
    created_at: datetime
    lines: tuple[CreditNoteLineView, ...]

    @classmethod
    def of(cls, row: CreditNote, lines: list[CreditNoteLine]) -> CreditNoteView:
        return cls(
            id=row.id,
            number=row.number,
            invoice_id=row.invoice_id,
            customer_id=row.customer_id,
            currency=row.currency,
            amount_minor=row.amount_minor,
            receivable_minor=row.receivable_minor,
            balance_minor=row.balance_minor,
            reason=row.reason,
            memo=row.memo,
            created_at=row.created_at,
            lines=tuple(CreditNoteLineView.of(line) for line in lines),
        )
