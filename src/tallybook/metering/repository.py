"""Metering's read SQL: rollups, distinct values, raw events, late events, dead letters.

PostgreSQL aggregates in SQL (``NUMERIC`` columns); SQLite returns the hourly rows and Python
combines them (its decimals are text, and SQL arithmetic on text would go through floats).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Final

from sqlalchemy import and_, func, or_, select, text

from tallybook.catalog.meter_models import Aggregation
from tallybook.db import Tx
from tallybook.metering.aggregate import Window, window_floor
from tallybook.metering.models import DeadLetter, LateEvent, MeteringEvent, Rollup, RollupValue

RAW_FETCH_CHUNK: Final = 5_000

#: (bucket start or None, dims_key, quantity, latest_time, latest_seq)
RollupRow = tuple[datetime | None, str, Decimal, datetime | None, int | None]

_PG_BUCKET: Final = {
    None: "NULL::timestamptz",
    Window.HOUR: "window_start",
    Window.DAY: "date_trunc('day', window_start, 'UTC')",
    Window.MONTH: "date_trunc('month', window_start, 'UTC')",
}
_PG_AGGREGATE: Final = {
    Aggregation.SUM: "SUM(quantity)",
    Aggregation.COUNT: "SUM(quantity)",
    Aggregation.MAX: "MAX(quantity)",
    Aggregation.MIN: "MIN(quantity)",
}
_RANGE: Final = (
    "meter_id = :meter_id AND customer_id = :customer_id "
    "AND window_start >= :start AND window_start < :end"
)


def _bucket(instant: datetime, bucket: Window | None) -> datetime | None:
    return window_floor(instant, bucket) if bucket is not None else None


def rollup_rows(
    tx: Tx,
    *,
    meter_id: str,
    customer_id: str,
    aggregation: Aggregation,
    start: datetime,
    end: datetime,
    bucket: Window | None,
) -> list[RollupRow]:
    """Hourly rollups in ``[start, end)`` (hour-aligned), combined per bucket and dims."""
    params = {"meter_id": meter_id, "customer_id": customer_id, "start": start, "end": end}
    if tx.is_postgres:
        b = _PG_BUCKET[bucket]
        if aggregation is Aggregation.LATEST:
            sql = (
                f"SELECT DISTINCT ON (b, dims_key) {b} AS b, dims_key, quantity, latest_time, "
                f"latest_seq FROM metering_rollups WHERE {_RANGE} "
                "ORDER BY b, dims_key, latest_time DESC, latest_seq DESC"
            )
        else:
            sql = (
                f"SELECT {b} AS b, dims_key, {_PG_AGGREGATE[aggregation]}, NULL, NULL "
                f"FROM metering_rollups WHERE {_RANGE} GROUP BY b, dims_key"
            )
        rows = tx.session.execute(text(sql), params)
        return [(r[0], r[1], Decimal(r[2]), r[3], r[4]) for r in rows]
    query = select(
        Rollup.window_start, Rollup.dims_key, Rollup.quantity, Rollup.latest_time, Rollup.latest_seq
    ).where(
        Rollup.meter_id == meter_id,
        Rollup.customer_id == customer_id,
        Rollup.window_start >= start,
        Rollup.window_start < end,
    )
    return [
        (_bucket(ws, bucket), dims_key, quantity, latest_time, latest_seq)
        for ws, dims_key, quantity, latest_time, latest_seq in tx.session.execute(query)
    ]


def distinct_values(
    tx: Tx,
    *,
    meter_id: str,
    customer_id: str,
    start: datetime,
    end: datetime,
    bucket: Window | None,
) -> list[tuple[datetime | None, str, str]]:
    """Distinct (bucket, dims_key, value) of a unique-count meter in an hour-aligned range."""
    params = {"meter_id": meter_id, "customer_id": customer_id, "start": start, "end": end}
    if tx.is_postgres:
        sql = (
            f"SELECT DISTINCT {_PG_BUCKET[bucket]} AS b, dims_key, value_key "
            f"FROM metering_rollup_values WHERE {_RANGE}"
        )
        return [(r[0], r[1], r[2]) for r in tx.session.execute(text(sql), params)]
    query = select(RollupValue.window_start, RollupValue.dims_key, RollupValue.value_key).where(
        RollupValue.meter_id == meter_id,
        RollupValue.customer_id == customer_id,
        RollupValue.window_start >= start,
        RollupValue.window_start < end,
    )
    return list({(_bucket(ws, bucket), d, v) for ws, d, v in tx.session.execute(query)})


def raw_events(
    tx: Tx,
    *,
    customer_id: str,
    event_type: str,
    ranges: Sequence[tuple[datetime, datetime]],
    seq_max: int | None = None,
) -> Iterator[tuple[int, datetime, str | None]]:
    """(seq, time, data) of a customer's events of one type in the given time ranges."""
    spans = [r for r in ranges if r[0] < r[1]]
    if not spans:
        return
    conditions = [and_(MeteringEvent.time >= a, MeteringEvent.time < b) for a, b in spans]
    query = select(MeteringEvent.seq, MeteringEvent.time, MeteringEvent.data).where(
        MeteringEvent.customer_id == customer_id,
        MeteringEvent.type == event_type,
        or_(*conditions),
    )
    if seq_max is not None:
        query = query.where(MeteringEvent.seq <= seq_max)
    result = tx.session.execute(query.execution_options(yield_per=RAW_FETCH_CHUNK))
    for row in result:
        yield row[0], row[1], row[2]


