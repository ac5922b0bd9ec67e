"""Late events and the per-customer "invoiced through" watermark.

Invoicing owns the watermark's meaning: usage before ``invoiced_through`` has been invoiced.
An event whose ``time`` is before its customer's watermark is still accepted (it lands in
its own hour, like any event) and is also recorded as late and unbilled, so the next invoice
can bill the difference as an adjustment and then mark it billed.

Protocol for invoicing, in one transaction:

1. ``mark_invoiced_through(tx, customer_id, period_end)`` **first**: on PostgreSQL it locks the
   customer row, which waits for in-flight ingestion of that customer and holds new ingestion
   of that customer back until commit;
2. then read the period's usage (``usage_total``): every event is either in it, or arrives
   after the commit, sees the new watermark and is marked late. None falls between.
3. For late events: ``late_usage_total`` / ``list_late_events`` with a ``through_seq`` fixed
   at the start, then ``mark_late_billed(…, through_seq=…)`` in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm.util import identity_key

from tallybook.catalog import meters as catalog_meters
from tallybook.catalog.meter_models import Aggregation
from tallybook.db import Tx
from tallybook.kit.clock import ensure_utc
from tallybook.kit.errors import InvalidRequest, NotFound
from tallybook.metering import repository
from tallybook.metering.aggregate import Accumulator, Dims
from tallybook.metering.cloudevents import Rejection, decode_data
from tallybook.metering.errors import MeteringCode
from tallybook.metering.ingest import store
from tallybook.metering.matching import CompiledMeter, compile_meter
from tallybook.metering.models import InvoicedThrough, LateEvent
from tallybook.metering.usage import GroupBy, feed_raw, group_names_of
from tallybook.work import events as domain_events

LATE_PAGE_MAX = 1_000


def mark_invoiced_through(tx: Tx, customer_id: str, instant: datetime) -> datetime:
    """Advance the customer's watermark to ``instant`` (never backwards); returns it.

    Call it before reading the invoiced period's usage, in the same transaction (see the
    module docstring for why)."""
    instant = ensure_utc(instant, param="invoiced_through")
    if not store.lock_customer_for_invoicing(tx, customer_id):
        raise NotFound("customer", customer_id, param="customer_id")
    row = tx.session.get(InvoicedThrough, customer_id)
    if row is None:
        row = InvoicedThrough(
            customer_id=customer_id, invoiced_through=instant, updated_at=tx.now()
        )
        tx.session.add(row)
    elif instant > row.invoiced_through:
        row.invoiced_through = instant
        row.updated_at = tx.now()
    tx.session.flush()
    return row.invoiced_through


def mark_invoiced_through_many(tx: Tx, through: Mapping[str, datetime]) -> dict[str, datetime]:
    """:func:`mark_invoiced_through` for many customers: one lock statement (customer id
    order), one read and one write for the batch. Returns each customer's watermark."""
    if not through:
        return {}
    wanted = {cid: ensure_utc(at, param="invoiced_through") for cid, at in through.items()}
    customer_ids = sorted(wanted)
    missing = set(customer_ids) - store.lock_customers_for_invoicing(tx, customer_ids)
    if missing:
        raise NotFound("customer", min(missing), param="customer_id")
    tx.session.flush()  # pending watermark objects first; the rows are written below
    current = store.watermarks(tx, customer_ids)
    now = tx.now()
    result: dict[str, datetime] = {}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for customer_id in customer_ids:
        instant, before = wanted[customer_id], current.get(customer_id)
        if before is None:
            inserts.append(
                {"customer_id": customer_id, "invoiced_through": instant, "updated_at": now}
            )
        elif instant > before:
            updates.append(
                {"customer_id": customer_id, "invoiced_through": instant, "updated_at": now}
            )
        result[customer_id] = instant if before is None or instant > before else before
    if inserts:
        tx.session.execute(insert(InvoicedThrough), inserts)
    if updates:  # by primary key
        tx.session.execute(update(InvoicedThrough), updates)
    for customer_id in customer_ids:  # objects the session holds would be stale
        held = tx.session.identity_map.get(identity_key(InvoicedThrough, customer_id))
        if held is not None:
            tx.session.expire(held)
    return result


def invoiced_through(tx: Tx, customer_id: str) -> datetime | None:
    row = tx.session.get(InvoicedThrough, customer_id)
    return row.invoiced_through if row is not None else None


@dataclass(frozen=True, slots=True)
class LateEventRecord:
    seq: int
    source: str
    event_id: str
    type: str
    customer_id: str
    time: datetime
    received_at: datetime
    billed_at: datetime | None
    billed_ref: str | None
    data: dict[str, Any] | None


