"""Invoice assembly: a pure function from explicit inputs to lines, totals and a content hash.

:func:`assemble` takes everything an invoice depends on (the periods to rate with their usage
quantities and plan versions, what earlier invoices already billed for each line, the pending
charges, discount terms, credit sources behind a :class:`Burner`, the customer balance, the
clock instant) and returns the invoice. Preview, draft refresh and finalization all call it, so
finalizing gives exactly what the preview showed, and re-rating a finalized invoice from the
same inputs reproduces its content hash.

Order of operations (``docs/invoicing.md`` has the worked example):

1. **Rating** each period (:func:`tallybook.rating.rate_subscription_period`).
2. **Usage credits** reduce each usage line's billable quantity (after the included quantity)
   before pricing: the line is rated a second time on the measured quantity less the credited
   units, so tiers apply to what is really billed.
3. **Diffs** against what earlier invoices billed for the same line (``line_key``): an interim
   threshold invoice, or the original invoice of a period corrected by late usage. The final
   invoice of a period bills the rated amount less what interim invoices billed, so interim
   plus final equals one undivided invoice, to the cent, tiers included.
4. **Pending charges** (in-advance fees, prorations) as recorded by subscriptions.
5. **Discounts** on the subtotal (percentages cumulative over the period's invoices, so they
   too add up to the undivided invoice's discount).
6. **Monetary credits**, then the **customer balance**, reduce the amount due. A negative total
   (more credit than charges) is carried to the customer's balance; nothing is due.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, Literal, Protocol

import orjson

from tallybook.catalog.pricing import PriceDef, PriceType
from tallybook.kit.hashing import content_hash
from tallybook.kit.hashing import json_default as _json_default_kit
from tallybook.kit.invariant import invariant
from tallybook.kit.money import Money, round_to_minor
from tallybook.kit.quantity import quantity_display, quantity_text
from tallybook.rating import (
    BillingPeriod,
    LineKind,
    RatedLine,
    RatingPhase,
    rate_subscription_period,
)
from tallybook.rating.arithmetic import EXACT, minor_to_major

ZERO: Final = Decimal(0)
ADJUSTMENT: Final = "adjustment"
#: Lines per invoice (a period has at most 50 prices per phase; adjustments and charges add).
LINES_MAX: Final = 2_000


class InvoiceKind(StrEnum):
    #: The in-advance fees of a period that opened without an earlier period to close (the
    #: first period, after a trial, after a pause).
    OPENING = "opening"
    #: The close of an ended period: its usage, in-arrears fees and minimum true-up, late
    #: adjustments of earlier periods, and the next period's in-advance fees.
    CYCLE = "cycle"
    #: An interim invoice of accrued usage once it passed the billing threshold.
    THRESHOLD = "threshold"
    #: Charges a plan change asked to invoice at once (``invoice_now``).
    UPDATE = "update"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    #: Finalized, numbered, not yet paid.
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


#: Statuses of finalized invoices (what was billed).
FINALIZED: Final = frozenset(
    {InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE}
)


class LineSource(StrEnum):
    RATED = "rated"
    CHARGE = "charge"
    ADJUSTMENT = "adjustment"


# Inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prior:
    """What earlier finalized invoices billed for one line key."""

    amount_minor: int = 0
    usage_credit_quantity: Decimal = ZERO
    #: The measured quantity the latest of them billed (usage lines).
    quantity: Decimal | None = None
    invoice_ids: tuple[str, ...] = ()


Role = Literal["close", "accrued", "adjustment"]


@dataclass(frozen=True, slots=True)
class PeriodToRate:
    """One period to rate on this invoice, with the quantities measured for it.

    ``role``: ``close`` (the period ended: every line), ``accrued`` (an open period's usage so
    far, for a threshold invoice: usage lines only) or ``adjustment`` (an invoiced period
    re-rated with late usage: only the differences, as adjustment lines)."""

    period_id: str
    billing_period: BillingPeriod
    phases: tuple[RatingPhase, ...]
    quantities: Mapping[tuple[str, str], Decimal]
    advance_charged_minor: int
    role: Role
    priors: Mapping[str, Prior] = field(default_factory=dict)
    #: Late events behind an adjustment (provenance).
    late_event_seqs: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ChargeInput:
    """A subscription's pending charge (in-advance fee, proration) as recorded."""

    id: str
    kind: str
    description: str
    currency: str
    amount_minor: int
    period_id: str
    service_start: datetime
    service_end: datetime
    price_id: str | None = None
    price_key: str | None = None
    plan_version_id: str | None = None
    breakdown: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DiscountTerm:
    """A promotion's discount for this invoice's period: ``percent_off`` (0–100) or
    ``amount_off_minor``, with what earlier invoices of the same period already discounted."""

    redemption_id: str
    code: str
    percent_off: Decimal | None = None
    amount_off_minor: int | None = None
    currency: str | None = None
    prior_discount_minor: int = 0
    #: The grants domain's own object, handed back when recording the use.
    source: Any = None