def events_page(
    tx: Tx,
    *,
    customer_id: str,
    event_type: str,
    start: datetime,
    end: datetime,
    after: tuple[datetime, int] | None,
    limit: int,
    seqs: Sequence[int] | None = None,
) -> list[MeteringEvent]:
    """A customer's events of one type in ``[start, end)``, by (time, seq), after a cursor."""
    query = select(MeteringEvent).where(
        MeteringEvent.customer_id == customer_id,
        MeteringEvent.type == event_type,
        MeteringEvent.time >= start,
        MeteringEvent.time < end,
    )
    if after is not None:
        query = query.where(
            or_(
                MeteringEvent.time > after[0],
                and_(MeteringEvent.time == after[0], MeteringEvent.seq > after[1]),
            )
        )
    if seqs is not None:
        query = query.where(MeteringEvent.seq.in_(list(seqs)))
    return list(
        tx.session.scalars(query.order_by(MeteringEvent.time, MeteringEvent.seq).limit(limit))
    )


def events_by_seqs(tx: Tx, seqs: Sequence[int]) -> dict[int, MeteringEvent]:
    if not seqs:
        return {}
    rows = tx.session.scalars(select(MeteringEvent).where(MeteringEvent.seq.in_(list(seqs))))
    return {row.seq: row for row in rows}


def unbilled_late(
    tx: Tx,
    *,
    customer_id: str,
    after_seq: int | None,
    through_seq: int | None,
    limit: int,
    event_type: str | None = None,
    include_billed: bool = False,
) -> list[LateEvent]:
    query = select(LateEvent).where(LateEvent.customer_id == customer_id)
    if not include_billed:
        query = query.where(LateEvent.billed_at.is_(None))
    if after_seq is not None:
        query = query.where(LateEvent.seq > after_seq)
    if through_seq is not None:
        query = query.where(LateEvent.seq <= through_seq)
    if event_type is not None:
        query = query.where(LateEvent.type == event_type)
    return list(tx.session.scalars(query.order_by(LateEvent.seq).limit(limit)))


def last_event(tx: Tx) -> MeteringEvent | None:
    return tx.session.scalar(select(MeteringEvent).order_by(MeteringEvent.seq.desc()).limit(1))


def dead_letter_counts(tx: Tx) -> dict[tuple[str, str], int]:
    rows = tx.session.execute(
        select(DeadLetter.status, DeadLetter.code, func.count()).group_by(
            DeadLetter.status, DeadLetter.code
        )
    )
    return {(status, code): int(n) for status, code, n in rows}


def late_unbilled_count(tx: Tx) -> int:
    return int(
        tx.session.scalar(
            select(func.count()).select_from(LateEvent).where(LateEvent.billed_at.is_(None))
        )
        or 0
    )


def dead_letters_page(
    tx: Tx,
    *,
    status: str | None,
    code: str | None,
    starting_after: str | None,
    limit: int,
) -> list[DeadLetter]:
    """Newest first."""
    query = select(DeadLetter)
    if status is not None:
        query = query.where(DeadLetter.status == status)
    if code is not None:
        query = query.where(DeadLetter.code == code)
    if starting_after is not None:
        query = query.where(DeadLetter.id < starting_after)
    return list(tx.session.scalars(query.order_by(DeadLetter.id.desc()).limit(limit)))


def pending_dead_letters(
    tx: Tx, *, ids: Sequence[str] | None, code: str | None, limit: int
) -> list[DeadLetter]:
    """Oldest first. Not locked: a replay is idempotent by (source, id), and locking letters
    before the ingest locks would invert the ingestion lock order."""
    query = select(DeadLetter).where(DeadLetter.status == "pending")
    if ids is not None:
        query = query.where(DeadLetter.id.in_(list(ids)))
    if code is not None:
        query = query.where(DeadLetter.code == code)
    return list(tx.session.scalars(query.order_by(DeadLetter.id).limit(limit)))
