"""The checks: each reads the books and returns findings (never writes).

| check | compares | scope |
| --- | --- | --- |
| ledger | the ledger's own invariants (``ledger.check_invariants``) | the whole journal |
| invoice ledger | amount due vs net movement of the invoice's transfers on accounts_receivable | every finalized or voided invoice |
| invoice usage | quantity last invoiced per line vs usage measured now − unbilled late usage | usage lines of invoices finalized in the last ``invoice_usage_days`` whose service ended |
| rollup events | rollup totals vs totals recomputed from raw events | pairs (meter, customer) with events in the window, up to ``rollup_pairs_max`` |
| payment provider | invoice vs collection (missing, amount, status); payments vs the provider's last known state (``payments.service.provider_comparison``: stored webhooks and syncs) and objects at the provider with no counterpart; succeeded payments vs their ledger transfer | every finalized invoice; every payment; provider comparison over invoices finalized in the last ``provider_window_days`` |
| clearing | provider clearing balance vs money still in flight | each currency of each clearing account |
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import select

from tallybook.catalog import meters as catalog_meters
from tallybook.catalog.meter_models import Aggregation, Meter
from tallybook.catalog.models import Price
from tallybook.db import Tx
from tallybook.invoicing.credits import credit_transfer_ids
from tallybook.invoicing.models import Invoice, InvoiceLine
from tallybook.ledger import chart
from tallybook.ledger import service as ledger
from tallybook.ledger.models import LedgerAccount, LedgerEntry
from tallybook.ledger.values import Direction, Phase
from tallybook.metering import repository as metering_repository
from tallybook.metering import service as metering
from tallybook.metering.aggregate import Accumulator, ceil_hour, floor_hour
from tallybook.metering.matching import compile_meter
from tallybook.metering.models import MeteringEvent
from tallybook.metering.usage import collect, feed_raw
from tallybook.payments import service as payments
from tallybook.payments.models import Collection, Payment
from tallybook.reconciliation.domain import (
    FINALIZED_STATUSES,
    CheckResult,
    DiscrepancyKind,
    Finding,
    Options,
)

BATCH_MAX: Final = 500

Check = Callable[[Tx, Options], CheckResult]


# Ledger --------------------------------------------------------------------------------------


def ledger_invariants(tx: Tx, options: Options) -> CheckResult:
    result = CheckResult()
    report = ledger.check_invariants(tx)
    result.scope = {"journal": "all", **{k: int(v) for k, v in report.counts.items()}}
    for breach in report.breaches:
        result.add(
            Finding(
                DiscrepancyKind.LEDGER_INVARIANT,
                key=f"{breach.kind}:{breach.subject}",
                objects={"breach": breach.kind, "subject": breach.subject},
                detail=breach.detail,
            )
        )
    return result


# Invoices against the ledger ---------------------------------------------------------------


def _invoice_transfer_ids(invoice: Invoice) -> list[str]:
    ids = [f"invoice:{invoice.id}:finalize", f"invoice:{invoice.id}:balance"]
    ids += credit_transfer_ids(invoice.id, invoice.credits or [])
    if invoice.status == "void":
        ids.append(f"invoice:{invoice.id}:write_off")
        ids += [f"invoice:{invoice.id}:void:{n}" for n in range(len(ids) + 1)]
    return ids


def _invoice_batches(tx: Tx, statuses: Sequence[str]) -> Iterator[list[Invoice]]:
    after = ""
    while True:
        rows = list(
            tx.session.scalars(
                select(Invoice)
                .where(Invoice.status.in_(statuses), Invoice.id > after)
                .order_by(Invoice.id)
                .limit(BATCH_MAX)
            )
        )
        if not rows:
            return
        yield rows
        after = rows[-1].id


def receivable_movements(tx: Tx, transfer_ids: Sequence[str]) -> dict[str, int]:
    """Net posted debit on customers' accounts_receivable, per transfer id."""
    if not transfer_ids:
        return {}
    rows = tx.session.execute(
        select(LedgerEntry.transfer_id, LedgerEntry.direction, LedgerEntry.amount_minor)
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(
            LedgerEntry.transfer_id.in_(list(transfer_ids)),
            LedgerAccount.code == chart.ACCOUNTS_RECEIVABLE,
            LedgerEntry.phase == "posted",
        )
    )
    movements: dict[str, int] = defaultdict(int)
    for transfer_id, direction, amount in rows:
        movements[transfer_id] += amount if direction == "debit" else -amount
    return movements


