"""Meters compiled for the hot path: does an event match, and what does it contribute? No I/O.

Filter semantics (documented in ``docs/metering.md``):

- ``eq``/``in`` compare by type: strings with strings, integers with numbers of equal value,
  booleans with booleans. A missing field matches neither; ``ne``/``not_in`` match it.
- ``gt``/``gte``/``lt``/``lte`` compare numbers (JSON numbers or numeric strings); a missing or
  non-numeric field does not match.

Values: a numeric aggregation reads a JSON number or a numeric string (``"12.5"``) at
``value_path``; unique count reads a string, number or boolean (compared as text). Dimension
values are text (numbers in plain decimal form, booleans ``true``/``false``, missing → null).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NamedTuple

import msgspec

from tallybook.catalog.meter_models import Aggregation, Meter
from tallybook.catalog.meters import EQUALITY_OPS, MEMBERSHIP_OPS, FilterOp, MeterCode, parse_path
from tallybook.kit.quantity import QUANTITY_MAX, quantity_text
from tallybook.metering.cloudevents import ENCODER, Rejection
from tallybook.metering.errors import EventCode
from tallybook.metering.limits import (
    DIMENSION_VALUE_LENGTH_MAX,
    UNIQUE_VALUE_LENGTH_MAX,
    VALUE_SCALE_MAX,
)

_MISSING: Final = object()
NO_DIMS: Final = ""
ONE: Final = Decimal(1)
_INT_MAX: Final = int(QUANTITY_MAX)


def lookup(data: dict[str, Any] | None, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in ``data``, or ``_MISSING``."""
    if len(path) == 1 and type(data) is dict:
        return data.get(path[0], _MISSING)
    current: Any = data
    for segment in path:
        if isinstance(current, dict):
            current = current.get(segment, _MISSING)
            if current is _MISSING:
                return _MISSING
        elif isinstance(current, list) and segment.isdigit() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            return _MISSING
    return current


def _as_number(value: Any) -> Decimal | None:
    kind = type(value)
    if kind is int:
        return Decimal(value)
    if kind is bool:
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _equal(value: Any, target: Any) -> bool:
    if isinstance(target, bool):
        return isinstance(value, bool) and value is target
    if isinstance(target, int):
        return not isinstance(value, bool) and isinstance(value, int | Decimal) and value == target
    return isinstance(value, str) and value == target


def scalar_text(value: Any) -> str | None:
    """Text form of a dimension or unique-count value; None for null/missing; raises
    ValueError for objects and arrays."""
    if value is None or value is _MISSING:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal) and value.is_finite():
        return quantity_text(value) if abs(value) <= QUANTITY_MAX else str(value)
    raise ValueError("not a scalar")


@dataclass(frozen=True, slots=True)
class CompiledFilter:
    path: tuple[str, ...]
    op: FilterOp
    target: Any

    def passes(self, data: dict[str, Any] | None) -> bool:
        value = lookup(data, self.path)
        op = self.op
        if op in EQUALITY_OPS:
            equal = value is not _MISSING and _equal(value, self.target)
            return equal if op is FilterOp.EQ else not equal
        if op in MEMBERSHIP_OPS:
            member = value is not _MISSING and any(_equal(value, t) for t in self.target)
            return member if op is FilterOp.IN else not member
        number = _as_number(value) if value is not _MISSING else None
        if number is None:
            return False
        target: Decimal = self.target
        if op is FilterOp.GT:
            return number > target
        if op is FilterOp.GTE:
            return number >= target
        if op is FilterOp.LT:
            return number < target
        return number <= target


class Contribution(NamedTuple):
    """What one event adds to one meter's rollup row (a tuple: built once per event and
    meter on the hot path)."""

    meter: CompiledMeter
    dims_key: str
    #: The value (1 for count); for unique count, None.
    value: Decimal | None
    #: The distinct value's text, for unique count.
    value_key: str | None


