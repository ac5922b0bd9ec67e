"""Usage for entitlements: the meter's usage by one customer over the check's window.

The window is the whole current billing period ``[start, end)``, not ``[start, now)``: an event
stamped a few seconds ahead of the server's clock (metering accepts up to five minutes) is
usage of this period too, and a check right after its ingestion must see it.

Through ``metering.service.usage_total`` (both backends, every aggregation). The PostgreSQL
hot path reads the same rollups and edge events directly (``fast_pg.py``) for the additive and
extreme aggregations and is checked against this function by tests.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from tallybook.catalog.meter_models import Aggregation
from tallybook.db import Tx
from tallybook.metering import service as metering
from tallybook.metering.limits import USAGE_RANGE_DAYS_MAX

#: metering's usage queries span at most this much; longer periods are read in parts.
SPAN_MAX: Final = timedelta(days=USAGE_RANGE_DAYS_MAX)
_SPLITTABLE: Final = frozenset(
    {Aggregation.SUM, Aggregation.COUNT, Aggregation.MAX, Aggregation.MIN}
)


def usage_in(
    tx: Tx,
    *,
    meter_id: str,
    aggregation: Aggregation,
    customer_id: str,
    start: datetime,
    end: datetime,
) -> Decimal:
    if end - start <= SPAN_MAX:
        value = metering.usage_total(
            tx, meter_id=meter_id, customer_id=customer_id, start=start, end=end
        )
        assert isinstance(value, Decimal)
        return value
    if aggregation not in _SPLITTABLE:
        # latest and unique count don't combine from parts: read the most recent span.
        return usage_in(
            tx,
            meter_id=meter_id,
            aggregation=aggregation,
            customer_id=customer_id,
            start=end - SPAN_MAX,
            end=end,
        )
    parts = []
    cursor = start
    while cursor < end:
        part_end = min(cursor + SPAN_MAX, end)
        parts.append(
            usage_in(
                tx,
                meter_id=meter_id,
                aggregation=aggregation,
                customer_id=customer_id,
                start=cursor,
                end=part_end,
            )
        )
        cursor = part_end
    if aggregation is Aggregation.MAX:
        return max(parts)
    if aggregation is Aggregation.MIN:
        nonzero = [p for p in parts if p != 0]
        return min(nonzero) if nonzero else Decimal(0)
    return sum(parts, start=Decimal(0))


def grouped_usage(
    tx: Tx,
    *,
    meter_id: str,
    customer_id: str,
    start: datetime,
    end: datetime,
    group_filter: tuple[tuple[str, str], ...],
) -> Decimal:
    """Usage restricted to events whose dimensions match ``group_filter`` (what a usage price
    with a group filter bills)."""
    if not group_filter:
        value = metering.usage_total(
            tx, meter_id=meter_id, customer_id=customer_id, start=start, end=end
        )
        assert isinstance(value, Decimal)
        return value
    names = [name for name, _ in group_filter]
    groups = metering.usage_total(
        tx, meter_id=meter_id, customer_id=customer_id, start=start, end=end, group_by=names
    )
    assert isinstance(groups, dict)
    return groups.get(tuple(sorted(group_filter)), Decimal(0))