def invoices_against_ledger(tx: Tx, options: Options) -> CheckResult:
    result = CheckResult()
    checked = 0
    for batch in _invoice_batches(tx, (*FINALIZED_STATUSES, "void")):
        ids_of = {invoice.id: _invoice_transfer_ids(invoice) for invoice in batch}
        movements = receivable_movements(tx, [i for ids in ids_of.values() for i in ids])
        for invoice in batch:
            checked += 1
            actual = sum(movements.get(i, 0) for i in ids_of[invoice.id])
            expected = 0 if invoice.status == "void" else invoice.amount_due_minor
            if actual != expected:
                result.add(
                    Finding(
                        DiscrepancyKind.INVOICE_LEDGER,
                        key=invoice.id,
                        objects={
                            "invoice_id": invoice.id,
                            "invoice_number": invoice.number,
                            "customer_id": invoice.customer_id,
                            "status": invoice.status,
                        },
                        currency=invoice.currency,
                        expected_minor=expected,
                        actual_minor=actual,
                        detail=(
                            f"invoice {invoice.number or invoice.id} ({invoice.status}) "
                            f"{'should net to zero' if invoice.status == 'void' else 'is due'} "
                            f"{expected} but its transfers moved accounts_receivable by {actual}"
                        ),
                    )
                )
    result.scope = {"invoices": checked}
    return result


# Invoiced quantities against usage ----------------------------------------------------------


def _group_key(price: Price | None) -> tuple[tuple[str, str], ...]:
    if price is None or not price.group_filter:
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in price.group_filter.items()))


def _measured(
    tx: Tx, meter: Meter, line: InvoiceLine, customer_id: str, group: tuple[tuple[str, str], ...]
) -> Decimal:
    start, end = line.service_start_at, line.service_end_at
    additive = Aggregation(meter.aggregation) in (Aggregation.COUNT, Aggregation.SUM)
    if not group:
        total = metering.usage_total(
            tx, meter_id=meter.id, customer_id=customer_id, start=start, end=end
        )
        assert isinstance(total, Decimal)
        if additive:
            late = metering.late_usage_total(
                tx, meter_id=meter.id, customer_id=customer_id, start=start, end=end
            )
            assert isinstance(late, Decimal)
            total -= late
        return total
    names = [name for name, _ in group]
    grouped = metering.usage_total(
        tx, meter_id=meter.id, customer_id=customer_id, group_by=names, start=start, end=end
    )
    assert isinstance(grouped, dict)
    total = grouped.get(group, Decimal(0))
    if additive:
        late = metering.late_usage_total(
            tx, meter_id=meter.id, customer_id=customer_id, group_by=names, start=start, end=end
        )
        assert isinstance(late, dict)
        total -= late.get(group, Decimal(0))
    return total


