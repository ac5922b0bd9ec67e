"""Billing one subscription at a time (the API and CLI), previews, and threshold checks.
Never commits."""

from __future__ import annotations

from datetime import datetime

from tallybook.db import Tx
from tallybook.invoicing import repository
from tallybook.invoicing.domain import FINALIZED, InvoiceKind, InvoiceStatus
from tallybook.invoicing.errors import InvoiceCode
from tallybook.invoicing.service.billing import Outcome, bill
from tallybook.invoicing.service.gather import BillingRequest, Prepared, prepare, start
from tallybook.invoicing.service.lifecycle import load, view_of
from tallybook.invoicing.views import InvoiceView, LineView
from tallybook.kit.errors import Conflict, InvalidRequest, NotFound
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.views import PeriodView


def _invoice_of(tx: Tx, outcome: Outcome) -> InvoiceView:
    if outcome.invoice_id is None:
        raise Conflict(
            InvoiceCode.NOTHING_TO_BILL,
            f"nothing to bill for period {outcome.request.period_id} ({outcome.status})",
            param="period",
        )
    return view_of(tx, load(tx, outcome.invoice_id))


def _ended_period(tx: Tx, subscription_id: str, period_id: str | None) -> PeriodView:
    periods = subscriptions.periods(tx, subscription_id)
    if period_id is not None:
        for period in periods:
            if period.id == period_id:
                if period.status != "ended" or period.is_trial:
                    raise Conflict(
                        InvoiceCode.NOTHING_TO_BILL,
                        f"period {period_id} has not ended (or is a trial)",
                        param="period",
                    )
                return period
        raise NotFound("subscription period", period_id, param="period")
    done = repository.finalized_cycle_periods(tx, subscription_id)
    for period in periods:
        if period.status == "ended" and not period.is_trial and period.id not in done:
            return period
    raise Conflict(
        InvoiceCode.NOTHING_TO_BILL,
        f"subscription {subscription_id} has no ended period left to invoice",
        param="subscription",
    )


def finalize_period(tx: Tx, subscription_id: str, period_id: str | None = None) -> InvoiceView:
    """Finalize the invoice closing an ended period now (the oldest one not yet invoiced when
    ``period_id`` is None), without waiting for the grace window. Idempotent: the invoice of a
    period already finalized is returned as it is."""
    subscriptions.advance_by_id(tx, subscription_id)
    period = _ended_period(tx, subscription_id, period_id)
    assert period.id is not None
    request = BillingRequest(subscription_id, period.id, InvoiceKind.CYCLE)
    for invoice in repository.existing(tx, [(subscription_id, period.id, InvoiceKind.CYCLE)]).get(
        (subscription_id, period.id, InvoiceKind.CYCLE), []
    ):
        if invoice.status in FINALIZED:
            return view_of(tx, invoice)
    (outcome,) = [o for o in bill(tx, [request], finalize=True) if o.request == request]
    return _invoice_of(tx, outcome)


def create_draft(tx: Tx, subscription_id: str, period_id: str | None = None) -> InvoiceView:
    """Draft (or refresh the draft of) the invoice closing an ended period."""
    period = _ended_period(tx, subscription_id, period_id)
    assert period.id is not None
    request = BillingRequest(subscription_id, period.id, InvoiceKind.CYCLE)
    (outcome,) = [o for o in bill(tx, [request], finalize=False) if o.request == request]
    if outcome.status == "exists":
        raise Conflict(
            InvoiceCode.STATUS_INVALID, f"period {period.id} is invoiced already", param="period"
        )
    return _invoice_of(tx, outcome)


