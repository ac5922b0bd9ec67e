"""Drafting and finalizing invoices, a batch at a time, in the caller's transaction.

Finalizing a batch is one unit of work (the job commits it; the API's ``finalize`` commits one):

1. lock the subscriptions (id order; ``SKIP LOCKED`` in the job, so two workers split a batch);
2. claim each (subscription, period) job run (``work.jobruns``); skip moments billed already;
3. move each customer's invoiced-through watermark to the period end **before** reading usage
   (metering's protocol: a racing event is either in this invoice or marked late);
4. gather inputs and assemble (:mod:`.gather`, pure assembly in :mod:`..domain`);
5. post the ledger transfers of every invoice in one linked batch, and the credit grants';
6. take the invoice numbers (the counter row is the last lock taken);
7. write invoices and lines in bulk, mark pending charges and late events billed, enqueue
   ``payments.collect``, emit ``invoice.finalized``, complete the job runs.

A failure anywhere rolls the whole batch back: no invoice, no number, no transfer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from tallybook.db import Tx
from tallybook.invoicing import credits as credit_port
from tallybook.invoicing import numbering, postings, repository
from tallybook.invoicing.domain import (
    FINALIZED,
    AssembledInvoice,
    InvoiceKind,
    InvoiceStatus,
    LineDraft,
    jsonable,
)
from tallybook.invoicing.errors import InvoiceCode
from tallybook.invoicing.models import Invoice
from tallybook.invoicing.service.gather import BillingRequest, Prepared, prepare, start
from tallybook.invoicing.settings import InvoicingSettings
from tallybook.kit.errors import Conflict
from tallybook.kit.ids import new_id
from tallybook.kit.invariant import invariant
from tallybook.ledger import service as ledger
from tallybook.ledger.values import TransferRequest
from tallybook.metering import service as metering
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.views import PeriodView
from tallybook.work import events, jobruns, outbox

log = logging.getLogger(__name__)

JOB_CLOSE: Final = "invoicing.close_periods"
PAYMENTS_TOPIC: Final = "payments.collect"
LEDGER_BATCH_MAX: Final = 900


@dataclass(frozen=True, slots=True)
class Outcome:
    request: BillingRequest
    #: finalized | drafted | exists | locked | deferred | empty
    status: str
    invoice_id: str | None = None
    amount_due_minor: int = 0
    total_minor: int = 0
    currency: str | None = None


def run_key(request: BillingRequest, sequence: int = 0) -> str:
    suffix = f":{sequence}" if sequence else ""
    return f"{request.subscription_id}:{request.period_id}:{request.kind}{suffix}"


def bill(
    tx: Tx,
    requests: Sequence[BillingRequest],
    *,
    finalize: bool,
    owner: str = "api",
    skip_locked: bool = False,
    settings: InvoicingSettings | None = None,
) -> list[Outcome]:
    """Draft or finalize the invoices of ``requests`` (see the module docstring)."""
    settings = settings or InvoicingSettings.from_settings()
    at = tx.now()
    locked = repository.lock_subscriptions(
        tx, [r.subscription_id for r in requests], skip_locked=skip_locked
    )
    outcomes: list[Outcome] = []
    wanted = []
    for request in requests:
        if request.subscription_id in locked:
            wanted.append(request)
        else:
            outcomes.append(Outcome(request, "locked"))
    periods = repository.load_periods(tx, [r.period_id for r in wanted])
    existing = repository.existing(tx, [(r.subscription_id, r.period_id, r.kind) for r in wanted])
    batch: list[Prepared] = []
    customers_seen: set[str] = set()
    for request in wanted:
        row = periods.get(request.period_id)
        invariant(row is not None, f"no period {request.period_id}")
        assert row is not None
        invariant(row.subscription_id == request.subscription_id, "period of another subscription")
        found = existing.get((request.subscription_id, request.period_id, request.kind), [])
        prepared = start(tx, request, at=at, period=PeriodView.of(row), existing=found)
        if prepared is None:
            outcomes.append(Outcome(request, "exists"))
            continue
        if prepared.customer_id in customers_seen:
            # One invoice per customer per batch: credits and balance are read once per batch.
            outcomes.append(Outcome(request, "deferred"))
            continue
        customers_seen.add(prepared.customer_id)
        batch.append(prepared)
    if finalize:
        batch = _claim(tx, batch, owner, outcomes)
    if not batch:
        return outcomes
    if finalize:
        _mark_watermarks(tx, batch)
    prepare(tx, batch, periods=periods)
    batch = _over_threshold(batch, outcomes)
    if not batch:
        return outcomes
    if finalize:
        written = _finalize(tx, batch, settings)
    else:
        written = _draft(tx, batch)
    for prepared, invoice in zip(batch, written, strict=True):
        if invoice is None:
            outcomes.append(Outcome(prepared.request, "empty"))
        else:
            outcomes.append(
                Outcome(
                    prepared.request,
                    "finalized" if finalize else "drafted",
                    invoice.id,
                    invoice.amount_due_minor,
                    invoice.total_minor,
                    invoice.currency,
                )
            )
    return outcomes


def _claim(tx: Tx, batch: list[Prepared], owner: str, outcomes: list[Outcome]) -> list[Prepared]:
    """Each period's close is one job run, claimed and completed in this transaction (one
    statement for the batch); a run someone else completed is skipped."""
    keys = {id(p): run_key(p.request) for p in batch if p.request.kind == InvoiceKind.CYCLE}
    taken = jobruns.claim_and_complete_many(
        tx, job=JOB_CLOSE, run_keys=sorted(keys.values()), owner=owner
    )
    kept = []
    for prepared in batch:
        key = keys.get(id(prepared))
        if key is not None and key not in taken:
            outcomes.append(Outcome(prepared.request, "exists"))
            continue
        kept.append(prepared)
    return kept


def _over_threshold(batch: list[Prepared], outcomes: list[Outcome]) -> list[Prepared]:
    kept = []
    for prepared in batch:
        threshold = prepared.request.threshold_minor
        assert prepared.assembled is not None
        if threshold is not None and prepared.assembled.totals.subtotal_minor < threshold:
            outcomes.append(Outcome(prepared.request, "below_threshold"))
            continue
        kept.append(prepared)
    return kept


def _mark_watermarks(tx: Tx, batch: Sequence[Prepared]) -> None:
    """Customers in id order (the order ingestion locks them in: no deadlock)."""
    through: dict[str, Any] = {}
    for prepared in batch:
        if prepared.request.kind != InvoiceKind.CYCLE:
            continue
        end = prepared.period.end_at
        current = through.get(prepared.customer_id)
        through[prepared.customer_id] = end if current is None or end > current else current
    # One lock statement for the batch's customers, one read and one write of the watermarks.
    metering.mark_invoiced_through_many(tx, through)


def _has_content(prepared: Prepared) -> bool:
    assembled = prepared.assembled
    assert assembled is not None
    if prepared.request.kind == InvoiceKind.CYCLE:
        return True  # a period is always closed by an invoice, even one of zero
    return not assembled.is_empty


def _new_invoice(prepared: Prepared, assembled: AssembledInvoice, status: str) -> Invoice:
    period = prepared.period
    now = prepared.at
    totals = assembled.totals
    invoice = prepared.draft or Invoice(
        id=new_id("in"),
        customer_id=prepared.customer_id,
        subscription_id=prepared.request.subscription_id,
        period_id=prepared.request.period_id,
        kind=str(prepared.request.kind),
        sequence=prepared.sequence,
        currency=prepared.currency,
        amount_paid_minor=0,
        amount_credited_minor=0,
        amount_written_off_minor=0,
        created_at=now,
    )
    invoice.status = status
    invoice.period_start_at = period.start_at
    invoice.period_end_at = (
        prepared.at if prepared.request.kind == InvoiceKind.THRESHOLD else period.end_at
    )
    invoice.subtotal_minor = totals.subtotal_minor
    invoice.discount_minor = totals.discount_minor
    invoice.total_minor = totals.total_minor
    invoice.credits_applied_minor = totals.credits_applied_minor
    invoice.balance_applied_minor = totals.balance_applied_minor
    invoice.balance_carried_minor = totals.balance_carried_minor
    invoice.amount_due_minor = totals.amount_due_minor
    invoice.discounts = _jsonable([d.to_dict() for d in assembled.discounts])
    invoice.credits = _jsonable(assembled.credits_json())
    invoice.late_events = [{"seq": seq} for seq in prepared.late_seqs]
    invoice.content_hash = assembled.content_hash
    invoice.updated_at = now
    return invoice


def _jsonable(value: Any) -> Any:
    return jsonable(value)


def _line_rows(invoice_id: str, lines: Sequence[LineDraft]) -> list[dict[str, Any]]:
    return [
        {
            "id": new_id("il"),
            "invoice_id": invoice_id,
            "position": position,
            "kind": line.kind,
            "source": str(line.source),
            "line_key": line.line_key,
            "description": line.description,
            "currency": line.currency,
            "amount_minor": line.amount_minor,
            "quantity": line.quantity,
            "usage_credit_quantity": line.usage_credit_quantity,
            "price_id": line.price_id,
            "price_key": line.price_key,
            "meter_id": line.meter_id,
            "plan_version_id": line.plan_version_id,
            "phase_id": line.phase_id,
            "period_id": line.period_id,
            "charge_id": line.charge_id,
            "service_start_at": line.service_start,
            "service_end_at": line.service_end,
            "breakdown": dict(line.breakdown),
        }
        for position, line in enumerate(lines)
    ]


def _insert_lines(tx: Tx, rows: Sequence[dict[str, Any]]) -> None:
    """Lines go in with one statement per batch (one ``COPY`` on PostgreSQL; they are never
    read back as ORM objects in the unit of work that writes them)."""
    repository.insert_lines(tx, rows)


def _replace_lines(
    tx: Tx, invoice: Invoice, lines: Sequence[LineDraft], *, was_draft: bool
) -> None:
    if was_draft:
        for old in repository.lines_of(tx, invoice.id):
            tx.session.delete(old)
        tx.session.flush()
    tx.session.flush()
    _insert_lines(tx, _line_rows(invoice.id, lines))


def _draft(tx: Tx, batch: Sequence[Prepared]) -> list[Invoice | None]:
    written: list[Invoice | None] = []
    for prepared in batch:
        assembled = prepared.assembled
        assert assembled is not None
        if not _has_content(prepared):
            written.append(None)
            continue
        was_draft = prepared.draft is not None
        invoice = _new_invoice(prepared, assembled, InvoiceStatus.DRAFT)
        if not was_draft:
            tx.session.add(invoice)
            tx.session.flush()
        _replace_lines(tx, invoice, assembled.lines, was_draft=was_draft)
        if not was_draft:
            _emit(tx, "invoice.created", invoice)
        written.append(invoice)
    tx.session.flush()
    return written


def _finalize(
    tx: Tx, batch: Sequence[Prepared], settings: InvoicingSettings
) -> list[Invoice | None]:
    # A draft's lines go before its status changes: lines of a finalized invoice are frozen
    # (a database trigger), and the session may flush the status at any query from here on.
    for prepared in batch:
        if prepared.draft is not None:
            _replace_lines(tx, prepared.draft, (), was_draft=True)
    tx.session.flush()
    keep = [p for p in batch if _has_content(p)]
    # Status and number are set together, last (a check constraint: no open invoice unnumbered).
    invoices = {id(p): _new_invoice(p, p.assembled, InvoiceStatus.DRAFT) for p in keep}  # type: ignore[arg-type]
    # Ledger first (balance rows), then the number counter: the fixed lock order.
    transfers: list[TransferRequest] = []
    for prepared in keep:
        assembled = prepared.assembled
        assert assembled is not None
        invoice = invoices[id(prepared)]
        transfers += postings.finalize_transfers(
            tx,
            postings.FinalizePosting(
                invoice_id=invoice.id,
                customer_id=prepared.customer_id,
                currency=prepared.currency,
                revenue_minor=postings.revenue_by_account(
                    (line.kind, line.amount_minor) for line in assembled.lines
                ),
                discount_minor=assembled.totals.discount_minor,
                total_minor=assembled.totals.total_minor,
                balance_applied_minor=assembled.totals.balance_applied_minor,
            ),
        )
    _post(tx, transfers)
    for prepared in keep:
        invoice = invoices[id(prepared)]
        credit_port.apply_credits(tx, prepared.burner, invoice_id=invoice.id)
        assert prepared.assembled is not None
        for discount in prepared.assembled.discounts:
            if discount.amount_minor:
                credit_port.record_discount_use(
                    tx,
                    discount.redemption_id,
                    invoice_id=invoice.id,
                    period_start=prepared.period.start_at,
                )
    numbers = _numbers(tx, keep, settings)
    written: list[Invoice | None] = []
    new_rows = []
    for prepared in batch:
        if id(prepared) not in invoices:
            written.append(None)
            continue
        invoice = invoices[id(prepared)]
        invoice.number = numbers[id(prepared)]
        invoice.status = InvoiceStatus.OPEN
        invoice.finalized_at = prepared.at
        if invoice.amount_due_minor == 0:
            invoice.status = InvoiceStatus.PAID
            invoice.paid_at = prepared.at
        if prepared.draft is None:
            new_rows.append(invoice)
        written.append(invoice)
    tx.session.add_all(new_rows)
    tx.session.flush()
    rows: list[dict[str, Any]] = []
    for prepared in keep:
        assert prepared.assembled is not None
        rows += _line_rows(invoices[id(prepared)].id, prepared.assembled.lines)
    tx.session.flush()
    _insert_lines(tx, rows)
    emitted: list[tuple[str, str | None, str | None, dict[str, Any]]] = []
    for prepared in keep:
        emitted += _after_finalize(tx, prepared, invoices[id(prepared)])
    events.emit_many(tx, emitted)
    outbox.enqueue_many(
        tx,
        [
            {
                "topic": PAYMENTS_TOPIC,
                "dedup_key": invoice.id,
                "payload": {"invoice_id": invoice.id},
                "ordering_key": invoice.customer_id,
            }
            for invoice in invoices.values()
            if invoice.amount_due_minor > 0
        ],
    )
    return written


def _numbers(tx: Tx, keep: Sequence[Prepared], settings: InvoicingSettings) -> dict[int, str]:
    by_series: dict[str, list[Prepared]] = {}
    for prepared in keep:
        series = numbering.invoice_series(settings.number_prefix, prepared.at)
        by_series.setdefault(series, []).append(prepared)
    result: dict[int, str] = {}
    for series in sorted(by_series):
        members = by_series[series]
        for prepared, number in zip(
            members, numbering.take_numbers(tx, series, len(members)), strict=True
        ):
            result[id(prepared)] = number
    return result


def _post(tx: Tx, transfers: Sequence[TransferRequest]) -> None:
    for start_index in range(0, len(transfers), LEDGER_BATCH_MAX):
        chunk = list(transfers[start_index : start_index + LEDGER_BATCH_MAX])
        for result in ledger.create_linked_batch(tx, chunk):
            if not result.ok:
                raise Conflict(
                    InvoiceCode.LEDGER_REFUSED,
                    f"the ledger refused {result.id}: {result.code} {result.message}",
                    param=result.param,
                )


def _after_finalize(
    tx: Tx, prepared: Prepared, invoice: Invoice
) -> list[tuple[str, str | None, str | None, dict[str, Any]]]:
    """Mark what the invoice billed; returns its domain events (the caller emits a batch's
    events in one statement)."""
    charge_ids = [c.id for c in prepared.charges]
    if charge_ids:
        subscriptions.mark_charges_invoiced(tx, charge_ids, invoice.id)
    seqs = prepared.late_seqs
    if seqs:
        metering.mark_late_billed(
            tx,
            customer_id=prepared.customer_id,
            through_seq=max(seqs),
            billed_ref=invoice.id,
            seqs=seqs,
        )
    types = []
    if prepared.draft is None:
        types.append("invoice.created")
    types.append("invoice.finalized")
    if invoice.amount_due_minor == 0:
        types.append("invoice.paid")
    if prepared.request.kind == InvoiceKind.THRESHOLD:
        types.append("invoice.threshold_reached")
    data = {"invoice": summary(invoice)}
    return [(t, invoice.customer_id, invoice.id, data) for t in types]


def _emit(tx: Tx, event_type: str, invoice: Invoice) -> None:
    events.emit(
        tx,
        event_type,
        customer_id=invoice.customer_id,
        object_id=invoice.id,
        data={"invoice": summary(invoice)},
    )


def summary(invoice: Invoice) -> dict[str, Any]:
    """The invoice as event data (totals, no lines)."""
    return {
        "id": invoice.id,
        "number": invoice.number,
        "status": invoice.status,
        "kind": invoice.kind,
        "customer_id": invoice.customer_id,
        "subscription_id": invoice.subscription_id,
        "currency": invoice.currency,
        "period_start": invoice.period_start_at,
        "period_end": invoice.period_end_at,
        "total_minor": invoice.total_minor,
        "amount_due_minor": invoice.amount_due_minor,
        "amount_paid_minor": invoice.amount_paid_minor,
        "amount_remaining_minor": invoice.amount_remaining_minor,
    }


def status_is_final(invoice: Invoice) -> bool:
    return invoice.status in FINALIZED


def request_for(tx: Tx, invoice: Invoice) -> BillingRequest:
    return BillingRequest(invoice.subscription_id, invoice.period_id, InvoiceKind(invoice.kind))


def advance(tx: Tx, subscription_id: str) -> None:
    """Bring the subscription up to now (renewals record the new period's fees) first."""
    subscriptions.advance_by_id(tx, subscription_id)