def invoices_against_usage(tx: Tx, options: Options) -> CheckResult:
    """The latest line billed for each ``line_key`` (a period's price in a phase) carries the
    period's whole measured quantity (threshold invoices and late adjustments included)."""
    result = CheckResult()
    now = tx.now()
    since = now - timedelta(days=options.invoice_usage_days)
    rows = tx.session.execute(
        select(InvoiceLine, Invoice.customer_id, Invoice.kind, Invoice.number)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(
            Invoice.status.in_(FINALIZED_STATUSES),
            Invoice.finalized_at >= since,
            InvoiceLine.meter_id.is_not(None),
            InvoiceLine.quantity.is_not(None),
        )
        .order_by(Invoice.finalized_at, Invoice.id, InvoiceLine.position)
    ).all()
    latest: dict[str, tuple[InvoiceLine, str, str, str | None]] = {}
    for line, customer_id, kind, number in rows:
        latest[line.line_key] = (line, customer_id, kind, number)
    prices: dict[str, Price | None] = {}
    meters: dict[str, Meter] = {}
    checked = 0
    for line, customer_id, kind, number in latest.values():
        if kind == "threshold" or line.service_end_at > now or line.meter_id is None:
            continue  # the period's own invoice is still to come
        if line.price_id and line.price_id not in prices:
            prices[line.price_id] = tx.session.get(Price, line.price_id)
        meter = meters.get(line.meter_id)
        if meter is None:
            meter = meters[line.meter_id] = catalog_meters.get_meter(tx, line.meter_id)
        group = _group_key(prices.get(line.price_id or ""))
        measured = _measured(tx, meter, line, customer_id, group)
        checked += 1
        invoiced = line.quantity or Decimal(0)
        if measured != invoiced:
            result.add(
                Finding(
                    DiscrepancyKind.INVOICE_USAGE,
                    key=line.line_key,
                    objects={
                        "invoice_id": line.invoice_id,
                        "invoice_number": number,
                        "line_id": line.id,
                        "customer_id": customer_id,
                        "meter_id": line.meter_id,
                        "period_id": line.period_id,
                        "service_start_at": line.service_start_at.isoformat(),
                        "service_end_at": line.service_end_at.isoformat(),
                    },
                    currency=line.currency,
                    expected_quantity=measured,
                    actual_quantity=invoiced,
                    detail=(
                        f"line {line.description!r} of invoice {number} billed {invoiced} "
                        f"{meter.key}; usage measured now (less late usage still to bill) is "
                        f"{measured}"
                    ),
                )
            )
    result.scope = {"lines": checked, "finalized_since": since.isoformat()}
    return result


# Rollups against raw events -----------------------------------------------------------------


def _rollup_window(tx: Tx, options: Options) -> tuple[datetime, datetime]:
    end = floor_hour(options.rollup_window_end or tx.now())
    start = (
        ceil_hour(options.rollup_window_start)
        if options.rollup_window_start is not None
        else end - timedelta(hours=options.rollup_window_hours)
    )
    return start, end


def _sample(pairs: list[tuple[str, str]], limit: int, salt: str) -> list[tuple[str, str]]:
    """A deterministic sample per run (a different one each day)."""
    if len(pairs) <= limit:
        return pairs

    def rank(pair: tuple[str, str]) -> str:
        return hashlib.blake2b(f"{salt}|{pair[0]}|{pair[1]}".encode(), digest_size=8).hexdigest()

    return sorted(pairs, key=rank)[:limit]


def _constant(accumulator: Accumulator) -> Callable[[datetime], Accumulator]:
    return lambda _time: accumulator