def finalize_invoice(tx: Tx, invoice_id: str) -> InvoiceView:
    """Finalize a draft now: it is assembled again (usage, charges and credits as they are
    now), numbered, posted to the ledger and handed to payments. Finalizing a finalized
    invoice returns it unchanged."""
    invoice = load(tx, invoice_id)
    if invoice.status in FINALIZED:
        return view_of(tx, invoice)
    request = BillingRequest(invoice.subscription_id, invoice.period_id, InvoiceKind(invoice.kind))
    (outcome,) = [o for o in bill(tx, [request], finalize=True) if o.request == request]
    if outcome.status == "exists":  # finalized meanwhile by another worker or request
        tx.session.refresh(invoice)
        return view_of(tx, invoice)
    return _invoice_of(tx, outcome)


def refresh_draft(tx: Tx, invoice_id: str) -> InvoiceView:
    invoice = load(tx, invoice_id)
    if invoice.status != InvoiceStatus.DRAFT:
        raise Conflict(
            InvoiceCode.IMMUTABLE, f"invoice {invoice_id} is {invoice.status}", param="id"
        )
    request = BillingRequest(invoice.subscription_id, invoice.period_id, InvoiceKind(invoice.kind))
    (outcome,) = [o for o in bill(tx, [request], finalize=False) if o.request == request]
    return _invoice_of(tx, outcome)


def preview(tx: Tx, subscription_id: str) -> InvoiceView:
    """The upcoming invoice, exactly as finalizing would produce it now: the invoice of the
    oldest ended period not yet invoiced, or else the current period's with the usage so far
    (as if it ended with no more usage). Nothing is written."""
    subscription = subscriptions.get(tx, subscription_id)
    done = repository.finalized_cycle_periods(tx, subscription_id)
    target: PeriodView | None = None
    for period in subscriptions.periods(tx, subscription_id):
        if period.is_trial or period.id in done:
            continue
        if period.status == "ended" or period.id == subscription.current_period_id:
            target = period
            break
    if target is None or target.id is None:
        raise Conflict(
            InvoiceCode.NOTHING_TO_BILL,
            f"subscription {subscription_id} has no period to bill",
            param="subscription",
        )
    request = BillingRequest(subscription_id, target.id, InvoiceKind.CYCLE)
    existing = repository.existing(tx, [(subscription_id, target.id, InvoiceKind.CYCLE)])
    prepared = start(
        tx,
        request,
        at=tx.now(),
        period=target,
        existing=existing.get((subscription_id, target.id, InvoiceKind.CYCLE), []),
    )
    if prepared is None:
        raise Conflict(InvoiceCode.NOTHING_TO_BILL, "already invoiced", param="subscription")
    prepare(tx, [prepared])
    return preview_view(prepared)


def preview_view(prepared: Prepared) -> InvoiceView:
    assembled = prepared.assembled
    assert assembled is not None
    totals = assembled.totals
    lines = tuple(
        LineView(
            id=None,
            position=position,
            kind=line.kind,
            source=str(line.source),
            line_key=line.line_key,
            description=line.description,
            currency=line.currency,
            amount_minor=line.amount_minor,
            quantity=line.quantity,
            usage_credit_quantity=line.usage_credit_quantity,
            price_id=line.price_id,
            price_key=line.price_key,
            meter_id=line.meter_id,
            plan_version_id=line.plan_version_id,
            phase_id=line.phase_id,
            period_id=line.period_id,
            charge_id=line.charge_id,
            service_start=line.service_start,
            service_end=line.service_end,
            breakdown=dict(line.breakdown),
        )
        for position, line in enumerate(assembled.lines)
    )
    return InvoiceView(
        id=None,
        number=None,
        status=InvoiceStatus.DRAFT,
        kind=str(prepared.request.kind),
        sequence=prepared.sequence,
        customer_id=prepared.customer_id,
        subscription_id=prepared.request.subscription_id,
        period_id=prepared.request.period_id,
        currency=prepared.currency,
        period_start=prepared.period.start_at,
        period_end=prepared.period.end_at,
        subtotal_minor=totals.subtotal_minor,
        discount_minor=totals.discount_minor,
        total_minor=totals.total_minor,
        credits_applied_minor=totals.credits_applied_minor,
        balance_applied_minor=totals.balance_applied_minor,
        balance_carried_minor=totals.balance_carried_minor,
        amount_due_minor=totals.amount_due_minor,
        amount_paid_minor=0,
        amount_credited_minor=0,
        amount_written_off_minor=0,
        amount_remaining_minor=totals.amount_due_minor,
        discounts=[d.to_dict() for d in assembled.discounts],
        credits=assembled.credits_json(),
        late_events=[{"seq": seq} for seq in prepared.late_seqs],
        content_hash=assembled.content_hash,
        status_reason=None,
        created_at=None,
        finalized_at=None,
        paid_at=None,
        voided_at=None,
        marked_uncollectible_at=None,
        lines=lines,
    )


