"""Time windows and the combination rules of each aggregation. Pure.

Rollups are hourly (UTC). A range's usage combines hourly rows with raw events at its edges:

- count, sum: the sum of the parts;
- max, min: the extreme of the parts;
- latest: the value of the event with the greatest ``time`` (ties: the later-ingested event);
- unique count: the number of distinct values over the whole range (a union of the stored
  distinct values, never a sum of hourly counts).

A range without events is 0 for every aggregation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final

from tallybook.catalog.meter_models import Aggregation
from tallybook.kit.quantity import normalize_quantity
from tallybook.metering.matching import dims_of

HOUR: Final = timedelta(hours=1)
ZERO: Final = Decimal(0)

#: A group of usage: (dimension name, value) pairs sorted by name; ``()`` for the total.
Dims = tuple[tuple[str, str | None], ...]


class Window(StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


def floor_hour(instant: datetime) -> datetime:
    return instant.replace(minute=0, second=0, microsecond=0)


def ceil_hour(instant: datetime) -> datetime:
    floored = floor_hour(instant)
    return floored if floored == instant else floored + HOUR


def window_floor(instant: datetime, window: Window) -> datetime:
    if window is Window.HOUR:
        return floor_hour(instant)
    day = instant.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if window is Window.DAY else day.replace(day=1)


def window_next(start: datetime, window: Window) -> datetime:
    """The start of the window after the one starting at ``start``."""
    if window is Window.HOUR:
        return start + HOUR
    if window is Window.DAY:
        return start + timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def windows_between(
    start: datetime, end: datetime, window: Window
) -> list[tuple[datetime, datetime]]:
    """Calendar windows covering ``[start, end)``, the first and last clipped to the range."""
    result: list[tuple[datetime, datetime]] = []
    cursor = window_floor(start, window)
    while cursor < end:
        following = window_next(cursor, window)
        result.append((max(cursor, start), min(following, end)))
        cursor = following
    return result


@dataclass(slots=True)
class _Cell:
    total: Decimal = ZERO
    extreme: Decimal | None = None
    latest: tuple[datetime, int, Decimal] | None = None
    values: set[str] = field(default_factory=set)


class Accumulator:
    """Combines rollup rows and raw events of one meter into totals per group."""

    def __init__(
        self,
        aggregation: Aggregation,
        meter_dim_names: Sequence[str],
        group_names: Sequence[str] | None,
    ) -> None:
        self.aggregation = aggregation
        self.meter_dim_names = tuple(meter_dim_names)
        self.group_names = tuple(sorted(group_names)) if group_names is not None else None
        self.cells: dict[Dims, _Cell] = {}
        self._group_of: dict[str, Dims] = {}

    def _cell(self, dims_key: str) -> _Cell:
        group = self._group_of.get(dims_key)
        if group is None:
            if self.group_names is None:
                group = ()
            else:
                dims = dims_of(self.meter_dim_names, dims_key)
                group = tuple((name, dims.get(name)) for name in self.group_names)
            self._group_of[dims_key] = group
        cell = self.cells.get(group)
        if cell is None:
            cell = self.cells[group] = _Cell()
        return cell

    def _extreme(self, cell: _Cell, value: Decimal) -> None:
        if cell.extreme is None:
            cell.extreme = value
        elif self.aggregation is Aggregation.MAX:
            cell.extreme = max(cell.extreme, value)
        else:
            cell.extreme = min(cell.extreme, value)

    @staticmethod
    def _later(cell: _Cell, time: datetime, seq: int, value: Decimal) -> None:
        if cell.latest is None or (time, seq) > (cell.latest[0], cell.latest[1]):
            cell.latest = (time, seq, value)

    def add_rollup(
        self,
        dims_key: str,
        quantity: Decimal,
        latest_time: datetime | None = None,
        latest_seq: int | None = None,
    ) -> None:
        """An hourly row (or a pre-aggregated group of rows). Not for unique count."""
        cell = self._cell(dims_key)
        aggregation = self.aggregation
        if aggregation in (Aggregation.SUM, Aggregation.COUNT):
            cell.total += quantity
        elif aggregation in (Aggregation.MAX, Aggregation.MIN):
            self._extreme(cell, quantity)
        elif aggregation is Aggregation.LATEST:
            assert latest_time is not None and latest_seq is not None
            self._later(cell, latest_time, latest_seq, quantity)
        else:
            raise AssertionError("unique counts combine stored values, not hourly counts")

    def add_values(self, dims_key: str, value_keys: Iterable[str]) -> None:
        self._cell(dims_key).values.update(value_keys)

    def add_event(
        self,
        dims_key: str,
        value: Decimal | None,
        value_key: str | None,
        time: datetime,
        seq: int,
    ) -> None:
        """One raw event's contribution."""
        cell = self._cell(dims_key)
        aggregation = self.aggregation
        if aggregation is Aggregation.UNIQUE_COUNT:
            assert value_key is not None
            cell.values.add(value_key)
            return
        assert value is not None
        if aggregation in (Aggregation.SUM, Aggregation.COUNT):
            cell.total += value
        elif aggregation is Aggregation.LATEST:
            self._later(cell, time, seq, value)
        else:
            self._extreme(cell, value)

    def _merge_cell(self, group: Dims, theirs: _Cell) -> None:
        mine = self.cells.get(group)
        if mine is None:
            mine = self.cells[group] = _Cell()
        mine.total += theirs.total
        if theirs.extreme is not None:
            self._extreme(mine, theirs.extreme)
        if theirs.latest is not None:
            self._later(mine, *theirs.latest)
        mine.values |= theirs.values

    def merge(self, other: Accumulator) -> None:
        for group, theirs in other.cells.items():
            self._merge_cell(group, theirs)

    def regroup(self, group_names: Sequence[str] | None) -> Accumulator:
        """The same usage grouped by fewer dimensions (``None``: one total). Exact for every
        aggregation because cells keep their sets and latest events, not just numbers."""
        result = Accumulator(self.aggregation, self.meter_dim_names, group_names)
        keep = set(result.group_names or ())
        for group, cell in self.cells.items():
            result._merge_cell(tuple(pair for pair in group if pair[0] in keep), cell)
        return result

    def _value(self, cell: _Cell) -> Decimal:
        """In canonical form (``normalize_quantity``), identical on both backends."""
        aggregation = self.aggregation
        if aggregation in (Aggregation.SUM, Aggregation.COUNT):
            value = cell.total
        elif aggregation is Aggregation.UNIQUE_COUNT:
            value = Decimal(len(cell.values))
        elif aggregation is Aggregation.LATEST:
            value = cell.latest[2] if cell.latest is not None else ZERO
        else:
            value = cell.extreme if cell.extreme is not None else ZERO
        return normalize_quantity(value)

    def total(self) -> Decimal:
        """The single total (only when not grouping)."""
        cell = self.cells.get(())
        return self._value(cell) if cell is not None else ZERO

    def by_group(self) -> dict[Dims, Decimal]:
        return {group: self._value(cell) for group, cell in sorted(self.cells.items(), key=_order)}


def _order(item: tuple[Dims, object]) -> tuple[tuple[str, str], ...]:
    return tuple((name, value if value is not None else "") for name, value in item[0])