def rollups_against_events(tx: Tx, options: Options) -> CheckResult:
    result = CheckResult()
    start, end = _rollup_window(tx, options)
    if start >= end:
        result.scope = {"pairs": 0, "window": [start.isoformat(), end.isoformat()]}
        return result
    typed = tx.session.execute(
        select(MeteringEvent.type, MeteringEvent.customer_id)
        .where(MeteringEvent.time >= start, MeteringEvent.time < end)
        .distinct()
    ).all()
    meters_of: dict[str, list[Meter]] = defaultdict(list)
    for meter in tx.session.scalars(
        select(Meter).where(Meter.event_type.in_({t for t, _ in typed}))
    ):
        if meter.backfilled_at is not None:
            meters_of[meter.event_type].append(meter)
    pairs = sorted({(m.id, customer) for t, customer in typed for m in meters_of[t]})
    chosen = _sample(pairs, options.rollup_pairs_max, salt=end.isoformat())
    by_id = {m.id: m for ms in meters_of.values() for m in ms}
    for meter_id, customer_id in chosen:
        meter = by_id[meter_id]
        from_rollups = Accumulator(Aggregation(meter.aggregation), (), None)
        for part in collect(tx, meter, customer_id, start, end, bucket=None).values():
            from_rollups.merge(part.regroup(None))
        compiled = compile_meter(meter)
        from_events = Accumulator(compiled.aggregation, compiled.dim_names, compiled.dim_names)
        feed_raw(
            compiled,
            metering_repository.raw_events(
                tx, customer_id=customer_id, event_type=meter.event_type, ranges=[(start, end)]
            ),
            _constant(from_events),
        )
        rolled, raw = from_rollups.total(), from_events.regroup(None).total()
        if rolled != raw:
            result.add(
                Finding(
                    DiscrepancyKind.ROLLUP_EVENTS,
                    key=f"{meter_id}|{customer_id}|{start.date().isoformat()}",
                    objects={
                        "meter_id": meter_id,
                        "meter_key": meter.key,
                        "customer_id": customer_id,
                        "window_start": start.isoformat(),
                        "window_end": end.isoformat(),
                    },
                    expected_quantity=raw,
                    actual_quantity=rolled,
                    detail=(
                        f"meter {meter.key} for {customer_id} in [{start.isoformat()}, "
                        f"{end.isoformat()}): rollups say {rolled}, raw events say {raw}"
                    ),
                )
            )
    result.scope = {
        "window": [start.isoformat(), end.isoformat()],
        "pairs_with_events": len(pairs),
        "pairs_checked": len(chosen),
    }
    return result


# Payments against the provider ---------------------------------------------------------------


def _payment_finding(payment: Payment, what: str, detail: str, **amounts: Any) -> Finding:
    return Finding(
        DiscrepancyKind.PAYMENT_PROVIDER,
        key=f"payment:{payment.id}:{what}",
        objects={
            "payment_id": payment.id,
            "invoice_id": payment.invoice_id,
            "customer_id": payment.customer_id,
            "provider": payment.provider,
            "provider_payment_id": payment.provider_payment_id,
            "problem": what,
        },
        currency=payment.currency,
        detail=detail,
        **amounts,
    )


def payments_against_provider(tx: Tx, options: Options) -> CheckResult:
    """Compares payments' stored provider state (what the provider last told us, through
    webhooks and syncs) with our invoices, collections and the ledger."""
    result = CheckResult()
    grace = tx.now() - timedelta(hours=options.collection_grace_hours)
    invoices = 0
    for batch in _invoice_batches(tx, FINALIZED_STATUSES):
        collections = {
            c.invoice_id: c
            for c in tx.session.scalars(
                select(Collection).where(Collection.invoice_id.in_([i.id for i in batch]))
            )
        }
        for invoice in batch:
            invoices += 1
            _check_collection(result, invoice, collections.get(invoice.id), grace)
    payments_checked = 0
    after = ""
    while True:
        rows = list(
            tx.session.scalars(
                select(Payment).where(Payment.id > after).order_by(Payment.id).limit(BATCH_MAX)
            )
        )
        if not rows:
            break
        after = rows[-1].id
        succeeded = [p for p in rows if p.status == "succeeded"]
        transfers = ledger.transfers_by_id(tx, [f"payment:{p.id}" for p in succeeded])
        for payment in rows:
            payments_checked += 1
            _check_payment(result, payment, transfers.get(f"payment:{payment.id}"))
    now = tx.now()
    since = now - timedelta(days=options.provider_window_days)
    comparison = payments.provider_comparison(tx, since=since, until=now + timedelta(seconds=1))
    for compared in comparison.invoices:
        _check_comparison(result, compared)
    for obj in comparison.unmatched:
        result.add(
            Finding(
                DiscrepancyKind.PAYMENT_PROVIDER,
                key=f"unmatched:{obj.provider}:{obj.object_type}:{obj.object_id}",
                objects={
                    "problem": "missing_here",
                    "provider": obj.provider,
                    "object_type": obj.object_type,
                    "object_id": obj.object_id,
                    "event_id": obj.event_id,
                    **{k: v for k, v in obj.metadata.items()},
                },
                currency=obj.currency,
                expected_minor=obj.amount_minor,
                actual_minor=None,
                detail=f"the provider has {obj.object_type} {obj.object_id} "
                f"({obj.status}) with no counterpart here",
            )
        )
    result.scope = {
        "invoices": invoices,
        "payments": payments_checked,
        "provider_compared_invoices": len(comparison.invoices),
        "provider_window": [since.isoformat(), now.isoformat()],
        "provider_truncated": comparison.truncated,
        "source": "payments.service.provider_comparison (stored webhooks and syncs)",
    }
    return result


