"""Rollup deltas: a batch's contributions aggregated in memory, then one upsert per rollup key
(staged with COPY and upserted per aggregation kind on PostgreSQL; on SQLite an upsert per
row whose decimal arithmetic runs in Python through ``raw``'s exact-decimal functions).

Called in the same transaction as the events' insert (ingestion) or as the backfill
checkpoint, so a rollup row and the events it counts always commit together.
"""

from __future__ import annotations

import random
import time as _time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from tallybook.catalog.meter_models import Aggregation
from tallybook.db import Tx
from tallybook.kit.quantity import quantity_text
from tallybook.metering.aggregate import floor_hour
from tallybook.metering.ingest.raw import (
    STAGE_ROLLUPS,
    STAGE_VALUES,
    pg_copy,
    pg_staging,
    sqlite_cursor,
    sqlite_time,
)
from tallybook.metering.limits import ROLLUP_SHARDS
from tallybook.metering.matching import Contribution
from tallybook.metering.metrics import ROLLUP_SECONDS

RollupKey = tuple[str, str, datetime, str]


@dataclass(slots=True)
class Delta:
    aggregation: Aggregation
    event_count: int = 0
    #: count/sum: the sum; max/min: the extreme; latest: the latest value.
    quantity: Decimal | None = None
    latest_time: datetime | None = None
    latest_seq: int | None = None
    values: set[str] = field(default_factory=set)


class Deltas:
    """One batch's rollup changes, keyed by (meter, customer, hour, dims)."""

    def __init__(self) -> None:
        self.by_key: dict[RollupKey, Delta] = {}

    def add(
        self,
        contribution: Contribution,
        customer_id: str,
        time: datetime,
        seq: int,
        window_start: datetime | None = None,
    ) -> None:
        """``window_start`` is ``floor_hour(time)``, passed when the caller has it already."""
        meter, dims_key, value, value_key = contribution
        key = (meter.id, customer_id, window_start or floor_hour(time), dims_key)
        delta = self.by_key.get(key)
        aggregation = meter.aggregation
        if delta is None:
            delta = self.by_key[key] = Delta(aggregation)
        delta.event_count += 1
        if aggregation is Aggregation.UNIQUE_COUNT:
            assert value_key is not None
            delta.values.add(value_key)
            return
        assert value is not None
        if delta.quantity is None:
            delta.quantity = value
            if aggregation is Aggregation.LATEST:
                delta.latest_time, delta.latest_seq = time, seq
        elif aggregation in (Aggregation.SUM, Aggregation.COUNT):
            delta.quantity += value
        elif aggregation is Aggregation.MAX:
            delta.quantity = max(delta.quantity, value)
        elif aggregation is Aggregation.MIN:
            delta.quantity = min(delta.quantity, value)
        else:
            assert delta.latest_time is not None and delta.latest_seq is not None
            if (time, seq) > (delta.latest_time, delta.latest_seq):
                delta.quantity, delta.latest_time, delta.latest_seq = value, time, seq

    def __len__(self) -> int:
        return len(self.by_key)


def apply(tx: Tx, deltas: Deltas, now: datetime) -> None:
    if not deltas.by_key:
        return
    started = _time.perf_counter()
    if tx.is_postgres:
        # Any shard will do; a random one keeps concurrent batches off each other's rows.
        _apply_pg(tx, deltas, now, random.randrange(ROLLUP_SHARDS))
    else:
        _apply_sqlite(tx, deltas, now)
    ROLLUP_SECONDS.observe(_time.perf_counter() - started)


# PostgreSQL ------------------------------------------------------------------------------------

_PG_QUANTITY: Final = {
    Aggregation.SUM: "r.quantity + excluded.quantity",
    Aggregation.COUNT: "r.quantity + excluded.quantity",
    Aggregation.UNIQUE_COUNT: "r.quantity + excluded.quantity",
    Aggregation.MAX: "GREATEST(r.quantity, excluded.quantity)",
    Aggregation.MIN: "LEAST(r.quantity, excluded.quantity)",
}
_PG_NEWER: Final = "(excluded.latest_time, excluded.latest_seq) > (r.latest_time, r.latest_seq)"


def _pg_upsert_sql(aggregation: Aggregation) -> str:
    if aggregation is Aggregation.LATEST:
        sets = (
            f"quantity = CASE WHEN {_PG_NEWER} THEN excluded.quantity ELSE r.quantity END, "
            f"latest_seq = CASE WHEN {_PG_NEWER} THEN excluded.latest_seq ELSE r.latest_seq END, "
            "latest_time = GREATEST(r.latest_time, excluded.latest_time)"
        )
    else:
        sets = f"quantity = {_PG_QUANTITY[aggregation]}"
    # ORDER BY: rows are locked in key order, the same order in every transaction.
    return (
        "INSERT INTO metering_rollups AS r (meter_id, customer_id, window_start, dims_key, "
        "shard, event_count, quantity, latest_time, latest_seq, updated_at) "
        "SELECT meter_id, customer_id, window_start, dims_key, shard, event_count, quantity, "
        f"latest_time, latest_seq, %s FROM {STAGE_ROLLUPS} WHERE agg = %s "
        "ORDER BY meter_id, customer_id, window_start, dims_key "
        "ON CONFLICT (meter_id, customer_id, window_start, dims_key, shard) DO UPDATE SET "
        f"event_count = r.event_count + excluded.event_count, {sets}, "
        "updated_at = excluded.updated_at"
    )