@dataclass(frozen=True, slots=True)
class CompiledMeter:
    id: str
    key: str
    aggregation: Aggregation
    event_type: str
    definition_seq: int
    value_path: tuple[str, ...] | None
    value_param: str | None
    filters: tuple[CompiledFilter, ...]
    #: (name, path) sorted by name.
    dims: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def dim_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.dims)

    def matches(self, data: dict[str, Any] | None) -> bool:
        return all(f.passes(data) for f in self.filters)

    def contribution(self, data: dict[str, Any] | None) -> Contribution | Rejection:
        """What a matching event adds, or why it cannot be counted."""
        dims_key = NO_DIMS
        if self.dims:
            found = self._dims_key(data)
            if isinstance(found, Rejection):
                return found
            dims_key = found
        aggregation = self.aggregation
        if aggregation is Aggregation.COUNT:
            return Contribution(self, dims_key, ONE, None)
        assert self.value_path is not None and self.value_param is not None
        raw = lookup(data, self.value_path)
        if type(raw) is int:
            # The common case: a JSON integer within range is a valid value as is.
            if aggregation is not Aggregation.UNIQUE_COUNT and -_INT_MAX <= raw <= _INT_MAX:
                return Contribution(self, dims_key, Decimal(raw), None)
        elif raw is _MISSING or raw is None:
            return Rejection(
                EventCode.VALUE_MISSING,
                self.value_param,
                f"meter {self.key} needs a value at {self.value_param}",
            )
        if aggregation is Aggregation.UNIQUE_COUNT:
            return self._distinct(raw, dims_key)
        return self._number(raw, dims_key)

    def _dims_key(self, data: dict[str, Any] | None) -> str | Rejection:
        values: list[str | None] = []
        for name, path in self.dims:
            value = lookup(data, path)
            if type(value) is str and len(value) <= DIMENSION_VALUE_LENGTH_MAX:
                values.append(value)
                continue
            try:
                text = scalar_text(value)
            except ValueError:
                text = "\x00"
            if text is not None and (text == "\x00" or len(text) > DIMENSION_VALUE_LENGTH_MAX):
                return Rejection(
                    EventCode.DIMENSION_INVALID,
                    "data." + ".".join(path),
                    f"dimension '{name}' (meter {self.key}) must be a string, number or "
                    f"boolean of at most {DIMENSION_VALUE_LENGTH_MAX} characters",
                )
            values.append(text)
        return dims_key_of(values)

    def _distinct(self, raw: Any, dims_key: str) -> Contribution | Rejection:
        try:
            text = scalar_text(raw)
        except ValueError:
            text = None
        if text is None or len(text) > UNIQUE_VALUE_LENGTH_MAX or "\x00" in text:
            return Rejection(
                EventCode.VALUE_INVALID,
                self.value_param,
                f"meter {self.key} counts distinct strings, numbers or booleans of at most "
                f"{UNIQUE_VALUE_LENGTH_MAX} characters at {self.value_param}",
            )
        return Contribution(self, dims_key, None, text)

    def _number(self, raw: Any, dims_key: str) -> Contribution | Rejection:
        number = _as_number(raw)
        if number is None:
            return Rejection(
                EventCode.VALUE_NOT_NUMBER,
                self.value_param,
                f"meter {self.key} needs a number at {self.value_param}",
            )
        exponent = number.normalize().as_tuple().exponent
        if abs(number) > QUANTITY_MAX or (
            isinstance(exponent, int) and exponent < -VALUE_SCALE_MAX
        ):
            return Rejection(
                EventCode.VALUE_INVALID,
                self.value_param,
                f"{self.value_param} must be at most {QUANTITY_MAX} with at most "
                f"{VALUE_SCALE_MAX} decimal places",
            )
        return Contribution(self, dims_key, number, None)


_DIMS_KEYS: dict[tuple[str | None, ...], str] = {}
_DIMS_KEYS_MAX: Final = 100_000


def dims_key_of(values: Sequence[str | None]) -> str:
    """Canonical JSON of dimension values, memoized (dimension values repeat: models,
    regions)."""
    key = tuple(values)
    found = _DIMS_KEYS.get(key)
    if found is None:
        if len(_DIMS_KEYS) >= _DIMS_KEYS_MAX:
            _DIMS_KEYS.clear()
        found = _DIMS_KEYS[key] = ENCODER.encode(list(values)).decode()
    return found


def dims_of(meter_dim_names: Sequence[str], dims_key: str) -> dict[str, str | None]:
    """Back from a stored ``dims_key`` to ``{name: value}``."""
    if not dims_key:
        return {}
    values = msgspec.json.decode(dims_key)
    return dict(zip(meter_dim_names, values, strict=True))


def compile_meter(meter: Meter) -> CompiledMeter:
    path = (
        parse_path(meter.value_path, param="value_path", code=MeterCode.VALUE_PATH_INVALID)
        if meter.value_path
        else None
    )
    filters = []
    for item in meter.filters:
        op = FilterOp(item["op"])
        target: Any = item["value"]
        if op in (FilterOp.GT, FilterOp.GTE, FilterOp.LT, FilterOp.LTE):
            target = Decimal(str(target))
        elif op in MEMBERSHIP_OPS:
            target = tuple(target)
        filters.append(
            CompiledFilter(
                path=parse_path(item["path"], param="filters", code=MeterCode.FILTER_INVALID),
                op=op,
                target=target,
            )
        )
    dims = tuple(
        (name, parse_path(dim_path, param="group_by", code=MeterCode.GROUP_BY_INVALID))
        for name, dim_path in sorted(meter.group_by.items())
    )
    return CompiledMeter(
        id=meter.id,
        key=meter.key,
        aggregation=Aggregation(meter.aggregation),
        event_type=meter.event_type,
        definition_seq=meter.definition_seq,
        value_path=path,
        value_param=("data." + ".".join(path)) if path else None,
        filters=tuple(filters),
        dims=dims,
    )


def contributions(
    meters: Sequence[CompiledMeter], data: dict[str, Any] | None
) -> list[Contribution] | Rejection:
    """Every matching meter's contribution, or the first reason the event cannot count."""
    result: list[Contribution] = []
    for meter in meters:
        if meter.filters and not meter.matches(data):
            continue
        outcome = meter.contribution(data)
        if isinstance(outcome, Rejection):
            return outcome
        result.append(outcome)
    return result
