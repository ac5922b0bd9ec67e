"""Usage for many periods at once: what the period-close job reads per batch.

A batch of a few hundred periods with three metered prices each would cost a thousand
``metering.service.usage_total`` calls (each several statements). :func:`measure` instead reads
every quantity it can with **one set-based query** over the hourly rollups, and asks
``usage_total`` only for what rollups alone cannot answer exactly:

- windows that do not start and end on a whole hour (the partial hours need raw events);
- meters still backfilling (their rollups are incomplete);
- aggregations other than ``sum`` and ``count`` (``max``, ``min``, ``latest`` and
  ``unique_count`` do not add up across shard rows and hours in plain SQL);
- prices with a ``group_filter`` (the filter is applied to decoded dimension values).

The fast path reads ``metering_rollups`` directly (read-only; metering owns the table and its
shape, documented in ``docs/metering.md``). A property test checks it against ``usage_total``.
On SQLite, where decimals are stored as text, the rows are summed in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from sqlalchemy import select, text

from tallybook.catalog.meter_models import Aggregation, Meter
from tallybook.db import Tx
from tallybook.kit.quantity import normalize_quantity
from tallybook.metering import service as metering
from tallybook.metering.models import Rollup
from tallybook.rating import UsageRequest

ADDITIVE: Final = frozenset({Aggregation.SUM.value, Aggregation.COUNT.value})
#: Requests per set-based statement.
CHUNK_MAX: Final = 2_000


@dataclass(frozen=True, slots=True)
class Measure:
    customer_id: str
    meter_id: str
    start: datetime
    end: datetime
    group_filter: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(
        cls, customer_id: str, request: UsageRequest, *, end_cap: datetime | None = None
    ) -> Measure:
        end = request.end if end_cap is None else min(request.end, end_cap)
        return cls(
            customer_id,
            request.meter_id,
            request.start,
            max(end, request.start),
            request.group_filter,
        )


def _whole_hours(instant: datetime) -> bool:
    return instant.minute == 0 and instant.second == 0 and instant.microsecond == 0


def usage_of(tx: Tx, item: Measure) -> Decimal:
    """One quantity through metering's own query (exact for every case)."""
    if item.start >= item.end:
        return Decimal(0)
    if not item.group_filter:
        value = metering.usage_total(
            tx, meter_id=item.meter_id, customer_id=item.customer_id, start=item.start, end=item.end
        )
        assert isinstance(value, Decimal)
        return value
    names = [name for name, _ in item.group_filter]
    groups = metering.usage_total(
        tx,
        meter_id=item.meter_id,
        customer_id=item.customer_id,
        start=item.start,
        end=item.end,
        group_by=names,
    )
    assert isinstance(groups, dict)
    wanted = tuple(sorted(item.group_filter))
    return groups.get(wanted, Decimal(0))


def measure(tx: Tx, items: Sequence[Measure]) -> list[Decimal]:
    """The quantity of each item, in order (see the module docstring)."""
    meters: dict[str, Meter] = {}
    for item in items:
        if item.meter_id not in meters:
            meters[item.meter_id] = metering.get_meter(tx, item.meter_id)
    result: list[Decimal | None] = [None] * len(items)
    fast: list[int] = []
    for index, item in enumerate(items):
        meter = meters[item.meter_id]
        if item.start >= item.end:
            result[index] = Decimal(0)
        elif (
            not item.group_filter
            and meter.aggregation in ADDITIVE
            and meter.backfilled_at is not None
            and _whole_hours(item.start)
            and _whole_hours(item.end)
        ):
            fast.append(index)
        else:
            result[index] = usage_of(tx, item)
    for chunk_start in range(0, len(fast), CHUNK_MAX):
        chunk = fast[chunk_start : chunk_start + CHUNK_MAX]
        sums = _rollup_sums(tx, [items[i] for i in chunk])
        for position, index in enumerate(chunk):
            result[index] = normalize_quantity(sums[position])
    return [value if value is not None else Decimal(0) for value in result]


def _rollup_sums(tx: Tx, items: Sequence[Measure]) -> list[Decimal]:
    if tx.is_postgres:
        rows = tx.session.execute(
            text(
                "SELECT r.idx, SUM(m.quantity) FROM unnest("
                "CAST(:idx AS int[]), CAST(:meter AS text[]), CAST(:customer AS text[]), "
                "CAST(:start AS timestamptz[]), CAST(:end AS timestamptz[])"
                ") AS r(idx, meter_id, customer_id, start_at, end_at) "
                "JOIN metering_rollups m ON m.meter_id = r.meter_id "
                "AND m.customer_id = r.customer_id "
                "AND m.window_start >= r.start_at AND m.window_start < r.end_at "
                "GROUP BY r.idx"
            ),
            {
                "idx": list(range(len(items))),
                "meter": [i.meter_id for i in items],
                "customer": [i.customer_id for i in items],
                "start": [i.start for i in items],
                "end": [i.end for i in items],
            },
        )
        sums = [Decimal(0)] * len(items)
        for idx, total in rows:
            sums[int(idx)] = Decimal(total)
        return sums
    # SQLite: quantities are text; read the rows of the batch's customers and add in Python.
    by_key: dict[tuple[str, str], list[int]] = {}
    for position, item in enumerate(items):
        by_key.setdefault((item.meter_id, item.customer_id), []).append(position)
    start = min(i.start for i in items)
    end = max(i.end for i in items)
    customers = sorted({i.customer_id for i in items})
    meter_ids = sorted({i.meter_id for i in items})
    sums = [Decimal(0)] * len(items)
    for offset in range(0, len(customers), 500):
        rows = tx.session.execute(
            select(Rollup.meter_id, Rollup.customer_id, Rollup.window_start, Rollup.quantity).where(
                Rollup.customer_id.in_(customers[offset : offset + 500]),
                Rollup.meter_id.in_(meter_ids),
                Rollup.window_start >= start,
                Rollup.window_start < end,
            )
        )
        for meter_id, customer_id, window_start, quantity in rows:
            for position in by_key.get((meter_id, customer_id), ()):
                item = items[position]
                if item.start <= window_start < item.end:
                    sums[position] += quantity
    return sums