_PG_UPSERT: Final = {aggregation: _pg_upsert_sql(aggregation) for aggregation in Aggregation}
_PG_INSERT_VALUES: Final = (
    "INSERT INTO metering_rollup_values (meter_id, customer_id, window_start, dims_key, value_key) "
    f"SELECT * FROM {STAGE_VALUES} ORDER BY 1, 2, 3, 4, 5 ON CONFLICT DO NOTHING "
    "RETURNING meter_id, customer_id, window_start, dims_key"
)


def _distinct_candidates(deltas: Deltas) -> list[tuple[str, str, datetime, str, str]]:
    return [
        (*key, value)
        for key, delta in deltas.by_key.items()
        if delta.aggregation is Aggregation.UNIQUE_COUNT
        for value in delta.values
    ]


def _apply_pg(tx: Tx, deltas: Deltas, now: datetime, shard: int) -> None:
    cursor = pg_staging(tx)
    fresh_values: dict[RollupKey, int] = {}
    candidates = _distinct_candidates(deltas)
    if candidates:
        pg_copy(tx, cursor, STAGE_VALUES, candidates)
        cursor.execute(_PG_INSERT_VALUES)
        for meter_id, customer_id, window_start, dims_key in cursor.fetchall():
            key = (meter_id, customer_id, window_start, dims_key)
            fresh_values[key] = fresh_values.get(key, 0) + 1
    kinds = set()
    rows = []
    for key, delta in deltas.by_key.items():
        kinds.add(delta.aggregation)
        quantity = (
            Decimal(fresh_values.get(key, 0))
            if delta.aggregation is Aggregation.UNIQUE_COUNT
            else delta.quantity
        )
        rows.append(
            (
                delta.aggregation.value,
                *key,
                shard,
                delta.event_count,
                quantity,
                delta.latest_time,
                delta.latest_seq,
            )
        )
    pg_copy(tx, cursor, STAGE_ROLLUPS, rows)
    for aggregation in sorted(kinds):
        cursor.execute(_PG_UPSERT[aggregation], (now, aggregation.value))


# SQLite ----------------------------------------------------------------------------------------

_SQLITE_QUANTITY: Final = {
    Aggregation.SUM: "tb_dec_add(quantity, excluded.quantity)",
    Aggregation.COUNT: "tb_dec_add(quantity, excluded.quantity)",
    Aggregation.UNIQUE_COUNT: "tb_dec_add(quantity, excluded.quantity)",
    Aggregation.MAX: "tb_dec_max(quantity, excluded.quantity)",
    Aggregation.MIN: "tb_dec_min(quantity, excluded.quantity)",
}
#: Times are fixed-width UTC text, so text order is time order.
_SQLITE_NEWER: Final = (
    "(excluded.latest_time > latest_time OR "
    "(excluded.latest_time = latest_time AND excluded.latest_seq > latest_seq))"
)


def _sqlite_upsert_sql(aggregation: Aggregation) -> str:
    if aggregation is Aggregation.LATEST:
        sets = (
            f"quantity = CASE WHEN {_SQLITE_NEWER} THEN excluded.quantity ELSE quantity END, "
            f"latest_seq = CASE WHEN {_SQLITE_NEWER} THEN excluded.latest_seq ELSE latest_seq END, "
            "latest_time = max(latest_time, excluded.latest_time)"
        )
    else:
        sets = f"quantity = {_SQLITE_QUANTITY[aggregation]}"
    # SQLite evaluates every SET expression against the row as it was before the update.
    return (
        "INSERT INTO metering_rollups (meter_id, customer_id, window_start, dims_key, shard, "
        "event_count, quantity, latest_time, latest_seq, updated_at) "
        "VALUES (?,?,?,?,0,?,?,?,?,?) "
        "ON CONFLICT (meter_id, customer_id, window_start, dims_key, shard) DO UPDATE SET "
        f"event_count = event_count + excluded.event_count, {sets}, "
        "updated_at = excluded.updated_at"
    )


_SQLITE_UPSERT: Final = {
    aggregation: _sqlite_upsert_sql(aggregation) for aggregation in Aggregation
}


def _apply_sqlite(tx: Tx, deltas: Deltas, now: datetime) -> None:
    cursor = sqlite_cursor(tx)
    fresh_values: dict[RollupKey, int] = {}
    for meter_id, customer_id, window_start, dims_key, value in _distinct_candidates(deltas):
        cursor.execute(
            "INSERT OR IGNORE INTO metering_rollup_values VALUES (?,?,?,?,?)",
            (meter_id, customer_id, sqlite_time(window_start), dims_key, value),
        )
        if cursor.rowcount == 1:
            key = (meter_id, customer_id, window_start, dims_key)
            fresh_values[key] = fresh_values.get(key, 0) + 1
    updated_at = sqlite_time(now)
    by_kind: dict[Aggregation, list[tuple[Any, ...]]] = {}
    for key, delta in deltas.by_key.items():
        quantity = (
            Decimal(fresh_values.get(key, 0))
            if delta.aggregation is Aggregation.UNIQUE_COUNT
            else delta.quantity
        )
        assert quantity is not None
        by_kind.setdefault(delta.aggregation, []).append(
            (
                key[0],
                key[1],
                sqlite_time(key[2]),
                key[3],
                delta.event_count,
                quantity_text(quantity),
                sqlite_time(delta.latest_time),
                delta.latest_seq,
                updated_at,
            )
        )
    for aggregation, rows in by_kind.items():
        cursor.executemany(_SQLITE_UPSERT[aggregation], rows)
