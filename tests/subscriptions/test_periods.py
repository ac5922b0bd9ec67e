"""Billing period maths: anchors at month ends and across leap years, the way Stripe does it."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.catalog.domain import Interval, IntervalUnit
from tallybook.kit.clock import utc
from tallybook.subscriptions.periods import (
    boundary,
    boundary_after,
    period_containing,
    periods_between,
)

MONTH = Interval(IntervalUnit.MONTH)
YEAR = Interval(IntervalUnit.YEAR)
WEEK = Interval(IntervalUnit.WEEK)


def days(anchor: datetime, interval: Interval, count: int) -> list[str]:
    return [boundary(anchor, interval, k).strftime("%Y-%m-%d") for k in range(count)]


@pytest.mark.parametrize(
    ("anchor_day", "year", "expected"),
    [
        (1, 2027, ["2027-01-01", "2027-02-01", "2027-03-01", "2027-04-01", "2027-05-01"]),
        (15, 2027, ["2027-01-15", "2027-02-15", "2027-03-15", "2027-04-15", "2027-05-15"]),
        (29, 2027, ["2027-01-29", "2027-02-28", "2027-03-29", "2027-04-29", "2027-05-29"]),
        (29, 2028, ["2028-01-29", "2028-02-29", "2028-03-29", "2028-04-29", "2028-05-29"]),
        (30, 2027, ["2027-01-30", "2027-02-28", "2027-03-30", "2027-04-30", "2027-05-30"]),
        (30, 2028, ["2028-01-30", "2028-02-29", "2028-03-30", "2028-04-30", "2028-05-30"]),
        (31, 2027, ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31"]),
        (31, 2028, ["2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30", "2028-05-31"]),
    ],
)
def test_monthly_anchors_clamp_to_short_months_and_come_back(
    anchor_day: int, year: int, expected: list[str]
) -> None:
    assert days(utc(year, 1, anchor_day), MONTH, 5) == expected


def test_yearly_anchor_on_a_leap_day() -> None:
    assert days(utc(2028, 2, 29), YEAR, 5) == [
        "2028-02-29",
        "2029-02-28",
        "2030-02-28",
        "2031-02-28",
        "2032-02-29",
    ]


def test_the_time_of_day_is_kept() -> None:
    assert boundary(utc(2027, 1, 31, 17, 30, 5), MONTH, 1) == utc(2027, 2, 28, 17, 30, 5)


def test_weekly_and_n_monthly() -> None:
    assert days(utc(2027, 2, 26), WEEK, 3) == ["2027-02-26", "2027-03-05", "2027-03-12"]
    quarterly = Interval(IntervalUnit.MONTH, 3)
    assert days(utc(2027, 11, 30), quarterly, 4) == [
        "2027-11-30",
        "2028-02-29",
        "2028-05-30",
        "2028-08-30",
    ]


@pytest.mark.parametrize(
    ("at", "start", "end"),
    [
        (utc(2027, 2, 27, 23, 59, 59), utc(2027, 1, 31), utc(2027, 2, 28)),
        (utc(2027, 2, 28), utc(2027, 2, 28), utc(2027, 3, 31)),  # the boundary opens the next
        (utc(2027, 3, 30, 23, 59, 59), utc(2027, 2, 28), utc(2027, 3, 31)),
        (utc(2026, 12, 31), utc(2026, 12, 31), utc(2027, 1, 31)),  # before the anchor
        (utc(2026, 12, 30), utc(2026, 11, 30), utc(2026, 12, 31)),
    ],
)
def test_period_containing_an_instant(at: datetime, start: datetime, end: datetime) -> None:
    found = period_containing(utc(2027, 1, 31), MONTH, at)
    assert (found.start, found.end) == (start, end)


def test_periods_between() -> None:
    periods = periods_between(utc(2027, 1, 31), MONTH, utc(2027, 2, 10), utc(2027, 4, 30))
    assert [(p.start.date().isoformat(), p.end.date().isoformat()) for p in periods] == [
        ("2027-01-31", "2027-02-28"),
        ("2027-02-28", "2027-03-31"),
        ("2027-03-31", "2027-04-30"),
    ]
    assert periods_between(utc(2027, 1, 31), MONTH, utc(2027, 3, 1), utc(2027, 3, 1)) == []


# Properties ---------------------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)
intervals = st.builds(
    Interval,
    st.sampled_from(list(IntervalUnit)),
    st.integers(min_value=1, max_value=3),
)


@settings(max_examples=400)
@given(instants, intervals, instants)
def test_the_containing_period_contains_the_instant(
    anchor: datetime, interval: Interval, at: datetime
) -> None:
    found = period_containing(anchor, interval, at)
    assert found.start <= at < found.end
    assert boundary_after(anchor, interval, at) == found.end
    # Periods tile: the next one starts where this one ends.
    assert period_containing(anchor, interval, found.end).start == found.end


@settings(max_examples=400)
@given(instants, st.integers(min_value=-240, max_value=240), st.integers(1, 3))
def test_monthly_boundaries_fall_on_the_anchor_day_or_the_months_last(
    anchor: datetime, k: int, count: int
) -> None:
    moved = boundary(anchor, Interval(IntervalUnit.MONTH, count), k)
    last_day = calendar.monthrange(moved.year, moved.month)[1]
    assert moved.day == min(anchor.day, last_day)
    assert moved.time() == anchor.time()
    assert (moved.year * 12 + moved.month) - (anchor.year * 12 + anchor.month) == k * count


@settings(max_examples=200)
@given(instants, intervals, instants, st.integers(min_value=0, max_value=400 * 86400))
def test_periods_between_cover_the_window_without_gaps(
    anchor: datetime, interval: Interval, start: datetime, length_seconds: int
) -> None:
    end = start + timedelta(seconds=length_seconds)
    periods = periods_between(anchor, interval, start, end)
    if length_seconds == 0:
        assert periods == []
        return
    assert periods[0].start <= start < periods[0].end
    assert periods[-1].start < end <= periods[-1].end
    for before, after in zip(periods, periods[1:], strict=False):
        assert before.end == after.start
