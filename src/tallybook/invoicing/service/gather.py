"""Gathering an invoice's inputs: rating inputs, usage, what was billed before, pending
charges, late events, discounts, credits and the customer balance. Then the pure assembly.

Everything here reads; nothing is written. :mod:`.billing` writes the result (finalizing or
drafting), :mod:`.preview` only shows it. Both go through :func:`prepare`, so a preview is
exactly what finalizing at the same instant produces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from tallybook.db import Tx
from tallybook.invoicing import bulk, postings, repository
from tallybook.invoicing import credits as credit_port
from tallybook.invoicing.domain import (
    FINALIZED,
    AssembledInvoice,
    AssemblyRequest,
    ChargeInput,
    DiscountTerm,
    InvoiceKind,
    MoneyCredit,
    NoCredits,
    PeriodToRate,
    Prior,
    Role,
    UnitCredit,
    UnitDemand,
    assemble,
)
from tallybook.invoicing.models import Invoice
from tallybook.invoicing.usage import Measure, measure
from tallybook.kit.invariant import invariant
from tallybook.kit.money import Money
from tallybook.metering import service as metering
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.models import SubscriptionPeriod
from tallybook.subscriptions.service import PeriodRatingInput
from tallybook.subscriptions.views import PendingChargeView, PeriodView

LATE_EVENTS_PER_INVOICE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class BillingRequest:
    """Bill one moment of one subscription: ``kind`` of ``period_id``."""

    subscription_id: str
    period_id: str
    kind: InvoiceKind
    #: Threshold invoices: issue only once accrued usage reaches this amount.
    threshold_minor: int | None = None


@dataclass
class Prepared:
    """One invoice's inputs and its assembly (filled step by step by :func:`prepare`)."""

    request: BillingRequest
    customer_id: str
    currency: str
    period: PeriodView
    sequence: int
    draft: Invoice | None
    #: The instant this invoice is assembled at.
    at: datetime
    rating: PeriodRatingInput | None = None
    #: Indices into the batch's usage items for the closing period's requests.
    usage_slots: list[int] = field(default_factory=list)
    charges: list[PendingChargeView] = field(default_factory=list)
    #: (period rating input, late event seqs, usage slots) of invoiced periods to adjust.
    adjustments: list[tuple[PeriodRatingInput, tuple[int, ...], list[int]]] = field(
        default_factory=list
    )
    #: Late events of the closing period itself (in its usage already: marked billed here).
    late_in_period: list[int] = field(default_factory=list)
    discounts: list[DiscountTerm] = field(default_factory=list)
    prior_period_subtotal_minor: int = 0
    burner: Any = None
    balance_available_minor: int = 0
    assembled: AssembledInvoice | None = None
    #: Re-rating a finalized invoice: its own inputs as recorded (charges, late events,
    #: credits), and what was billed before it.
    rerate_of: Invoice | None = None

    @property
    def late_seqs(self) -> list[int]:
        seqs = list(self.late_in_period)
        for _, adjusted, _ in self.adjustments:
            seqs += list(adjusted)
        return sorted(set(seqs))


def start(
    tx: Tx,
    request: BillingRequest,
    *,
    at: datetime,
    period: PeriodView,
    existing: Sequence[Invoice],
) -> Prepared | None:
    """The frame of one invoice, or None when that moment is billed already."""
    subscription = subscriptions.get(tx, request.subscription_id)
    draft = None
    sequence = 0
    if request.kind in (InvoiceKind.CYCLE, InvoiceKind.OPENING):
        for invoice in existing:
            if invoice.status in FINALIZED:
                return None
            draft = invoice
    else:
        finalized = [i for i in existing if i.status in FINALIZED]
        drafts = [i for i in existing if i.status not in FINALIZED]
        draft = drafts[0] if drafts else None
        sequence = (
            draft.sequence
            if draft is not None
            else 1 + max((i.sequence for i in finalized), default=0)
        )
    return Prepared(
        request=request,
        customer_id=subscription.customer_id,
        currency=subscription.currency,
        period=period,
        sequence=sequence,
        draft=draft,
        at=at,
    )