def _check_comparison(result: CheckResult, compared: payments.InvoiceComparison) -> None:
    base = {
        "invoice_id": compared.invoice_id,
        "invoice_number": compared.invoice_number,
        "customer_id": compared.customer_id,
        "collection_id": compared.collection_id,
    }
    for p in compared.payments:
        if p.agrees:
            continue
        view = p.provider_view
        result.add(
            Finding(
                DiscrepancyKind.PAYMENT_PROVIDER,
                key=f"payment:{p.payment_id}:provider",
                objects={
                    **base,
                    "problem": "status" if view.state != p.status else "amount",
                    "payment_id": p.payment_id,
                    "provider": p.provider,
                    "provider_payment_id": p.provider_payment_id,
                    "status": p.status,
                    "provider_status": view.status,
                    "provider_source": view.source,
                },
                currency=p.currency,
                expected_minor=view.amount_minor,
                actual_minor=p.amount_minor,
                detail=f"payment {p.payment_id} is {p.status} ({p.amount_minor} {p.currency}) "
                f"here; the provider ({view.source}) says {view.status or 'nothing'}"
                + (f" ({view.amount_minor} {view.currency})" if view.amount_minor else ""),
            )
        )
    if compared.collected_minor != compared.provider_collected_minor:
        result.add(
            Finding(
                DiscrepancyKind.PAYMENT_PROVIDER,
                key=f"invoice:{compared.invoice_id}:provider_collected",
                objects={**base, "problem": "amount"},
                currency=compared.currency,
                expected_minor=compared.provider_collected_minor,
                actual_minor=compared.collected_minor,
                detail=f"invoice {compared.invoice_number}: we collected "
                f"{compared.collected_minor}, the provider says "
                f"{compared.provider_collected_minor}",
            )
        )


def _check_collection(
    result: CheckResult, invoice: Invoice, collection: Collection | None, grace: datetime
) -> None:
    objects = {
        "invoice_id": invoice.id,
        "invoice_number": invoice.number,
        "customer_id": invoice.customer_id,
    }
    if collection is None:
        finalized = invoice.finalized_at
        if invoice.amount_due_minor > 0 and finalized is not None and finalized < grace:
            result.add(
                Finding(
                    DiscrepancyKind.PAYMENT_PROVIDER,
                    key=f"invoice:{invoice.id}:missing_collection",
                    objects={**objects, "problem": "missing_collection"},
                    currency=invoice.currency,
                    expected_minor=invoice.amount_due_minor,
                    actual_minor=0,
                    detail=f"invoice {invoice.number} is due {invoice.amount_due_minor} "
                    "but payments never started collecting it",
                )
            )
        return
    objects["collection_id"] = collection.id
    if (
        collection.amount_due_minor != invoice.amount_due_minor
        or collection.currency != invoice.currency
    ):
        result.add(
            Finding(
                DiscrepancyKind.PAYMENT_PROVIDER,
                key=f"invoice:{invoice.id}:amount",
                objects={**objects, "problem": "amount"},
                currency=invoice.currency,
                expected_minor=invoice.amount_due_minor,
                actual_minor=collection.amount_due_minor,
                detail=f"invoice {invoice.number} is due {invoice.amount_due_minor} "
                f"{invoice.currency}; payments collects {collection.amount_due_minor} "
                f"{collection.currency}",
            )
        )
    invoice_paid, collection_paid = invoice.status == "paid", collection.status == "paid"
    if invoice_paid != collection_paid:
        result.add(
            Finding(
                DiscrepancyKind.PAYMENT_PROVIDER,
                key=f"invoice:{invoice.id}:status",
                objects={
                    **objects,
                    "problem": "status",
                    "invoice_status": invoice.status,
                    "collection_status": collection.status,
                },
                currency=invoice.currency,
                expected_minor=invoice.amount_paid_minor,
                actual_minor=collection.amount_paid_minor,
                detail=f"invoice {invoice.number} is {invoice.status} but its collection is "
                f"{collection.status}",
            )
        )