def list_late_events(
    tx: Tx,
    *,
    customer_id: str,
    meter_id: str | None = None,
    include_billed: bool = False,
    after_seq: int | None = None,
    through_seq: int | None = None,
    limit: int = 100,
) -> list[LateEventRecord]:
    """Late events of a customer in seq order (unbilled only unless ``include_billed``).
    With ``meter_id``: only the events that meter counts."""
    limit = max(1, min(limit, LATE_PAGE_MAX))
    compiled = None
    event_type = None
    if meter_id is not None:
        meter = catalog_meters.get_meter(tx, meter_id)
        compiled, event_type = compile_meter(meter), meter.event_type
    result: list[LateEventRecord] = []
    cursor = after_seq
    while len(result) < limit:
        rows = repository.unbilled_late(
            tx,
            customer_id=customer_id,
            after_seq=cursor,
            through_seq=through_seq,
            limit=limit,
            event_type=event_type,
            include_billed=include_billed,
        )
        if not rows:
            break
        stored = repository.events_by_seqs(tx, [r.seq for r in rows])
        for row in rows:
            event = stored[row.seq]
            data = decode_data(event.data)
            if compiled is not None and not _counts(compiled, data):
                continue
            result.append(
                LateEventRecord(
                    seq=row.seq,
                    source=event.source,
                    event_id=event.event_id,
                    type=event.type,
                    customer_id=row.customer_id,
                    time=row.time,
                    received_at=row.received_at,
                    billed_at=row.billed_at,
                    billed_ref=row.billed_ref,
                    data=data,
                )
            )
            if len(result) == limit:
                break
        cursor = rows[-1].seq
    return result


def _counts(compiled: CompiledMeter, data: dict[str, Any] | None) -> bool:
    if compiled.filters and not compiled.matches(data):
        return False
    return not isinstance(compiled.contribution(data), Rejection)


def late_usage_total(
    tx: Tx,
    *,
    meter_id: str,
    customer_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    through_seq: int | None = None,
    group_by: GroupBy = False,
) -> Decimal | dict[Dims, Decimal]:
    """The usage of a customer's unbilled late events (time in ``[start, end)`` when given,
    seq ≤ ``through_seq`` when given). Additive meters only (count, sum): for max, min,
    latest and unique count the adjustment is ``usage_total`` over the invoiced period now,
    minus what was billed."""
    meter = catalog_meters.get_meter(tx, meter_id)
    aggregation = Aggregation(meter.aggregation)
    if aggregation not in (Aggregation.COUNT, Aggregation.SUM):
        raise InvalidRequest(
            MeteringCode.USAGE_NOT_ADDITIVE,
            f"meter {meter.key} aggregates by {aggregation.value}: late usage is not additive; "
            "re-read usage_total for the invoiced period instead",
            param="meter_id",
        )
    names = group_names_of(meter, group_by)
    compiled = compile_meter(meter)
    dims = list(compiled.dim_names)
    accumulator = Accumulator(aggregation, dims, dims)
    cursor: int | None = None
    while True:
        rows = repository.unbilled_late(
            tx,
            customer_id=customer_id,
            after_seq=cursor,
            through_seq=through_seq,
            limit=LATE_PAGE_MAX,
            event_type=meter.event_type,
        )
        if not rows:
            break
        cursor = rows[-1].seq
        wanted = [
            r.seq
            for r in rows
            if (start is None or r.time >= start) and (end is None or r.time < end)
        ]
        stored = repository.events_by_seqs(tx, wanted)
        feed_raw(
            compiled,
            ((seq, stored[seq].time, stored[seq].data) for seq in wanted),
            lambda _time: accumulator,
        )
    grouped = accumulator.regroup(names)
    return grouped.total() if names is None else grouped.by_group()


def late_seq_max(tx: Tx, customer_id: str) -> int | None:
    """The newest unbilled late event's seq: fix it before billing, pass it as through_seq."""
    value = tx.session.scalar(
        select(func.max(LateEvent.seq)).where(
            LateEvent.customer_id == customer_id, LateEvent.billed_at.is_(None)
        )
    )
    return int(value) if value is not None else None


def mark_late_billed(
    tx: Tx,
    *,
    customer_id: str,
    through_seq: int,
    billed_ref: str,
    seqs: Sequence[int] | None = None,
) -> int:
    """Mark the customer's unbilled late events up to ``through_seq`` (or exactly ``seqs``)
    billed by ``billed_ref`` (an invoice id). Returns how many. Idempotent."""
    statement = update(LateEvent).where(
        LateEvent.customer_id == customer_id,
        LateEvent.billed_at.is_(None),
        LateEvent.seq <= through_seq,
    )
    if seqs is not None:
        statement = statement.where(LateEvent.seq.in_(list(seqs)))
    result = tx.session.execute(statement.values(billed_at=tx.now(), billed_ref=billed_ref))
    count = int(result.rowcount)  # type: ignore[attr-defined]
    if count:
        domain_events.emit(
            tx,
            "usage.late_events_billed",
            customer_id=customer_id,
            data={"count": count, "billed_ref": billed_ref, "through_seq": through_seq},
        )
    return count