@dataclass(frozen=True, slots=True)
class UnitDemand:
    """Billable units of a meter a line could pay with usage credits."""

    index: int
    meter_id: str
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class UnitCredit:
    demand_index: int
    grant_id: str
    meter_id: str
    quantity: Decimal
    source: Any = None


@dataclass(frozen=True, slots=True)
class MoneyCredit:
    grant_id: str
    amount_minor: int
    source: Any = None


class Burner(Protocol):
    """Burn-down of the customer's credit grants (grants' priority, expiry, age order)."""

    def units(self, demands: Sequence[UnitDemand]) -> list[UnitCredit]: ...

    def money(self, amount: Money) -> list[MoneyCredit]: ...


class NoCredits:
    """A burner for a customer without credit grants (or a preview without them)."""

    def units(self, demands: Sequence[UnitDemand]) -> list[UnitCredit]:
        return []

    def money(self, amount: Money) -> list[MoneyCredit]:
        return []


@dataclass(frozen=True, slots=True)
class AssemblyRequest:
    currency: str
    kind: InvoiceKind
    periods: tuple[PeriodToRate, ...] = ()
    charges: tuple[ChargeInput, ...] = ()
    discounts: tuple[DiscountTerm, ...] = ()
    #: Subtotals of earlier finalized invoices of the same period (interim threshold invoices):
    #: percentage discounts are cumulative over them.
    prior_period_subtotal_minor: int = 0
    #: What the customer's balance holds (money we owe them), applied after credit grants.
    balance_available_minor: int = 0


# Outputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineDraft:
    kind: str
    source: LineSource
    line_key: str
    description: str
    currency: str
    amount_minor: int
    service_start: datetime
    service_end: datetime
    quantity: Decimal | None = None
    usage_credit_quantity: Decimal = ZERO
    price_id: str | None = None
    price_key: str | None = None
    meter_id: str | None = None
    plan_version_id: str | None = None
    phase_id: str | None = None
    period_id: str | None = None
    charge_id: str | None = None
    breakdown: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": str(self.source),
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
            "breakdown": dict(self.breakdown),
        }


@dataclass(frozen=True, slots=True)
class AppliedDiscount:
    redemption_id: str
    code: str
    percent_off: Decimal | None
    amount_off_minor: int | None
    amount_minor: int
    source: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "redemption_id": self.redemption_id,
            "code": self.code,
            "percent_off": self.percent_off,
            "amount_off_minor": self.amount_off_minor,
            "amount_minor": self.amount_minor,
        }


@dataclass(frozen=True, slots=True)
class Totals:
    """``subtotal`` (sum of lines) − ``discount`` = ``total``; credits and the customer balance
    reduce it to ``amount_due``; a negative total is carried to the balance instead."""

    subtotal_minor: int
    discount_minor: int
    total_minor: int
    credits_applied_minor: int
    balance_applied_minor: int
    balance_carried_minor: int
    amount_due_minor: int

    def to_dict(self) -> dict[str, int]:
        return {
            "subtotal_minor": self.subtotal_minor,
            "discount_minor": self.discount_minor,
            "total_minor": self.total_minor,
            "credits_applied_minor": self.credits_applied_minor,
            "balance_applied_minor": self.balance_applied_minor,
            "balance_carried_minor": self.balance_carried_minor,
            "amount_due_minor": self.amount_due_minor,
        }


