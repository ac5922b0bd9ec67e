"""Explainability: the raw events that make up a meter's quantity, cursor-paginated.

Invoices link each usage line to ``list_events(meter_id, customer_id, start, end)``: exactly
the events the meter counts in that range (matching type and filters, with a countable
value), in (time, seq) order, each with the value and dimensions it contributed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from tallybook.catalog import meters as catalog_meters
from tallybook.db import Tx
from tallybook.kit.errors import CommonCode, InvalidRequest
from tallybook.metering import repository
from tallybook.metering.cloudevents import Rejection, decode_data
from tallybook.metering.limits import LIST_EVENTS_LIMIT_MAX, LIST_EVENTS_SCAN_MAX
from tallybook.metering.matching import compile_meter, dims_of
from tallybook.metering.usage import check_range

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_CURSOR: Final = re.compile(r"^(-?\d{1,20})\.(\d{1,20})$")


@dataclass(frozen=True, slots=True)
class MeteredEvent:
    seq: int
    source: str
    event_id: str
    type: str
    subject: str
    customer_id: str
    time: datetime
    received_at: datetime
    late: bool
    data: dict[str, Any] | None
    #: What the event added: the value (1 for count), or the distinct value for unique count.
    value: Decimal | None
    value_key: str | None
    dims: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class EventPage:
    data: list[MeteredEvent]
    has_more: bool
    #: Pass as ``after`` for the next page.
    next_cursor: str | None


def cursor_of(time: datetime, seq: int) -> str:
    return f"{(time - _EPOCH) // _MICROSECOND}.{seq}"


def parse_cursor(cursor: str, *, param: str = "after") -> tuple[datetime, int]:
    match = _CURSOR.match(cursor)
    if match is None:
        raise InvalidRequest(CommonCode.CURSOR_INVALID, f"{param} is not a cursor", param=param)
    return _EPOCH + int(match.group(1)) * _MICROSECOND, int(match.group(2))


def list_events(
    tx: Tx,
    *,
    meter_id: str,
    customer_id: str,
    start: datetime,
    end: datetime,
    after: str | None = None,
    limit: int = 100,
) -> EventPage:
    check_range(start, end)
    if not 1 <= limit <= LIST_EVENTS_LIMIT_MAX:
        raise InvalidRequest(
            CommonCode.LIMIT_INVALID, f"limit must be 1-{LIST_EVENTS_LIMIT_MAX}", param="limit"
        )
    meter = catalog_meters.get_meter(tx, meter_id)
    compiled = compile_meter(meter)
    position = parse_cursor(after) if after else None
    found: list[MeteredEvent] = []
    scanned = 0
    exhausted = False
    while len(found) < limit and scanned < LIST_EVENTS_SCAN_MAX:
        chunk = min(max(limit * 2, 100), LIST_EVENTS_SCAN_MAX - scanned)
        rows = repository.events_page(
            tx,
            customer_id=customer_id,
            event_type=meter.event_type,
            start=start,
            end=end,
            after=position,
            limit=chunk,
        )
        if len(rows) < chunk:
            exhausted = True
        for row in rows:
            scanned += 1
            position = (row.time, row.seq)
            data = decode_data(row.data)
            if compiled.filters and not compiled.matches(data):
                continue
            contribution = compiled.contribution(data)
            if isinstance(contribution, Rejection):
                continue
            found.append(
                MeteredEvent(
                    seq=row.seq,
                    source=row.source,
                    event_id=row.event_id,
                    type=row.type,
                    subject=row.subject,
                    customer_id=row.customer_id,
                    time=row.time,
                    received_at=row.received_at,
                    late=row.late,
                    data=data,
                    value=contribution.value,
                    value_key=contribution.value_key,
                    dims=dims_of(compiled.dim_names, contribution.dims_key),
                )
            )
            if len(found) == limit:
                exhausted = exhausted and row is rows[-1]
                break
        if exhausted:
            break
    has_more = not exhausted
    next_cursor = cursor_of(*position) if has_more and position is not None else None
    return EventPage(data=found, has_more=has_more, next_cursor=next_cursor)