def _usage_items(
    prepared: Prepared, rating: PeriodRatingInput, items: list[Measure], *, end_cap: datetime | None
) -> list[int]:
    slots = []
    for usage_request in rating.usage_requests:
        slots.append(len(items))
        items.append(Measure.of(rating.customer_id, usage_request, end_cap=end_cap))
    return slots


def _quantities(
    rating: PeriodRatingInput, slots: Sequence[int], values: Sequence[Decimal]
) -> dict[tuple[str, str], Decimal]:
    return {req.key: values[slot] for req, slot in zip(rating.usage_requests, slots, strict=True)}


def _classify_late(tx: Tx, prepared: Prepared, items: list[Measure]) -> None:
    """Split the customer's unbilled late events: those inside the period being closed are in
    its usage already; those in an earlier period this subscription invoiced become an
    adjustment of that period; the rest (another subscription's periods, a trial) stay."""
    records: list[metering.LateEventRecord] = []
    if prepared.rerate_of is not None:
        wanted = {int(item["seq"]) for item in prepared.rerate_of.late_events}
        after: int | None = None
        while wanted and len(records) < len(wanted):
            page = metering.list_late_events(
                tx,
                customer_id=prepared.customer_id,
                after_seq=after,
                include_billed=True,
                limit=1000,
            )
            if not page:
                break
            records += [r for r in page if r.seq in wanted]
            after = page[-1].seq
    else:
        through = metering.late_seq_max(tx, prepared.customer_id)
        if through is None:
            return
        after = None
        while len(records) < LATE_EVENTS_PER_INVOICE_MAX:
            page = metering.list_late_events(
                tx,
                customer_id=prepared.customer_id,
                after_seq=after,
                through_seq=through,
                limit=1000,
            )
            if not page:
                break
            records += page
            after = page[-1].seq
    period = prepared.period
    invoiced = repository.finalized_cycle_periods(tx, prepared.request.subscription_id)
    if prepared.rerate_of is not None:
        invoiced -= {prepared.rerate_of.period_id}
    others = [
        p
        for p in subscriptions.periods(tx, prepared.request.subscription_id)
        if p.id in invoiced and p.id != period.id
    ]
    by_period: dict[str, list[int]] = {}
    for record in records:
        if period.start_at <= record.time < period.end_at:
            prepared.late_in_period.append(record.seq)
            continue
        for other in others:
            if other.start_at <= record.time < other.end_at and other.id is not None:
                by_period.setdefault(other.id, []).append(record.seq)
                break
    for period_id in sorted(by_period):
        rating = subscriptions.period_rating_input(tx, period_id)
        slots = _usage_items(prepared, rating, items, end_cap=None)
        prepared.adjustments.append((rating, tuple(sorted(by_period[period_id])), slots))


def _charges(tx: Tx, prepared: Prepared) -> list[PendingChargeView]:
    kind = prepared.request.kind
    sub_id = prepared.request.subscription_id
    if prepared.rerate_of is not None:
        invoice_id = prepared.rerate_of.id
        return [c for c in subscriptions.charges(tx, sub_id) if c.invoice_id == invoice_id]
    if kind == InvoiceKind.THRESHOLD:
        return []
    if kind == InvoiceKind.CYCLE:
        return subscriptions.pending_charges(tx, sub_id, prepared.period.end_at)
    pending = subscriptions.pending_charges(tx, sub_id, prepared.at)
    if kind == InvoiceKind.UPDATE:
        return [c for c in pending if c.invoice_now]
    return [c for c in pending if c.period_id == prepared.request.period_id or c.invoice_now]


def _discounts(
    tx: Tx, prepared: Prepared, earlier: Sequence[Invoice], redeemed: set[str] | None
) -> None:
    period = prepared.period
    terms = []
    if redeemed is None or prepared.request.subscription_id in redeemed:
        terms = credit_port.discount_terms(
            tx,
            prepared.request.subscription_id,
            period_start=period.start_at,
            period_end=period.end_at,
        )
    given: dict[str, int] = {}
    for invoice in earlier:
        for discount in invoice.discounts:
            key = str(discount.get("redemption_id"))
            given[key] = given.get(key, 0) + int(discount.get("amount_minor", 0))
    prepared.discounts = [
        DiscountTerm(
            redemption_id=t.redemption_id,
            code=t.code,
            percent_off=t.percent_off,
            amount_off_minor=t.amount_off_minor,
            currency=t.currency,
            prior_discount_minor=given.get(t.redemption_id, 0),
            source=t.source,
        )
        for t in terms
    ]
    # Discounts are cumulative over the period's earlier invoices (see domain._discounts).
    prepared.prior_period_subtotal_minor = sum(i.subtotal_minor for i in earlier)