@dataclass(frozen=True, slots=True)
class AssembledInvoice:
    currency: str
    kind: InvoiceKind
    lines: tuple[LineDraft, ...]
    discounts: tuple[AppliedDiscount, ...]
    unit_credits: tuple[UnitCredit, ...]
    money_credits: tuple[MoneyCredit, ...]
    totals: Totals
    content_hash: str

    @property
    def is_empty(self) -> bool:
        return not self.lines

    def credits_json(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = []
        for unit in self.unit_credits:
            result.append(
                {
                    "type": "units",
                    "grant_id": unit.grant_id,
                    "meter_id": unit.meter_id,
                    "quantity": unit.quantity,
                    "line_key": self.lines_by_demand.get(unit.demand_index, ""),
                }
            )
        for money in self.money_credits:
            result.append(
                {"type": "money", "grant_id": money.grant_id, "amount_minor": money.amount_minor}
            )
        if self.totals.balance_applied_minor:
            result.append({"type": "balance", "amount_minor": self.totals.balance_applied_minor})
        return result

    @property
    def lines_by_demand(self) -> dict[int, str]:
        return {
            index: line.line_key
            for index, line in enumerate(self.lines)
            if line.usage_credit_quantity
        }


# Assembly ---------------------------------------------------------------------------------


def line_key(period_id: str, phase_id: str | None, price: str | None, kind: str) -> str:
    """What a line bills: the same key on several invoices adds up to what was billed for it."""
    return f"{period_id}|{phase_id or '-'}|{price or '-'}|{kind}"


def charge_key(charge_id: str) -> str:
    return f"charge|{charge_id}"


def _prices(phases: Sequence[RatingPhase]) -> dict[tuple[str, str], tuple[RatingPhase, PriceDef]]:
    found = {}
    for phase in phases:
        for price in phase.terms.prices:
            if price.type == PriceType.USAGE:
                found[(phase.phase_id, price.id)] = (phase, price)
    return found


@dataclass(slots=True)
class _Rated:
    period: PeriodToRate
    line: RatedLine
    key: str
    measured: Decimal | None
    prior: Prior
    credited_total: Decimal = ZERO


def _rate(period: PeriodToRate, quantities: Mapping[tuple[str, str], Decimal]) -> list[RatedLine]:
    rated = rate_subscription_period(
        period.billing_period,
        period.phases,
        quantities,
        advance_charged_minor=period.advance_charged_minor,
    )
    lines = list(rated.lines)
    if period.role == "accrued":
        lines = [line for line in lines if line.kind == LineKind.USAGE]
    return lines


def _key_of(period: PeriodToRate, line: RatedLine) -> str:
    return line_key(period.period_id, line.phase_id, line.price_id or line.price_key, line.kind)


def _usage_lines(
    periods: Sequence[PeriodToRate], burner: Burner
) -> tuple[list[_Rated], list[UnitCredit]]:
    """Rate every period, burn usage credits on the billable units, rate again on what is left."""
    first: list[_Rated] = []
    for period in periods:
        for line in _rate(period, period.quantities):
            key = _key_of(period, line)
            measured = None
            if line.kind == LineKind.USAGE:
                measured = period.quantities[(line.phase_id or "", line.price_id or "")]
            first.append(_Rated(period, line, key, measured, period.priors.get(key, Prior())))
    demands = []
    for index, item in enumerate(first):
        if item.line.kind != LineKind.USAGE or item.line.meter_id is None:
            continue
        billable = Decimal(item.line.breakdown.get("billable_quantity", ZERO))
        wanted = EXACT.subtract(billable, item.prior.usage_credit_quantity)
        if wanted > 0:
            demands.append(UnitDemand(index, item.line.meter_id, wanted))
    credits = burner.units(demands) if demands else []
    if not credits and not any(item.prior.usage_credit_quantity for item in first):
        for item in first:
            item.credited_total = item.prior.usage_credit_quantity
        return first, []
    # Second pass: rate again with each usage line's measured quantity less all its credits.
    new_by_index: dict[int, Decimal] = {}
    for credit in credits:
        invariant(credit.quantity > 0, "a usage credit burns a positive quantity")
        new_by_index[credit.demand_index] = EXACT.add(
            new_by_index.get(credit.demand_index, ZERO), credit.quantity
        )
    for demand in demands:
        invariant(
            new_by_index.get(demand.index, ZERO) <= demand.quantity,
            "usage credits burned more than the billable quantity",
        )
    result: list[_Rated] = []
    for period in periods:
        reduced = dict(period.quantities)
        credited_by_key: dict[tuple[str, str], Decimal] = {}
        for index, item in enumerate(first):
            if item.period is not period or item.line.kind != LineKind.USAGE:
                continue
            total = EXACT.add(item.prior.usage_credit_quantity, new_by_index.get(index, ZERO))
            qkey = (item.line.phase_id or "", item.line.price_id or "")
            credited_by_key[qkey] = total
            if total:
                reduced[qkey] = max(ZERO, EXACT.subtract(reduced[qkey], total))
        for line in _rate(period, reduced):
            key = _key_of(period, line)
            qkey = (line.phase_id or "", line.price_id or "")
            measured = period.quantities[qkey] if line.kind == LineKind.USAGE else None
            item = _Rated(period, line, key, measured, period.priors.get(key, Prior()))
            item.credited_total = credited_by_key.get(qkey, ZERO) if measured is not None else ZERO
            result.append(item)
    return result, credits


def _describe(item: _Rated, prices: Mapping[tuple[str, str], tuple[RatingPhase, PriceDef]]) -> str:
    line = item.line
    if line.kind != LineKind.USAGE or item.measured is None:
        return line.description
    phase, price = prices[(line.phase_id or "", line.price_id or "")]
    unit = f" {price.meter_unit}" if price.meter_unit else ""
    text = f"{price.name}: {quantity_display(item.measured)}{unit} ({phase.terms.plan_name})"
    if item.credited_total:
        text += f", {quantity_display(item.credited_total)}{unit} paid with usage credits"
    return text


def _rated_drafts(rated: Sequence[_Rated]) -> list[LineDraft]:
    drafts: list[LineDraft] = []
    prices_by_period = {id(item.period): _prices(item.period.phases) for item in rated}
    for item in rated:
        line, prior, period = item.line, item.prior, item.period
        amount = line.amount_minor - prior.amount_minor
        new_credit = EXACT.subtract(item.credited_total, prior.usage_credit_quantity)
        has_prior = bool(prior.invoice_ids)
        if has_prior and amount == 0 and not new_credit:
            continue  # nothing changed since it was billed
        if period.role == "adjustment" and amount == 0 and not new_credit:
            continue
        breakdown: dict[str, Any] = dict(line.breakdown)
        description = _describe(item, prices_by_period[id(period)])
        if item.measured is not None:
            breakdown["measured_quantity"] = item.measured
            if item.credited_total:
                breakdown["usage_credit_quantity"] = item.credited_total
        if has_prior:
            breakdown["previously_billed"] = {
                "amount_minor": prior.amount_minor,
                "quantity": prior.quantity,
                "usage_credit_quantity": prior.usage_credit_quantity,
                "invoice_ids": list(prior.invoice_ids),
            }
            breakdown["rated_amount_minor"] = line.amount_minor
        kind = str(line.kind)
        source = LineSource.RATED
        if period.role == "adjustment":
            breakdown["adjusts"] = kind
            breakdown["late_event_seqs"] = list(period.late_event_seqs)
            kind, source = ADJUSTMENT, LineSource.ADJUSTMENT
            description = f"Late usage adjustment: {description}"
        elif has_prior:
            billed = f"{Money(prior.amount_minor, line.currency).format()} billed earlier"
            description = f"{description} (less {billed})"
        drafts.append(
            LineDraft(
                kind=kind,
                source=source,
                line_key=item.key,
                description=description[:500],
                currency=line.currency,
                amount_minor=amount,
                service_start=line.service_start,
                service_end=line.service_end,
                quantity=item.measured if item.measured is not None else line.quantity,
                usage_credit_quantity=new_credit,
                price_id=line.price_id,
                price_key=line.price_key,
                meter_id=line.meter_id,
                plan_version_id=line.plan_version_id,
                phase_id=line.phase_id,
                period_id=period.period_id,
                breakdown=breakdown,
            )
        )
    return drafts


def _withdrawn(
    periods: Sequence[PeriodToRate], rated: Sequence[_Rated], role: Role
) -> list[LineDraft]:
    """Lines billed before that rating no longer produces (a minimum true-up that late usage
    made unnecessary): each is taken back in full."""
    drafts: list[LineDraft] = []
    for period in periods:
        if period.role != role:
            continue
        produced = {item.key for item in rated if item.period is period}
        prefix = f"{period.period_id}|"
        for key in sorted(period.priors):
            prior = period.priors[key]
            if not key.startswith(prefix) or key in produced or prior.amount_minor == 0:
                continue
            _, phase_id, price, kind = key.split("|", 3)
            breakdown: dict[str, Any] = {
                "withdrawn": True,
                "previously_billed": {
                    "amount_minor": prior.amount_minor,
                    "quantity": prior.quantity,
                    "usage_credit_quantity": prior.usage_credit_quantity,
                    "invoice_ids": list(prior.invoice_ids),
                },
            }
            description = f"{kind.replace('_', ' ').capitalize()} no longer due"
            line_kind, source = kind, LineSource.RATED
            if role == "adjustment":
                breakdown["adjusts"] = kind
                breakdown["late_event_seqs"] = list(period.late_event_seqs)
                line_kind, source = ADJUSTMENT, LineSource.ADJUSTMENT
                description = f"Late usage adjustment: {description.lower()}"
            drafts.append(
                LineDraft(
                    kind=line_kind,
                    source=source,
                    line_key=key,
                    description=description,
                    currency=period.phases[0].terms.currency,
                    amount_minor=-prior.amount_minor,
                    service_start=period.billing_period.start,
                    service_end=period.billing_period.end,
                    phase_id=None if phase_id == "-" else phase_id,
                    price_key=None if price == "-" else price,
                    period_id=period.period_id,
                    breakdown=breakdown,
                )
            )
    return drafts


def _charge_draft(charge: ChargeInput) -> LineDraft:
    return LineDraft(
        kind=charge.kind,
        source=LineSource.CHARGE,
        line_key=charge_key(charge.id),
        description=charge.description[:500],
        currency=charge.currency,
        amount_minor=charge.amount_minor,
        service_start=charge.service_start,
        service_end=charge.service_end,
        price_id=charge.price_id,
        price_key=charge.price_key,
        plan_version_id=charge.plan_version_id,
        period_id=charge.period_id,
        charge_id=charge.id,
        breakdown=dict(charge.breakdown),
    )


def _discounts(request: AssemblyRequest, subtotal_minor: int) -> tuple[list[AppliedDiscount], int]:
    """Discounts are cumulative over the period's invoices: each term's discount for the
    period so far is computed on every invoice of the period together, and this invoice takes
    the difference with what earlier ones gave. So interim plus final invoices discount exactly
    what one undivided invoice would; a later invoice whose subtotal is negative (usage fell to
    a cheaper volume tier) gives back the share of discount it no longer earns."""
    room = max(0, request.prior_period_subtotal_minor + subtotal_minor)
    base_major = minor_to_major(room, request.currency)
    applied: list[AppliedDiscount] = []
    for term in request.discounts:
        if term.currency is not None and term.currency != request.currency:
            continue
        if term.percent_off is not None:
            invariant(0 <= term.percent_off <= 100, "percent_off must be within 0-100")
            share = EXACT.multiply(base_major, term.percent_off) / Decimal(100)
            wanted = round_to_minor(share, request.currency)
        else:
            invariant(term.amount_off_minor is not None, "a discount is a percent or an amount")
            wanted = term.amount_off_minor or 0
        cumulative = max(0, min(wanted, room))
        room -= cumulative
        applied.append(
            AppliedDiscount(
                redemption_id=term.redemption_id,
                code=term.code,
                percent_off=term.percent_off,
                amount_off_minor=term.amount_off_minor,
                amount_minor=cumulative - term.prior_discount_minor,
                source=term.source,
            )
        )
    return applied, sum(d.amount_minor for d in applied)


def assemble(request: AssemblyRequest, burner: Burner | None = None) -> AssembledInvoice:
    """The invoice for ``request`` (see the module docstring). Pure: no I/O, no clock."""
    burner = burner or NoCredits()
    currency = request.currency
    rated, unit_credits = _usage_lines(request.periods, burner)
    close = [r for r in rated if r.period.role != "adjustment"]
    adjustments = [r for r in rated if r.period.role == "adjustment"]
    lines = _rated_drafts(close) + _withdrawn(request.periods, rated, "close")
    lines += _rated_drafts(adjustments) + _withdrawn(request.periods, rated, "adjustment")
    lines += [_charge_draft(charge) for charge in request.charges]
    invariant(len(lines) <= LINES_MAX, f"an invoice holds at most {LINES_MAX} lines")
    invariant(all(line.currency == currency for line in lines), "invoice lines share a currency")
    # Unit credits point at the first-pass index; map them onto the line drafts by key.
    index_key = {i: r.key for i, r in enumerate(rated)}
    unit_credits = [
        replace(credit, demand_index=_line_index(lines, index_key.get(credit.demand_index, "")))
        for credit in unit_credits
    ]
    subtotal = sum((line.amount_minor for line in lines), start=0)
    discounts, discount_minor = _discounts(request, subtotal)
    total = subtotal - discount_minor
    money_credits: list[MoneyCredit] = []
    balance_applied = 0
    if total > 0:
        money_credits = list(burner.money(Money(total, currency)))
        credited = sum(credit.amount_minor for credit in money_credits)
        invariant(
            all(c.amount_minor > 0 for c in money_credits) and credited <= total,
            "monetary credits must be positive and never exceed the total",
        )
        balance_applied = max(0, min(request.balance_available_minor, total - credited))
    credits_applied = sum(c.amount_minor for c in money_credits) + balance_applied
    carried = max(0, -total)
    totals = Totals(
        subtotal_minor=subtotal,
        discount_minor=discount_minor,
        total_minor=total,
        credits_applied_minor=credits_applied,
        balance_applied_minor=balance_applied,
        balance_carried_minor=carried,
        amount_due_minor=max(total, 0) - credits_applied,
    )
    invariant(totals.amount_due_minor >= 0, "amount due went negative")
    invoice = AssembledInvoice(
        currency=currency,
        kind=request.kind,
        lines=tuple(lines),
        discounts=tuple(discounts),
        unit_credits=tuple(unit_credits),
        money_credits=tuple(money_credits),
        totals=totals,
        content_hash="",
    )
    return replace(invoice, content_hash=hash_of(invoice))


def _line_index(lines: Sequence[LineDraft], key: str) -> int:
    for index, line in enumerate(lines):
        if line.line_key == key:
            return index
    return -1


def canonical(invoice: AssembledInvoice) -> dict[str, Any]:
    """What the content hash covers: lines, discounts, credits and totals (no ids, numbers or
    timestamps of the invoice itself)."""
    return {
        "currency": invoice.currency,
        "kind": str(invoice.kind),
        "lines": [line.to_dict() for line in invoice.lines],
        "discounts": [d.to_dict() for d in invoice.discounts],
        "credits": invoice.credits_json(),
        "totals": invoice.totals.to_dict(),
    }


#: Decimal → JSON text, for the values that repeat across a batch's invoices (prices, tier
#: bounds). Equal Decimals have the same text, zero aside (``-0``), which is never cached.
_DECIMAL_TEXT: dict[Decimal, str] = {}
_DECIMAL_TEXT_MAX: Final = 4096


def _json_default(value: Any) -> Any:
    """``kit.hashing``'s JSON conversion, with Decimal texts remembered (same output)."""
    if type(value) is Decimal and value.is_finite() and not value.is_zero():
        text = _DECIMAL_TEXT.get(value)
        if text is None:
            if len(_DECIMAL_TEXT) >= _DECIMAL_TEXT_MAX:
                _DECIMAL_TEXT.clear()
            text = _DECIMAL_TEXT[value] = quantity_text(value)
        return text
    return _json_default_kit(value)


def jsonable(value: Any) -> Any:
    """``json_loads(json_dumps(value))`` of ``kit.hashing`` (Decimals as text, datetimes as
    RFC 3339 Z), faster for batches."""
    return orjson.loads(orjson.dumps(value, default=_json_default))


def json_text(value: Any) -> str:
    """``kit.hashing.json_dumps(value)``, faster for batches."""
    return orjson.dumps(value, default=_json_default).decode()


def hash_of(invoice: AssembledInvoice) -> str:
    """``kit.hashing.content_hash(canonical(invoice))``, faster for batches."""
    text = orjson.dumps(canonical(invoice), default=_json_default, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()


def stored_hash(
    *,
    currency: str,
    kind: str,
    lines: Sequence[Mapping[str, Any]],
    discounts: Sequence[Mapping[str, Any]],
    credits: Sequence[Mapping[str, Any]],
    totals: Mapping[str, int],
) -> str:
    """The content hash of an invoice as stored (the same canonical shape as :func:`canonical`)."""
    return content_hash(
        {
            "currency": currency,
            "kind": kind,
            "lines": list(lines),
            "discounts": list(discounts),
            "credits": list(credits),
            "totals": dict(totals),
        }
    )
