"""Explaining an invoice down to the events behind each quantity.

For every line: what it bills (kind, price, plan version), the service window, the meter and
its aggregation, the measured quantity, the included quantity used, the billable quantity, the
tiers / unit price / packages applied with their amounts (rating's breakdown), usage credits
burned (which grants, how many units), what earlier invoices billed for the same line (interim
threshold invoices, the original of an adjusted period), and where to list the events that make
up the quantity (``GET /v1/invoices/{id}/lines/{line}/events``, cursor-paginated).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from tallybook.catalog import plans
from tallybook.db import Tx
from tallybook.invoicing import repository
from tallybook.invoicing.errors import InvoiceCode
from tallybook.invoicing.service.lifecycle import get_invoice
from tallybook.invoicing.views import InvoiceView, LineView
from tallybook.kit.errors import InvalidRequest, NotFound
from tallybook.metering import service as metering

EVENTS_PAGES_MAX: Final = 20


@dataclass(frozen=True, slots=True)
class LineExplanation:
    line: LineView
    meter: dict[str, Any] | None
    window: tuple[datetime, datetime]
    quantity: Decimal | None
    included_quantity: Decimal | None
    included_applied: Decimal | None
    billable_quantity: Decimal | None
    model: str | None
    pricing: dict[str, Any]
    usage_credits: list[dict[str, Any]]
    previously_billed: dict[str, Any] | None
    events_url: str | None
    adjusts: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class InvoiceExplanation:
    invoice: InvoiceView
    lines: tuple[LineExplanation, ...]


def _decimal(value: Any) -> Decimal | None:
    return Decimal(str(value)) if value is not None else None


def events_window(invoice: InvoiceView, line: LineView) -> tuple[datetime, datetime]:
    """The window whose events make up the line's quantity (an interim threshold invoice
    measured up to its own end)."""
    end = line.service_end
    if invoice.kind == "threshold":
        end = min(end, invoice.period_end)
    return line.service_start, end


def explain_invoice(tx: Tx, invoice_id: str) -> InvoiceExplanation:
    invoice = get_invoice(tx, invoice_id)
    meters: dict[str, Any] = {}
    explained = []
    for line in invoice.lines:
        breakdown = line.breakdown
        meter = None
        if line.meter_id is not None:
            if line.meter_id not in meters:
                row = metering.get_meter(tx, line.meter_id)
                meters[line.meter_id] = {
                    "id": row.id,
                    "key": row.key,
                    "version": row.version,
                    "name": row.name,
                    "unit": row.unit,
                    "aggregation": row.aggregation,
                    "event_type": row.event_type,
                }
            meter = meters[line.meter_id]
        pricing: dict[str, Any] = {
            key: breakdown[key]
            for key in (
                "unit_price",
                "tiers",
                "packages",
                "package_size",
                "package_price",
                "package_rounding",
                "max_charge_minor",
                "cap",
                "capped",
                "proration",
                "exact_amount",
                "rounding",
                "fee_minor",
                "commitment_minor",
                "charged_minor",
            )
            if key in breakdown
        }
        credits = [
            c
            for c in invoice.credits
            if c.get("type") == "units" and c.get("line_key") == line.line_key
        ]
        adjusts = None
        if line.kind == "adjustment":
            adjusts = {
                "kind": breakdown.get("adjusts"),
                "period_id": line.period_id,
                "late_event_seqs": breakdown.get("late_event_seqs", []),
            }
        has_events = line.meter_id is not None and invoice.id is not None and line.id is not None
        explained.append(
            LineExplanation(
                line=line,
                meter=meter,
                window=events_window(invoice, line),
                quantity=_decimal(breakdown.get("measured_quantity", line.quantity)),
                included_quantity=_decimal(breakdown.get("included_quantity")),
                included_applied=_decimal(breakdown.get("included_applied")),
                billable_quantity=_decimal(breakdown.get("billable_quantity")),
                model=breakdown.get("model"),
                pricing=pricing,
                usage_credits=credits,
                previously_billed=breakdown.get("previously_billed"),
                events_url=(
                    f"/v1/invoices/{invoice.id}/lines/{line.id}/events" if has_events else None
                ),
                adjusts=adjusts,
            )
        )
    return InvoiceExplanation(invoice, tuple(explained))


def line_events(
    tx: Tx, invoice_id: str, line_id: str, *, after: str | None = None, limit: int = 100
) -> metering.EventPage:
    """The events that make up a usage line's quantity (restricted to its price's group
    filter), in (time, seq) order; continue with ``after`` = ``next_cursor``."""
    invoice = get_invoice(tx, invoice_id)
    line = next((item for item in invoice.lines if item.id == line_id), None)
    if line is None:
        raise NotFound("invoice line", line_id, param="line")
    if line.meter_id is None:
        raise InvalidRequest(
            InvoiceCode.NOTHING_TO_BILL, f"line {line_id} is not a usage line", param="line"
        )
    group_filter = _group_filter(tx, line)
    start, end = events_window(invoice, line)
    collected: list[metering.MeteredEvent] = []
    cursor = after
    has_more = False
    for _ in range(EVENTS_PAGES_MAX):
        page = metering.list_events(
            tx,
            meter_id=line.meter_id,
            customer_id=invoice.customer_id,
            start=start,
            end=end,
            after=cursor,
            limit=limit,
        )
        for event in page.data:
            if all(event.dims.get(name) == value for name, value in group_filter):
                collected.append(event)
        cursor, has_more = page.next_cursor, page.has_more
        if len(collected) >= limit or not has_more:
            break
    return metering.EventPage(
        data=collected, has_more=has_more, next_cursor=cursor if has_more else None
    )


def _group_filter(tx: Tx, line: LineView) -> tuple[tuple[str, str], ...]:
    if line.plan_version_id is None or line.price_id is None:
        return ()
    terms = plans.version_terms(tx, line.plan_version_id)
    for price in terms.prices:
        if price.id == line.price_id:
            return price.group_filter
    return ()


def invoice_lines_exist(tx: Tx, invoice_id: str) -> bool:
    return bool(repository.lines_of(tx, invoice_id))