def prepare(
    tx: Tx,
    batch: Sequence[Prepared],
    *,
    with_credits: bool = True,
    periods: Mapping[str, SubscriptionPeriod] | None = None,
) -> None:
    """Gather every input of a batch of invoices and assemble them (reads only). ``periods``:
    the batch's period rows when the caller read them already in this transaction."""
    items: list[Measure] = []
    rated = [p for p in batch if p.request.kind in (InvoiceKind.CYCLE, InvoiceKind.THRESHOLD)]
    inputs = {}
    if rated:
        wanted = [p.request.period_id for p in rated]
        rows = (
            periods
            if periods is not None and all(i in periods for i in wanted)
            else repository.load_periods(tx, wanted)
        )
        subs = {
            p.request.subscription_id: subscriptions.get(tx, p.request.subscription_id)
            for p in rated
        }
        inputs = bulk.rating_inputs(tx, [rows[p.request.period_id] for p in rated], subs)
    cycles = [p for p in batch if p.request.kind == InvoiceKind.CYCLE]
    late_customers = bulk.customers_with_late_events(tx, [p.customer_id for p in cycles])
    charges = bulk.pending_charges(
        tx,
        {p.request.subscription_id: p.period.end_at for p in cycles if p.rerate_of is None},
    )
    _prime_accounts(tx, batch)
    for prepared in batch:
        kind = prepared.request.kind
        if kind in (InvoiceKind.CYCLE, InvoiceKind.THRESHOLD):
            rating = inputs[prepared.request.period_id]
            prepared.rating = rating
            end_cap = prepared.at if kind == InvoiceKind.THRESHOLD else None
            prepared.usage_slots = _usage_items(prepared, rating, items, end_cap=end_cap)
            replaying_late = prepared.rerate_of is not None and prepared.rerate_of.late_events
            if kind == InvoiceKind.CYCLE and (
                prepared.customer_id in late_customers or replaying_late
            ):
                _classify_late(tx, prepared, items)
        if kind == InvoiceKind.CYCLE and prepared.rerate_of is None:
            prepared.charges = charges[prepared.request.subscription_id]
        else:
            prepared.charges = _charges(tx, prepared)
    values = measure(tx, items) if items else []
    period_ids = [p.request.period_id for p in batch]
    period_ids += [adj[0].period.id or "" for p in batch for adj in p.adjustments]
    excluded = [p.rerate_of.id for p in batch if p.rerate_of is not None]
    priors = repository.priors(tx, period_ids, exclude_invoice_ids=excluded)
    earlier_by_period: dict[str, list[Invoice]] = {}
    for invoice in repository.of_periods(tx, [p.request.period_id for p in batch]):
        if invoice.status in FINALIZED and invoice.id not in excluded:
            earlier_by_period.setdefault(invoice.period_id, []).append(invoice)
    balances: dict[tuple[str, str], int] = {}
    redeemed = credit_port.subscriptions_with_redemptions(
        tx, [p.request.subscription_id for p in batch]
    )
    with_grants = (
        credit_port.customers_with_grants(tx, [p.customer_id for p in batch], at=batch[0].at)
        if with_credits and batch
        else set()
    )
    for prepared in batch:
        _discounts(tx, prepared, earlier_by_period.get(prepared.request.period_id, []), redeemed)
        key = (prepared.customer_id, prepared.currency)
        if prepared.rerate_of is not None:
            prepared.burner = RecordedCredits(prepared.rerate_of.credits)
            balances[key] = prepared.rerate_of.balance_applied_minor
        elif with_credits and (with_grants is None or prepared.customer_id in with_grants):
            meter_ids = (
                [r.meter_id for r in prepared.rating.usage_requests] if prepared.rating else []
            )
            prepared.burner = credit_port.credit_context(
                tx,
                prepared.customer_id,
                currency=prepared.currency,
                at=prepared.at,
                meter_ids=meter_ids,
            )
        else:
            prepared.burner = NoCredits()
        if key not in balances:
            balances[key] = postings.balance_available_minor(tx, *key)
        prepared.balance_available_minor = balances[key]
        prepared.assembled = assemble(_assembly_request(prepared, values, priors), prepared.burner)
        # A customer billed twice in one batch: the second sees what the first took.
        balances[key] -= prepared.assembled.totals.balance_applied_minor
        invariant(balances[key] >= 0, "customer balance applied twice")