def check_threshold(tx: Tx, subscription_id: str, *, owner: str = "api") -> InvoiceView | None:
    """Issue an interim invoice if the current period's accrued usage (less what earlier
    threshold invoices billed) reached the threshold. Returns it, or None."""
    subscription = subscriptions.get(tx, subscription_id)
    if subscription.current_period_id is None:
        return None
    threshold = threshold_for(tx, subscription.customer_id, subscription.plan_version_id)
    if threshold is None:
        return None
    request = BillingRequest(
        subscription_id, subscription.current_period_id, InvoiceKind.THRESHOLD, threshold
    )
    outcomes = bill(tx, [request], finalize=True, owner=owner)
    for outcome in outcomes:
        if outcome.status == "finalized" and outcome.invoice_id is not None:
            return view_of(tx, load(tx, outcome.invoice_id))
    return None


def threshold_for(tx: Tx, customer_id: str, plan_version_id: str) -> int | None:
    override = repository.threshold_override(tx, customer_id)
    if override is not None:
        return override.amount_minor
    from tallybook.catalog import plans

    return plans.version_terms(tx, plan_version_id).billing_threshold_minor


def set_billing_threshold(tx: Tx, customer_id: str, amount_minor: int | None) -> int | None:
    """Override the plan's threshold for one customer (``None`` turns it off for them)."""
    from tallybook.customers import service as customers
    from tallybook.invoicing.models import BillingThreshold

    customer = customers.get(tx, customer_id)
    if amount_minor is not None and (
        isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0
    ):
        raise InvalidRequest(
            InvoiceCode.THRESHOLD_INVALID,
            "amount_minor must be a positive integer of minor units, or null",
            param="amount_minor",
        )
    row = repository.threshold_override(tx, customer.id)
    now = tx.now()
    if row is None:
        row = BillingThreshold(customer_id=customer.id, created_at=now)
        tx.session.add(row)
    row.amount_minor = amount_minor
    row.updated_at = now
    tx.session.flush()
    return amount_minor


def clear_billing_threshold(tx: Tx, customer_id: str) -> None:
    row = repository.threshold_override(tx, customer_id)
    if row is not None:
        tx.session.delete(row)
        tx.session.flush()


def period_now(tx: Tx) -> datetime:
    return tx.now()


def rerate(tx: Tx, invoice_id: str) -> tuple[str, str]:
    """Assemble a finalized invoice again from its inputs (usage as metering answers now, the
    plan versions, the charges and late events it billed, the credits it recorded, what was
    billed before it) → (content hash now, content hash stored). Equal unless usage of its
    periods changed since (late events, which the next invoice adjusts)."""
    invoice = load(tx, invoice_id)
    if invoice.status not in FINALIZED:
        raise Conflict(InvoiceCode.STATUS_INVALID, f"{invoice_id} is a draft", param="id")
    request = BillingRequest(invoice.subscription_id, invoice.period_id, InvoiceKind(invoice.kind))
    period = subscriptions.get_period(tx, invoice.period_id)
    prepared = Prepared(
        request=request,
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        period=period,
        sequence=invoice.sequence,
        draft=None,
        at=invoice.finalized_at or tx.now(),
        rerate_of=invoice,
    )
    prepare(tx, [prepared])
    assert prepared.assembled is not None
    return prepared.assembled.content_hash, invoice.content_hash