def _check_payment(result: CheckResult, payment: Payment, transfer: Any) -> None:
    if payment.status != "succeeded":
        return
    if payment.provider != "manual" and not payment.provider_payment_id:
        result.add(
            _payment_finding(
                payment,
                "missing_at_provider",
                f"payment {payment.id} succeeded but has no provider payment id",
            )
        )
    moved = 0
    if transfer is not None:
        moved = sum(
            e.amount_minor
            for e in transfer.entries
            if e.direction == Direction.DEBIT and e.phase == Phase.POSTED
        )
    if moved != payment.amount_minor:
        result.add(
            _payment_finding(
                payment,
                "ledger",
                f"payment {payment.id} of {payment.amount_minor} posted {moved} to the ledger",
                expected_minor=payment.amount_minor,
                actual_minor=moved,
            )
        )


# Clearing accounts ---------------------------------------------------------------------------


def clearing_accounts(tx: Tx, options: Options) -> CheckResult:
    """``stripe_clearing`` returns to zero once the provider has paid out: what it holds must
    be at most the net of payments that succeeded within the in-flight window."""
    result = CheckResult()
    since = tx.now() - timedelta(days=options.clearing_in_flight_days)
    currencies = sorted(
        tx.session.scalars(
            select(LedgerAccount.currency)
            .where(LedgerAccount.code == chart.STRIPE_CLEARING)
            .distinct()
        )
    )
    for currency in currencies:
        balance = payments.clearing_balance(tx, currency, provider="stripe")
        outstanding = balance.outstanding.amount_minor
        in_flight = 0
        for amount, fee, refunded in tx.session.execute(
            select(Payment.amount_minor, Payment.fee_minor, Payment.amount_refunded_minor).where(
                Payment.provider == "stripe",
                Payment.status == "succeeded",
                Payment.currency == currency,
                Payment.succeeded_at >= since,
            )
        ):
            in_flight += amount - (fee or 0) - refunded
        if outstanding < 0 or outstanding > in_flight:
            result.add(
                Finding(
                    DiscrepancyKind.CLEARING_BALANCE,
                    key=f"{chart.STRIPE_CLEARING}:{currency}",
                    objects={
                        "account": chart.STRIPE_CLEARING,
                        "in_flight_since": since.isoformat(),
                    },
                    currency=currency,
                    expected_minor=in_flight,
                    actual_minor=outstanding,
                    detail=(
                        f"{chart.STRIPE_CLEARING} holds {outstanding} {currency}; at most "
                        f"{in_flight} can still be in flight (payments of the last "
                        f"{options.clearing_in_flight_days} days)"
                    ),
                )
            )
    result.scope = {"currencies": currencies, "in_flight_days": options.clearing_in_flight_days}
    return result


CHECKS: Final[dict[str, Check]] = {
    "ledger": ledger_invariants,
    "invoice_ledger": invoices_against_ledger,
    "invoice_usage": invoices_against_usage,
    "rollup_events": rollups_against_events,
    "payment_provider": payments_against_provider,
    "clearing": clearing_accounts,
}