class RecordedCredits:
    """Replays the credits an invoice recorded (re-rating a finalized invoice: the grants
    have been burned since, so their live balances no longer say what was available)."""

    def __init__(self, credits: Sequence[dict[str, Any]]) -> None:
        self.credits = list(credits)

    def units(self, demands: Sequence[UnitDemand]) -> list[UnitCredit]:
        result = []
        for demand in demands:
            for credit in self.credits:
                if credit.get("type") == "units" and credit.get("meter_id") == demand.meter_id:
                    result.append(
                        UnitCredit(
                            demand.index,
                            str(credit["grant_id"]),
                            demand.meter_id,
                            min(Decimal(str(credit["quantity"])), demand.quantity),
                        )
                    )
        return result

    def money(self, amount: Money) -> list[MoneyCredit]:
        return [
            MoneyCredit(str(c["grant_id"]), int(c["amount_minor"]))
            for c in self.credits
            if c.get("type") == "money"
        ]


def _prime_accounts(tx: Tx, batch: Sequence[Prepared]) -> None:
    """Find the batch's existing receivable and balance accounts in one read."""
    keys = [(p.customer_id, p.currency) for p in batch]
    known = bulk.known_accounts(tx, [postings.AR, postings.BALANCE], keys)
    postings.prime(tx, known)
    for customer_id, currency in keys:
        postings.mark_absent(tx, postings.BALANCE, currency, customer_id)


def _assembly_request(
    prepared: Prepared, values: Sequence[Decimal], priors: dict[str, dict[str, Prior]]
) -> AssemblyRequest:
    periods: list[PeriodToRate] = []
    if prepared.rating is not None:
        role: Role = "accrued" if prepared.request.kind == InvoiceKind.THRESHOLD else "close"
        periods.append(_to_rate(prepared.rating, prepared.usage_slots, values, priors, role, ()))
    for rating, seqs, slots in prepared.adjustments:
        periods.append(_to_rate(rating, slots, values, priors, "adjustment", seqs))
    return AssemblyRequest(
        currency=prepared.currency,
        kind=prepared.request.kind,
        periods=tuple(periods),
        charges=tuple(_charge_input(c) for c in prepared.charges),
        discounts=tuple(prepared.discounts),
        prior_period_subtotal_minor=prepared.prior_period_subtotal_minor,
        balance_available_minor=prepared.balance_available_minor,
    )


def _to_rate(
    rating: PeriodRatingInput,
    slots: Sequence[int],
    values: Sequence[Decimal],
    priors: dict[str, dict[str, Prior]],
    role: Role,
    seqs: tuple[int, ...],
) -> PeriodToRate:
    period_id = rating.period.id or ""
    return PeriodToRate(
        period_id=period_id,
        billing_period=rating.billing_period,
        phases=rating.phases,
        quantities=_quantities(rating, slots, values),
        advance_charged_minor=rating.advance_charged_minor,
        role=role,
        priors=priors.get(period_id, {}),
        late_event_seqs=seqs,
    )


def _charge_input(charge: PendingChargeView) -> ChargeInput:
    return ChargeInput(
        id=charge.id,
        kind=charge.kind,
        description=charge.description,
        currency=charge.currency,
        amount_minor=charge.amount_minor,
        period_id=charge.period_id,
        service_start=charge.service_start_at,
        service_end=charge.service_end_at,
        price_id=charge.price_id,
        price_key=charge.price_key,
        plan_version_id=charge.plan_version_id,
        breakdown=charge.breakdown,
    )
