"""Invoicing's SQL.

Besides its own tables it reads (never writes) two of subscriptions' tables, for the scans of
the period-close job: which ended periods have no finalized invoice yet (an anti-join a page of
``subscriptions.ended_periods`` cannot express), which opening fees are due, and which open
periods have a billing threshold. It also takes the subscription row lock (``FOR UPDATE``, the
same lock the subscriptions service takes) for a whole batch in one statement, with ``SKIP
LOCKED`` in the job so that two workers split the work instead of waiting on each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, exists, func, insert, or_, select
from sqlalchemy.orm import aliased

from tallybook.catalog.models import PlanVersion
from tallybook.db import Tx
from tallybook.invoicing.domain import (
    FINALIZED,
    InvoiceKind,
    InvoiceStatus,
    Prior,
    json_text,
    jsonable,
)
from tallybook.invoicing.models import (
    BillingThreshold,
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    InvoicePayment,
)
from tallybook.kit.pagination import PageRequest
from tallybook.subscriptions.models import PendingCharge, Subscription, SubscriptionPeriod

_FINALIZED = [str(s) for s in FINALIZED]
_CHUNK = 500


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> list[Sequence[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


# Invoices ---------------------------------------------------------------------------------


def get(tx: Tx, invoice_id: str, *, for_update: bool = False) -> Invoice | None:
    query = select(Invoice).where(Invoice.id == invoice_id)
    if for_update:
        query = query.execution_options(populate_existing=True)
        if tx.is_postgres:
            query = query.with_for_update()
    return tx.session.scalar(query)


def by_number(tx: Tx, number: str) -> Invoice | None:
    return tx.session.scalar(select(Invoice).where(Invoice.number == number))


def lines_of(tx: Tx, invoice_id: str) -> list[InvoiceLine]:
    return list(
        tx.session.scalars(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id == invoice_id)
            .order_by(InvoiceLine.position)
        )
    )


def line(tx: Tx, line_id: str) -> InvoiceLine | None:
    return tx.session.get(InvoiceLine, line_id)


def page(
    tx: Tx,
    request: PageRequest,
    *,
    customer_id: str | None = None,
    subscription_id: str | None = None,
    status: str | None = None,
) -> list[Invoice]:
    query = select(Invoice)
    if customer_id is not None:
        query = query.where(Invoice.customer_id == customer_id)
    if subscription_id is not None:
        query = query.where(Invoice.subscription_id == subscription_id)
    if status is not None:
        query = query.where(Invoice.status == status)
    if request.starting_after:
        query = query.where(Invoice.id < request.starting_after).order_by(Invoice.id.desc())
    elif request.ending_before:
        query = query.where(Invoice.id > request.ending_before).order_by(Invoice.id.asc())
    else:
        query = query.order_by(Invoice.id.desc())
    rows = list(tx.session.scalars(query.limit(request.limit + 1)))
    if request.ending_before:
        rows = list(reversed(rows[: request.limit])) + rows[request.limit :]
    return rows


def of_subscription(tx: Tx, subscription_id: str) -> list[Invoice]:
    return list(
        tx.session.scalars(
            select(Invoice).where(Invoice.subscription_id == subscription_id).order_by(Invoice.id)
        )
    )


def existing(
    tx: Tx, keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], list[Invoice]]:
    """Invoices of (subscription, period, kind), every sequence, by key."""
    result: dict[tuple[str, str, str], list[Invoice]] = {}
    periods = sorted({period for _, period, _ in keys})
    wanted = set(keys)
    for chunk in _chunks(periods):
        # populate_existing: rows read before the subscription lock was taken are refreshed
        # (another worker may have finalized them meanwhile).
        query = (
            select(Invoice)
            .where(Invoice.period_id.in_(list(chunk)))
            .execution_options(populate_existing=True)
        )
        for row in tx.session.scalars(query):
            key = (row.subscription_id, row.period_id, row.kind)
            if key in wanted:
                result.setdefault(key, []).append(row)
    return result


def of_periods(tx: Tx, period_ids: Sequence[str]) -> list[Invoice]:
    rows: list[Invoice] = []
    for chunk in _chunks(sorted(set(period_ids))):
        query = (
            select(Invoice)
            .where(Invoice.period_id.in_(list(chunk)))
            .execution_options(populate_existing=True)
        )
        rows += list(tx.session.scalars(query))
    return rows


def priors(
    tx: Tx, period_ids: Sequence[str], *, exclude_invoice_ids: Sequence[str] = ()
) -> dict[str, dict[str, Prior]]:
    """What finalized invoices billed per (period, line key), void ones included (voiding
    forgives a bill; it never moves it to a later invoice)."""
    totals: dict[tuple[str, str], tuple[int, Decimal, Decimal | None, list[str]]] = {}
    for chunk in _chunks(sorted(set(period_ids))):
        rows = tx.session.execute(
            select(
                InvoiceLine.period_id,
                InvoiceLine.line_key,
                InvoiceLine.amount_minor,
                InvoiceLine.usage_credit_quantity,
                InvoiceLine.quantity,
                InvoiceLine.invoice_id,
            )
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(
                InvoiceLine.period_id.in_(list(chunk)),
                Invoice.status.in_(_FINALIZED),
                Invoice.id.not_in(list(exclude_invoice_ids)),
            )
            .order_by(InvoiceLine.invoice_id, InvoiceLine.position)
        )
        for period_id, key, amount, credited, quantity, invoice_id in rows:
            if period_id is None:
                continue
            amount_sum, credit_sum, _, invoices = totals.get(
                (period_id, key), (0, Decimal(0), None, [])
            )
            if invoice_id not in invoices:
                invoices = [*invoices, invoice_id]
            totals[(period_id, key)] = (
                amount_sum + amount,
                credit_sum + credited,
                quantity,
                invoices,
            )
    result: dict[str, dict[str, Prior]] = {}
    for (period_id, key), (amount, credited, quantity, invoices) in totals.items():
        result.setdefault(period_id, {})[key] = Prior(amount, credited, quantity, tuple(invoices))
    return result


def finalized_cycle_periods(tx: Tx, subscription_id: str) -> set[str]:
    return set(
        tx.session.scalars(
            select(Invoice.period_id).where(
                Invoice.subscription_id == subscription_id,
                Invoice.kind == InvoiceKind.CYCLE,
                Invoice.status.in_(_FINALIZED),
            )
        )
    )


def payment(tx: Tx, payment_id: str) -> InvoicePayment | None:
    return tx.session.get(InvoicePayment, payment_id)


def payments_of(tx: Tx, invoice_id: str) -> list[InvoicePayment]:
    return list(
        tx.session.scalars(
            select(InvoicePayment)
            .where(InvoicePayment.invoice_id == invoice_id)
            .order_by(InvoicePayment.paid_at)
        )
    )


# Credit notes -----------------------------------------------------------------------------


def credit_note(tx: Tx, credit_note_id: str) -> CreditNote | None:
    return tx.session.get(CreditNote, credit_note_id)


def credit_notes_of(tx: Tx, invoice_id: str) -> list[CreditNote]:
    return list(
        tx.session.scalars(
            select(CreditNote).where(CreditNote.invoice_id == invoice_id).order_by(CreditNote.id)
        )
    )


def credit_note_lines(tx: Tx, credit_note_ids: Sequence[str]) -> list[CreditNoteLine]:
    if not credit_note_ids:
        return []
    return list(
        tx.session.scalars(
            select(CreditNoteLine)
            .where(CreditNoteLine.credit_note_id.in_(list(credit_note_ids)))
            .order_by(CreditNoteLine.id)
        )
    )


def credited_by_line(tx: Tx, invoice_id: str) -> dict[str, int]:
    rows = tx.session.execute(
        select(CreditNoteLine.invoice_line_id, func.sum(CreditNoteLine.amount_minor))
        .join(CreditNote, CreditNote.id == CreditNoteLine.credit_note_id)
        .where(CreditNote.invoice_id == invoice_id)
        .group_by(CreditNoteLine.invoice_line_id)
    )
    return {line_id: int(total) for line_id, total in rows}


def credit_notes_page(
    tx: Tx, request: PageRequest, *, invoice_id: str | None, customer_id: str | None
) -> list[CreditNote]:
    query = select(CreditNote)
    if invoice_id is not None:
        query = query.where(CreditNote.invoice_id == invoice_id)
    if customer_id is not None:
        query = query.where(CreditNote.customer_id == customer_id)
    if request.starting_after:
        query = query.where(CreditNote.id < request.starting_after)
    query = query.order_by(CreditNote.id.desc()).limit(request.limit + 1)
    return list(tx.session.scalars(query))


# Thresholds -------------------------------------------------------------------------------


def threshold_override(tx: Tx, customer_id: str) -> BillingThreshold | None:
    return tx.session.get(BillingThreshold, customer_id)


# Scans of the jobs (reading subscriptions' tables) ------------------------------------------


def lock_subscriptions(
    tx: Tx, subscription_ids: Sequence[str], *, skip_locked: bool
) -> dict[str, Subscription]:
    """Lock the subscriptions' rows in id order; with ``skip_locked`` the ones another worker
    holds are left out (PostgreSQL; SQLite has one writer at a time anyway)."""
    ids = sorted(set(subscription_ids))
    if not ids:
        return {}
    query = (
        select(Subscription)
        .where(Subscription.id.in_(ids))
        .order_by(Subscription.id)
        .execution_options(populate_existing=True)
    )
    if tx.is_postgres:
        query = query.with_for_update(skip_locked=skip_locked)
    return {row.id: row for row in tx.session.scalars(query)}


def load_periods(tx: Tx, period_ids: Sequence[str]) -> dict[str, SubscriptionPeriod]:
    result: dict[str, SubscriptionPeriod] = {}
    for chunk in _chunks(sorted(set(period_ids))):
        for row in tx.session.scalars(
            select(SubscriptionPeriod).where(SubscriptionPeriod.id.in_(list(chunk)))
        ):
            result[row.id] = row
    return result


def periods_to_close(
    tx: Tx,
    *,
    ended_from: datetime,
    ended_before: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
    with_draft: bool | None = None,
) -> list[tuple[datetime, str, str]]:
    """(end, period id, subscription id) of regular periods that ended in the range and have
    no finalized cycle invoice, by (end, id). ``with_draft``: only those that have a draft
    (True), only those without any invoice (False), or both (None)."""
    period = SubscriptionPeriod
    finalized = exists().where(
        Invoice.period_id == period.id,
        Invoice.kind == InvoiceKind.CYCLE,
        Invoice.status.in_(_FINALIZED),
    )
    query = select(period.end_at, period.id, period.subscription_id).where(
        period.status == "ended",
        period.kind == "regular",
        period.end_at >= ended_from,
        period.end_at < ended_before,
        ~finalized,
    )
    if with_draft is not None:
        drafted = exists().where(
            Invoice.period_id == period.id,
            Invoice.kind == InvoiceKind.CYCLE,
            Invoice.status == InvoiceStatus.DRAFT,
        )
        query = query.where(drafted if with_draft else ~drafted)
    if after is not None:
        query = query.where(
            or_(period.end_at > after[0], and_(period.end_at == after[0], period.id > after[1]))
        )
    rows = tx.session.execute(query.order_by(period.end_at, period.id).limit(limit))
    return [(end, pid, sid) for end, pid, sid in rows]


def openings_due(
    tx: Tx, now: datetime, *, after: str | None, limit: int
) -> list[tuple[str, str, bool]]:
    """(period id, subscription id, invoice_now) with pending charges whose service started
    that no cycle invoice will take: charges a change asked to invoice now, and the fees of a
    period that opened without a regular period ending where it starts (a first period, the
    first period after a trial or a pause)."""
    charge = PendingCharge
    period = SubscriptionPeriod
    previous = aliased(SubscriptionPeriod)
    has_previous = exists().where(
        previous.subscription_id == period.subscription_id,
        previous.kind == "regular",
        previous.end_at == period.start_at,
        previous.id != period.id,
    )
    query = (
        select(charge.period_id, charge.subscription_id, charge.invoice_now)
        .join(period, period.id == charge.period_id)
        .where(
            charge.status == "pending",
            charge.service_start_at <= now,
            or_(charge.invoice_now.is_(True), ~has_previous),
        )
        .distinct()
        .order_by(charge.period_id)
    )
    if after is not None:
        query = query.where(charge.period_id > after)
    return [
        (pid, sid, bool(now_flag)) for pid, sid, now_flag in tx.session.execute(query.limit(limit))
    ]


def threshold_candidates(
    tx: Tx, now: datetime, *, after: str | None, limit: int
) -> list[tuple[str, str, str, int]]:
    """(subscription id, current period id, customer id, threshold) of subscriptions in a
    current, regular period whose version (or customer override) has a billing threshold."""
    override = aliased(BillingThreshold)
    threshold = func.coalesce(override.amount_minor, PlanVersion.billing_threshold_minor)
    query = (
        select(Subscription.id, SubscriptionPeriod.id, Subscription.customer_id, threshold)
        .join(SubscriptionPeriod, SubscriptionPeriod.id == Subscription.current_period_id)
        .join(PlanVersion, PlanVersion.id == Subscription.plan_version_id)
        .outerjoin(override, override.customer_id == Subscription.customer_id)
        .where(
            SubscriptionPeriod.kind == "regular",
            SubscriptionPeriod.status == "current",
            SubscriptionPeriod.end_at > now,
            threshold.is_not(None),
            or_(override.customer_id.is_(None), override.amount_minor.is_not(None)),
        )
        .order_by(Subscription.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(Subscription.id > after)
    return [(sid, pid, cid, int(amount)) for sid, pid, cid, amount in tx.session.execute(query)]


def count_periods_to_close(tx: Tx, *, ended_from: datetime, ended_before: datetime) -> int:
    period = SubscriptionPeriod
    finalized = exists().where(
        Invoice.period_id == period.id,
        Invoice.kind == InvoiceKind.CYCLE,
        Invoice.status.in_(_FINALIZED),
    )
    query = (
        select(func.count())
        .select_from(period)
        .where(
            period.status == "ended",
            period.kind == "regular",
            period.end_at >= ended_from,
            period.end_at < ended_before,
            ~finalized,
        )
    )
    return int(tx.session.scalar(query) or 0)


def stale_drafts(tx: Tx, *, updated_before: datetime, limit: int) -> list[tuple[str, str, str]]:
    """(subscription id, period id, kind) of drafts last assembled before ``updated_before``."""
    rows = tx.session.execute(
        select(Invoice.subscription_id, Invoice.period_id, Invoice.kind)
        .where(Invoice.status == InvoiceStatus.DRAFT, Invoice.updated_at < updated_before)
        .order_by(Invoice.updated_at)
        .limit(limit)
    )
    return [(s, p, k) for s, p, k in rows]


_LINE_COLUMNS = tuple(column.name for column in InvoiceLine.__table__.columns)


def insert_lines(tx: Tx, rows: Sequence[dict[str, Any]]) -> None:
    """Write invoice lines (each row has every column; ``breakdown`` as a plain mapping that
    may hold Decimals and datetimes). On PostgreSQL one ``COPY`` for the batch, in the
    transaction's connection; elsewhere one multi-row insert."""
    if not rows:
        return
    tx.session.flush()  # the invoices first (the lines reference them)
    if not tx.is_postgres:
        tx.session.execute(
            insert(InvoiceLine), [{**row, "breakdown": jsonable(row["breakdown"])} for row in rows]
        )
        return
    cursor = tx.connection.connection.cursor()
    try:
        statement = f"COPY {InvoiceLine.__tablename__} ({', '.join(_LINE_COLUMNS)}) FROM STDIN"
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(
                    [
                        json_text(row[name]) if name == "breakdown" else row[name]
                        for name in _LINE_COLUMNS
                    ]
                )
    finally:
        cursor.close()
