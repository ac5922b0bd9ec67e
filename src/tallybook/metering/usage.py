"""Usage queries: exact usage of one meter for one customer over any ``[start, end)``.

Full hours come from the hourly rollups; the partial hours at the edges come from that
customer's raw events (at most two hours of one customer), so a subscription period or a
mid-period plan change starting at 14:37:12 is billed exactly. While a meter defined after
events were stored is still being backfilled, its usage is computed from raw events alone.

Rollups commit with their events, so once ``POST /v1/events`` has answered, these queries
see its events (entitlement checks rely on this).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from tallybook.catalog import meters as catalog_meters
from tallybook.catalog.meter_models import Aggregation, Meter
from tallybook.db import Tx
from tallybook.kit.errors import InvalidRequest
from tallybook.metering import repository
from tallybook.metering.aggregate import (
    Accumulator,
    Dims,
    Window,
    ceil_hour,
    floor_hour,
    window_floor,
    windows_between,
)
from tallybook.metering.cloudevents import Rejection, decode_data
from tallybook.metering.errors import MeteringCode
from tallybook.metering.limits import USAGE_RANGE_DAYS_MAX, USAGE_WINDOWS_MAX
from tallybook.metering.matching import CompiledMeter, compile_meter

GroupBy = bool | Sequence[str]


@dataclass(frozen=True, slots=True)
class UsageWindow:
    start: datetime
    end: datetime
    value: Decimal
    groups: dict[Dims, Decimal] | None


@dataclass(frozen=True, slots=True)
class UsageSeries:
    meter: Meter
    customer_id: str
    start: datetime
    end: datetime
    window: Window
    group_names: tuple[str, ...] | None
    windows: list[UsageWindow]
    total: Decimal
    total_groups: dict[Dims, Decimal] | None


def check_range(
    start: datetime, end: datetime, *, params: tuple[str, str] = ("start", "end")
) -> None:
    for value, param in ((start, params[0]), (end, params[1])):
        if value.tzinfo is None:
            raise InvalidRequest(
                MeteringCode.USAGE_RANGE_INVALID, f"{param} must carry a timezone", param=param
            )
    if not start < end:
        raise InvalidRequest(
            MeteringCode.USAGE_RANGE_INVALID,
            f"{params[0]} must be before {params[1]} (periods are half-open)",
            param=params[1],
        )
    if end - start > timedelta(days=USAGE_RANGE_DAYS_MAX):
        raise InvalidRequest(
            MeteringCode.USAGE_RANGE_INVALID,
            f"a usage range spans at most {USAGE_RANGE_DAYS_MAX} days",
            param=params[1],
        )


def group_names_of(meter: Meter, group_by: GroupBy) -> tuple[str, ...] | None:
    """``False`` → no grouping; ``True`` → all of the meter's dimensions; a list → those."""
    if group_by is False:
        return None
    names = sorted(meter.group_by)
    if group_by is True:
        return tuple(names)
    assert not isinstance(group_by, bool)
    chosen = list(group_by)
    unknown = [name for name in chosen if name not in meter.group_by]
    if unknown or len(set(chosen)) != len(chosen):
        raise InvalidRequest(
            MeteringCode.USAGE_GROUP_BY_INVALID,
            f"meter {meter.key} v{meter.version} groups by {', '.join(names) or 'nothing'}; "
            f"cannot group by {', '.join(unknown) or 'a repeated dimension'}",
            param="group_by",
        )
    return tuple(sorted(chosen))


def feed_raw(
    compiled: CompiledMeter,
    rows: Iterable[tuple[int, datetime, str | None]],
    accumulator_for: Callable[[datetime], Accumulator],
) -> None:
    """Add raw events' contributions. Events the meter cannot count (stored before it existed
    and lacking its value) are skipped, exactly as its backfill skips them."""
    for seq, time, data_text in rows:
        data = decode_data(data_text)
        if compiled.filters and not compiled.matches(data):
            continue
        contribution = compiled.contribution(data)
        if isinstance(contribution, Rejection):
            continue
        accumulator_for(time).add_event(
            contribution.dims_key, contribution.value, contribution.value_key, time, seq
        )


