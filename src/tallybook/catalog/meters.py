"""Meter definitions: validation, versions by key, lookup. Never commits.

Public contract (other domains call these):

- ``create_meter(tx, MeterInput) -> Meter``: validates (errors name the bad field), then
  creates version 1 of a new key, or the next version of an existing key. Defining exactly the
  definition the latest version already has returns that version unchanged, so retries and
  "apply this catalog" scripts are idempotent.
- ``get_meter(tx, meter_id)``, ``get_meter_by_key(tx, key, version=None)`` (latest by default),
  ``resolve_meter(tx, id_or_key)``, ``list_meters(tx, …)``, ``archive_meter(tx, meter_id)``.

A meter row is never edited: changing a definition means a new version. Archiving hides a
meter from new prices but it keeps counting, so usage of every published version stays exact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import func, select, text

from tallybook.catalog.meter_models import Aggregation, Meter
from tallybook.db import Tx
from tallybook.kit.errors import InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.kit.quantity import QUANTITY_MAX, quantity_text
from tallybook.work import events

KEY_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
DIMENSION_NAME_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
PATH_SEGMENT_PATTERN: Final = re.compile(r"^[A-Za-z0-9_\-:@]{1,100}$")
EVENT_TYPE_LENGTH_MAX: Final = 200
NAME_LENGTH_MAX: Final = 200
UNIT_LENGTH_MAX: Final = 50
PATH_LENGTH_MAX: Final = 200
PATH_DEPTH_MAX: Final = 8
FILTERS_MAX: Final = 10
FILTER_VALUES_MAX: Final = 100
FILTER_STRING_LENGTH_MAX: Final = 200
DIMENSIONS_MAX: Final = 5
#: Serialises meter definitions on PostgreSQL so ``definition_seq`` grows in commit order.
METER_DEFINITION_LOCK_KEY: Final = 7_301_990_301


class MeterCode(StrEnum):
    KEY_INVALID = "meter_key_invalid"
    NAME_INVALID = "meter_name_invalid"
    EVENT_TYPE_INVALID = "meter_event_type_invalid"
    AGGREGATION_INVALID = "meter_aggregation_invalid"
    VALUE_PATH_MISSING = "meter_value_path_missing"
    VALUE_PATH_NOT_ALLOWED = "meter_value_path_not_allowed"
    VALUE_PATH_INVALID = "meter_value_path_invalid"
    FILTER_INVALID = "meter_filter_invalid"
    GROUP_BY_INVALID = "meter_group_by_invalid"
    UNIT_INVALID = "meter_unit_invalid"


class FilterOp(StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"


EQUALITY_OPS: Final = frozenset({FilterOp.EQ, FilterOp.NE})
MEMBERSHIP_OPS: Final = frozenset({FilterOp.IN, FilterOp.NOT_IN})
NUMERIC_OPS: Final = frozenset({FilterOp.GT, FilterOp.GTE, FilterOp.LT, FilterOp.LTE})


@dataclass(frozen=True, slots=True)
class MeterInput:
    key: str
    event_type: str
    aggregation: Aggregation | str
    value_path: str | None = None
    #: ``[{"path": "tier", "op": "eq", "value": "pro"}, …]``
    filters: Sequence[Mapping[str, Any]] = ()
    #: Dimension name → path in ``data``; a list of names means name = path.
    group_by: Mapping[str, str] | Sequence[str] = field(default_factory=dict)
    unit: str | None = None
    name: str | None = None


# Paths ---------------------------------------------------------------------------------------


def parse_path(path: object, *, param: str, code: StrEnum) -> tuple[str, ...]:
    """``tokens``, ``usage.input_tokens`` or ``$.usage.input_tokens`` → path segments.

    Segments are object keys (letters, digits, ``_-:@``); a segment of digits also indexes an
    array. Anything else (wildcards, filters, brackets) is refused: a meter must point at one
    value.
    """
    if not isinstance(path, str) or not path.strip():
        raise InvalidRequest(
            code, f"{param} must be a non-empty path such as 'tokens'", param=param
        )
    text_path = path.strip()
    if len(text_path) > PATH_LENGTH_MAX:
        raise InvalidRequest(code, f"{param} is longer than {PATH_LENGTH_MAX}", param=param)
    if text_path.startswith("$."):
        text_path = text_path[2:]
    segments = tuple(text_path.split("."))
    if len(segments) > PATH_DEPTH_MAX or not all(PATH_SEGMENT_PATTERN.match(s) for s in segments):
        raise InvalidRequest(
            code,
            f"{param} '{path}' is not a dotted path of keys (letters, digits, _-:@), "
            f"at most {PATH_DEPTH_MAX} deep",
            param=param,
        )
    return segments


def normalize_path(path: object, *, param: str, code: StrEnum) -> str:
    return ".".join(parse_path(path, param=param, code=code))


# Validation ----------------------------------------------------------------------------------


def _check_text(value: object, *, param: str, code: StrEnum, length_max: int) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > length_max
        or "\x00" in value
    ):
        raise InvalidRequest(
            code,
            f"{param} must be a non-empty string of at most {length_max} characters",
            param=param,
        )
    return value.strip()


def _filter_scalar(value: object, *, param: str) -> str | int | bool:
    """Equality values: strings, integers or booleans (compared by type: ``1`` never equals
    ``"1"`` or ``true``). Fractional numbers are refused; compare them with gt/gte/lt/lte."""
    if isinstance(value, bool | int) and not (isinstance(value, int) and abs(value) > QUANTITY_MAX):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and len(value) <= FILTER_STRING_LENGTH_MAX and "\x00" not in value:
        return value
    raise InvalidRequest(
        MeterCode.FILTER_INVALID,
        f"{param} must be a string (≤ {FILTER_STRING_LENGTH_MAX} chars), an integer or a boolean; "
        "use gt/gte/lt/lte for fractional numbers",
        param=param,
    )


def _filter_number(value: object, *, param: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise InvalidRequest(
            MeterCode.FILTER_INVALID, f"{param} must be a number for this operator", param=param
        )
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except ArithmeticError:
        number = Decimal("NaN")
    if not number.is_finite() or abs(number) > QUANTITY_MAX:
        raise InvalidRequest(
            MeterCode.FILTER_INVALID, f"{param} must be a finite number", param=param
        )
    return quantity_text(number)


def validate_filters(filters: object) -> list[dict[str, Any]]:
    if filters is None:
        return []
    if not isinstance(filters, list | tuple):
        raise InvalidRequest(MeterCode.FILTER_INVALID, "filters must be a list", param="filters")
    if len(filters) > FILTERS_MAX:
        raise InvalidRequest(
            MeterCode.FILTER_INVALID, f"at most {FILTERS_MAX} filters", param="filters"
        )
    result: list[dict[str, Any]] = []
    for index, item in enumerate(filters):
        prefix = f"filters[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidRequest(
                MeterCode.FILTER_INVALID, f"{prefix} must be an object", param=prefix
            )
        unknown = set(item) - {"path", "op", "value"}
        if unknown:
            name = sorted(unknown)[0]
            raise InvalidRequest(
                MeterCode.FILTER_INVALID, f"{prefix} has an unknown field", param=f"{prefix}.{name}"
            )
        path = normalize_path(
            item.get("path"), param=f"{prefix}.path", code=MeterCode.FILTER_INVALID
        )
        try:
            op = FilterOp(str(item.get("op")))
        except ValueError:
            raise InvalidRequest(
                MeterCode.FILTER_INVALID,
                f"{prefix}.op must be one of {', '.join(o.value for o in FilterOp)}",
                param=f"{prefix}.op",
            ) from None
        if "value" not in item:
            raise InvalidRequest(
                MeterCode.FILTER_INVALID, f"{prefix}.value is required", param=f"{prefix}.value"
            )
        raw = item["value"]
        value: Any
        if op in MEMBERSHIP_OPS:
            if not isinstance(raw, list | tuple) or not 1 <= len(raw) <= FILTER_VALUES_MAX:
                raise InvalidRequest(
                    MeterCode.FILTER_INVALID,
                    f"{prefix}.value must be a list of 1-{FILTER_VALUES_MAX} values",
                    param=f"{prefix}.value",
                )
            value = [_filter_scalar(v, param=f"{prefix}.value[{i}]") for i, v in enumerate(raw)]
        elif op in NUMERIC_OPS:
            value = _filter_number(raw, param=f"{prefix}.value")
        else:
            value = _filter_scalar(raw, param=f"{prefix}.value")
        result.append({"path": path, "op": op.value, "value": value})
    return result


def validate_group_by(group_by: object) -> dict[str, str]:
    if group_by is None:
        return {}
    if isinstance(group_by, list | tuple):
        pairs: list[tuple[object, object]] = [(name, name) for name in group_by]
    elif isinstance(group_by, Mapping):
        pairs = list(group_by.items())
    else:
        raise InvalidRequest(
            MeterCode.GROUP_BY_INVALID,
            "group_by must map dimension names to paths (or list names)",
            param="group_by",
        )
    if len(pairs) > DIMENSIONS_MAX:
        raise InvalidRequest(
            MeterCode.GROUP_BY_INVALID, f"at most {DIMENSIONS_MAX} dimensions", param="group_by"
        )
    result: dict[str, str] = {}
    for name, path in pairs:
        if not isinstance(name, str) or not DIMENSION_NAME_PATTERN.match(name):
            raise InvalidRequest(
                MeterCode.GROUP_BY_INVALID,
                f"dimension name {name!r} must be lower-case letters, digits and _ (≤ 50)",
                param=f"group_by.{name}",
            )
        if name in result:
            raise InvalidRequest(
                MeterCode.GROUP_BY_INVALID,
                f"dimension {name} is repeated",
                param=f"group_by.{name}",
            )
        result[name] = normalize_path(
            path, param=f"group_by.{name}", code=MeterCode.GROUP_BY_INVALID
        )
    return dict(sorted(result.items()))


@dataclass(frozen=True, slots=True)
class MeterDefinition:
    """A validated, normalized definition: what a version is (compared for idempotency)."""

    key: str
    name: str
    event_type: str
    aggregation: Aggregation
    value_path: str | None
    filters: list[dict[str, Any]]
    group_by: dict[str, str]
    unit: str


def validate_meter(data: MeterInput) -> MeterDefinition:
    """The definition-time ladder; each failure names its field."""
    if not isinstance(data.key, str) or not KEY_PATTERN.match(data.key):
        raise InvalidRequest(
            MeterCode.KEY_INVALID,
            "key must start with a lower-case letter and use a-z, 0-9 and _ (≤ 100)",
            param="key",
        )
    event_type = _check_text(
        data.event_type,
        param="event_type",
        code=MeterCode.EVENT_TYPE_INVALID,
        length_max=EVENT_TYPE_LENGTH_MAX,
    )
    try:
        aggregation = Aggregation(data.aggregation)
    except ValueError:
        raise InvalidRequest(
            MeterCode.AGGREGATION_INVALID,
            f"aggregation must be one of {', '.join(a.value for a in Aggregation)}",
            param="aggregation",
        ) from None
    value_path: str | None = None
    if aggregation == Aggregation.COUNT:
        if data.value_path not in (None, ""):
            raise InvalidRequest(
                MeterCode.VALUE_PATH_NOT_ALLOWED,
                "a count meter counts events and takes no value_path",
                param="value_path",
            )
    else:
        if data.value_path in (None, ""):
            raise InvalidRequest(
                MeterCode.VALUE_PATH_MISSING,
                f"a {aggregation.value} meter needs value_path (where in data the value is)",
                param="value_path",
            )
        value_path = normalize_path(
            data.value_path, param="value_path", code=MeterCode.VALUE_PATH_INVALID
        )
    filters = validate_filters(list(data.filters) if data.filters is not None else None)
    group_by = validate_group_by(data.group_by)
    name = data.name if data.name is not None else data.key.replace("_", " ").capitalize()
    name = _check_text(name, param="name", code=MeterCode.NAME_INVALID, length_max=NAME_LENGTH_MAX)
    unit = data.unit if data.unit is not None else data.key
    unit = _check_text(unit, param="unit", code=MeterCode.UNIT_INVALID, length_max=UNIT_LENGTH_MAX)
    return MeterDefinition(
        key=data.key,
        name=name,
        event_type=event_type,
        aggregation=aggregation,
        value_path=value_path,
        filters=filters,
        group_by=group_by,
        unit=unit,
    )


def definition_of(meter: Meter) -> MeterDefinition:
    return MeterDefinition(
        key=meter.key,
        name=meter.name,
        event_type=meter.event_type,
        aggregation=Aggregation(meter.aggregation),
        value_path=meter.value_path,
        filters=list(meter.filters),
        group_by=dict(sorted(meter.group_by.items())),
        unit=meter.unit,
    )


# Use cases -----------------------------------------------------------------------------------


def create_meter(tx: Tx, data: MeterInput) -> Meter:
    definition = validate_meter(data)
    if tx.is_postgres:
        tx.session.execute(
            text("SELECT pg_advisory_xact_lock(:k)"), {"k": METER_DEFINITION_LOCK_KEY}
        )
    latest = _latest_version(tx, definition.key)
    if latest is not None and definition_of(latest) == definition:
        return latest
    seq_max = tx.session.scalar(select(func.max(Meter.definition_seq))) or 0
    meter = Meter(
        id=new_id("mtr"),
        key=definition.key,
        version=(latest.version + 1) if latest is not None else 1,
        name=definition.name,
        event_type=definition.event_type,
        aggregation=definition.aggregation.value,
        value_path=definition.value_path,
        filters=definition.filters,
        group_by=definition.group_by,
        unit=definition.unit,
        created_at=tx.now(),
        definition_seq=seq_max + 1,
        backfilled_through_seq=0,
    )
    tx.session.add(meter)
    tx.session.flush()
    events.emit(
        tx,
        "meter.created",
        object_id=meter.id,
        data={
            "key": meter.key,
            "version": meter.version,
            "event_type": meter.event_type,
            "aggregation": meter.aggregation,
        },
    )
    return meter


def _latest_version(tx: Tx, key: str) -> Meter | None:
    return tx.session.scalar(
        select(Meter).where(Meter.key == key).order_by(Meter.version.desc()).limit(1)
    )


def get_meter(tx: Tx, meter_id: str) -> Meter:
    meter = tx.session.get(Meter, meter_id)
    if meter is None:
        raise NotFound("meter", meter_id)
    return meter


def get_meter_by_key(tx: Tx, key: str, *, version: int | None = None) -> Meter:
    """The latest version of ``key`` (or the given version)."""
    if version is None:
        meter = _latest_version(tx, key)
    else:
        meter = tx.session.scalar(select(Meter).where(Meter.key == key, Meter.version == version))
    if meter is None:
        raise NotFound("meter", key if version is None else f"{key} v{version}", param="meter")
    return meter


def resolve_meter(tx: Tx, id_or_key: str, *, param: str = "meter") -> Meter:
    """A ``mtr_…`` id, or a key (its latest version)."""
    meter = tx.session.get(Meter, id_or_key) if id_or_key.startswith("mtr_") else None
    if meter is None:
        meter = _latest_version(tx, id_or_key)
    if meter is None:
        raise NotFound("meter", id_or_key, param=param)
    return meter


def list_meters(
    tx: Tx,
    request: PageRequest | None = None,
    *,
    key: str | None = None,
    include_archived: bool = True,
) -> Page[Meter]:
    """Newest first, cursor-paginated like every list."""
    request = request or PageRequest()
    query = select(Meter)
    if key is not None:
        query = query.where(Meter.key == key)
    if not include_archived:
        query = query.where(Meter.archived_at.is_(None))
    if request.starting_after:
        query = query.where(Meter.id < request.starting_after).order_by(Meter.id.desc())
    elif request.ending_before:
        query = query.where(Meter.id > request.ending_before).order_by(Meter.id.asc())
    else:
        query = query.order_by(Meter.id.desc())
    rows = list(tx.session.scalars(query.limit(request.limit + 1)))
    if request.ending_before:
        rows = list(reversed(rows[: request.limit])) + rows[request.limit :]
    return page_from_rows(rows, request)


def all_meters(tx: Tx) -> list[Meter]:
    """Every definition, archived included, in definition order (ingestion matches them all)."""
    return list(tx.session.scalars(select(Meter).order_by(Meter.definition_seq)))


def definition_marker(tx: Tx) -> tuple[int, str | None]:
    """``(max definition_seq, newest id)``: changes whenever a meter is defined."""
    row = tx.session.execute(select(func.max(Meter.definition_seq), func.max(Meter.id))).one()
    return int(row[0] or 0), row[1]


def archive_meter(tx: Tx, meter_id: str) -> Meter:
    meter = get_meter(tx, meter_id)
    if meter.archived_at is None:
        meter.archived_at = tx.now()
        tx.session.flush()
        events.emit(
            tx,
            "meter.archived",
            object_id=meter.id,
            data={"key": meter.key, "version": meter.version},
        )
    return meter
