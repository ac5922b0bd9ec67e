"""Billing periods: pure calendar maths on an anchor and an interval (no I/O).

Period boundaries are ``anchor + k × interval`` for every integer ``k``, each computed from the
anchor itself rather than from the previous boundary, which is what makes month ends behave
the way Stripe's billing anchors do:

- an anchor on the 31st bills on the 31st when the month has one and on the month's last day
  otherwise (Jan 31 → Feb 28 → Mar 31 → Apr 30 …; Feb 29 in leap years);
- an anchor on Feb 29 with a yearly interval bills on Feb 28 in common years and on Feb 29
  again in leap years;
- the anchor's time of day is kept; everything is UTC, so a day is always 86,400 seconds.

Periods are half-open ``[start, end)``: the boundary instant belongs to the new period.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from tallybook.catalog.domain import Interval, IntervalUnit
from tallybook.kit.invariant import invariant

#: ``periods_between`` refuses to enumerate more periods than this (a daily plan over 27 years).
PERIODS_MAX: Final = 10_000


@dataclass(frozen=True, slots=True, order=True)
class Period:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        invariant(self.start.tzinfo is not None and self.end.tzinfo is not None, "naive period")
        invariant(self.start <= self.end, f"period ends before it starts: {self}")

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def _months(interval: Interval) -> int:
    return interval.count * (12 if interval.unit == IntervalUnit.YEAR else 1)


def _days(interval: Interval) -> int:
    return interval.count * (7 if interval.unit == IntervalUnit.WEEK else 1)


def _is_calendar(interval: Interval) -> bool:
    return interval.unit in (IntervalUnit.MONTH, IntervalUnit.YEAR)


def add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved by ``months`` calendar months, the day clamped to the month's length."""
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month_index = divmod(index, 12)
    month = month_index + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def boundary(anchor: datetime, interval: Interval, k: int) -> datetime:
    """The ``k``-th boundary from the anchor (``k`` may be negative)."""
    invariant(anchor.tzinfo is not None, "anchor must be timezone-aware")
    if _is_calendar(interval):
        return add_months(anchor, k * _months(interval))
    return anchor + timedelta(days=k * _days(interval))


def _index_estimate(anchor: datetime, interval: Interval, at: datetime) -> int:
    if _is_calendar(interval):
        months = (at.year - anchor.year) * 12 + (at.month - anchor.month)
        return months // _months(interval)
    return (at - anchor) // timedelta(days=_days(interval))


def period_index(anchor: datetime, interval: Interval, at: datetime) -> int:
    """The ``k`` such that ``boundary(k) <= at < boundary(k + 1)``."""
    anchor, at = anchor.astimezone(UTC), at.astimezone(UTC)
    k = _index_estimate(anchor, interval, at)
    # The estimate is off by at most one (day clamping and time of day); settle it exactly.
    while boundary(anchor, interval, k) > at:
        k -= 1
    while boundary(anchor, interval, k + 1) <= at:
        k += 1
    return k


def period_containing(anchor: datetime, interval: Interval, at: datetime) -> Period:
    """The anchor-aligned period ``[start, end)`` that contains ``at``."""
    k = period_index(anchor, interval, at)
    return Period(boundary(anchor, interval, k), boundary(anchor, interval, k + 1))


def boundary_after(anchor: datetime, interval: Interval, at: datetime) -> datetime:
    """The first boundary strictly after ``at``."""
    return period_containing(anchor, interval, at).end


def periods_between(
    anchor: datetime, interval: Interval, start: datetime, end: datetime
) -> list[Period]:
    """The anchor-aligned periods that overlap ``[start, end)``, in order (whole periods: the
    first may begin before ``start`` and the last end after ``end``)."""
    if end <= start:
        return []
    first = period_index(anchor, interval, start)
    periods: list[Period] = []
    k = first
    while True:
        period_start = boundary(anchor, interval, k)
        if period_start >= end:
            break
        periods.append(Period(period_start, boundary(anchor, interval, k + 1)))
        invariant(len(periods) <= PERIODS_MAX, "periods_between asked for too many periods")
        k += 1
    return periods


def floor_to_second(at: datetime) -> datetime:
    """Changes, anchors and starts take effect on whole seconds (proration is to the second)."""
    return at.astimezone(UTC).replace(microsecond=0)