def collect(
    tx: Tx,
    meter: Meter,
    customer_id: str,
    start: datetime,
    end: datetime,
    *,
    bucket: Window | None,
) -> dict[datetime | None, Accumulator]:
    """One accumulator per bucket (``None``: the whole range) holding ``[start, end)``,
    grouped by all of the meter's dimensions (``Accumulator.regroup`` narrows it)."""
    compiled = compile_meter(meter)
    aggregation = compiled.aggregation
    accumulators: dict[datetime | None, Accumulator] = {}

    def accumulator(bucket_start: datetime | None) -> Accumulator:
        found = accumulators.get(bucket_start)
        if found is None:
            found = accumulators[bucket_start] = Accumulator(
                aggregation, compiled.dim_names, compiled.dim_names
            )
        return found

    def accumulator_at(instant: datetime) -> Accumulator:
        return accumulator(window_floor(instant, bucket) if bucket is not None else None)

    first_hour, last_hour = ceil_hour(start), floor_hour(end)
    use_rollups = meter.backfilled_at is not None and first_hour < last_hour
    if use_rollups:
        if aggregation is Aggregation.UNIQUE_COUNT:
            for bucket_start, dims_key, value_key in repository.distinct_values(
                tx,
                meter_id=meter.id,
                customer_id=customer_id,
                start=first_hour,
                end=last_hour,
                bucket=bucket,
            ):
                accumulator(bucket_start).add_values(dims_key, (value_key,))
        else:
            for bucket_start, dims_key, quantity, latest_time, latest_seq in repository.rollup_rows(
                tx,
                meter_id=meter.id,
                customer_id=customer_id,
                aggregation=aggregation,
                start=first_hour,
                end=last_hour,
                bucket=bucket,
            ):
                accumulator(bucket_start).add_rollup(dims_key, quantity, latest_time, latest_seq)
        ranges = [(start, first_hour), (last_hour, end)]
    else:
        ranges = [(start, end)]
    feed_raw(
        compiled,
        repository.raw_events(
            tx, customer_id=customer_id, event_type=meter.event_type, ranges=ranges
        ),
        accumulator_at,
    )
    return accumulators


def usage_total(
    tx: Tx,
    *,
    meter_id: str,
    customer_id: str,
    start: datetime,
    end: datetime,
    group_by: GroupBy = False,
) -> Decimal | dict[Dims, Decimal]:
    """Exact usage in ``[start, end)`` (any instants). With ``group_by``, a dict keyed by
    ``Dims`` (``(("model", "gpt-4"),)``, names sorted); groups without usage are absent."""
    check_range(start, end)
    meter = catalog_meters.get_meter(tx, meter_id)
    names = group_names_of(meter, group_by)
    dims = sorted(meter.group_by)
    combined = Accumulator(Aggregation(meter.aggregation), dims, dims)
    for part in collect(tx, meter, customer_id, start, end, bucket=None).values():
        combined.merge(part)
    grouped = combined.regroup(names)
    return grouped.total() if names is None else grouped.by_group()


def usage_series(
    tx: Tx,
    *,
    meter_id: str,
    customer_id: str,
    start: datetime,
    end: datetime,
    window: Window | str,
    group_by: GroupBy = False,
) -> UsageSeries:
    """Usage per calendar window (UTC hour, day or month; the first and last clipped to the
    range) and the total over the whole range (for unique count, distinct over the range)."""
    check_range(start, end)
    try:
        unit = Window(window)
    except ValueError:
        raise InvalidRequest(
            MeteringCode.USAGE_WINDOW_INVALID, "window must be hour, day or month", param="window"
        ) from None
    spans = windows_between(start, end, unit)
    if len(spans) > USAGE_WINDOWS_MAX:
        raise InvalidRequest(
            MeteringCode.USAGE_TOO_MANY_WINDOWS,
            f"{len(spans)} windows; at most {USAGE_WINDOWS_MAX} per query",
            param="window",
        )
    meter = catalog_meters.get_meter(tx, meter_id)
    names = group_names_of(meter, group_by)
    aggregation = Aggregation(meter.aggregation)
    dims = sorted(meter.group_by)
    parts = collect(tx, meter, customer_id, start, end, bucket=unit)
    total = Accumulator(aggregation, dims, dims)
    windows = []
    for window_start, window_end in spans:
        part = parts.get(window_floor(window_start, unit)) or Accumulator(aggregation, dims, dims)
        total.merge(part)
        windows.append(
            UsageWindow(
                start=window_start,
                end=window_end,
                value=part.regroup(None).total(),
                groups=part.regroup(names).by_group() if names is not None else None,
            )
        )
    return UsageSeries(
        meter=meter,
        customer_id=customer_id,
        start=start,
        end=end,
        window=unit,
        group_names=names,
        windows=windows,
        total=total.regroup(None).total(),
        total_groups=total.regroup(names).by_group() if names is not None else None,
    )
