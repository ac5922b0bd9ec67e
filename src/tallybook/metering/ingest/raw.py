"""Driver-level helpers for the ingestion hot path.

PostgreSQL: per-connection temporary staging tables (``ON COMMIT DELETE ROWS``) filled with
binary ``COPY`` (an order of magnitude cheaper than binding arrays of parameters), from which
one ``INSERT … SELECT … ON CONFLICT`` per target table does the work in the server.

SQLite: the raw ``sqlite3`` cursor with values already in the exact text forms that
``db.types`` writes (``UTCDateTime``: ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC; ``DecimalType``:
``quantity_text``), and three SQL functions that add and compare those decimal texts exactly
in Python, so a rollup upsert is one statement per row with no read-modify-write round trip.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from tallybook.db import Tx
from tallybook.kit.quantity import quantity_text

_STAGING_READY: Final = "tallybook_metering_staging"
_FUNCTIONS_READY: Final = "tallybook_metering_functions"

STAGE_EVENTS: Final = "tb_stage_events"
STAGE_ROLLUPS: Final = "tb_stage_rollups"
STAGE_VALUES: Final = "tb_stage_values"

#: (name, column list, binary COPY types) of each staging table.
_STAGING: Final = (
    (
        STAGE_EVENTS,
        "source text, event_id text, type text, subject text, customer_id text, "
        "time timestamptz, data text, content_hash text, received_at timestamptz, "
        "late boolean, meters_seen integer, ord integer",
        (
            "text",
            "text",
            "text",
            "text",
            "text",
            "timestamptz",
            "text",
            "text",
            "timestamptz",
            "bool",
            "int4",
            "int4",
        ),
    ),
    (
        STAGE_ROLLUPS,
        "agg text, meter_id text, customer_id text, window_start timestamptz, dims_key text, "
        "shard smallint, event_count bigint, quantity numeric, latest_time timestamptz, "
        "latest_seq bigint",
        (
            "text",
            "text",
            "text",
            "timestamptz",
            "text",
            "int2",
            "int8",
            "numeric",
            "timestamptz",
            "int8",
        ),
    ),
    (
        STAGE_VALUES,
        "meter_id text, customer_id text, window_start timestamptz, dims_key text, value_key text",
        ("text", "text", "timestamptz", "text", "text"),
    ),
)
_COPY_TYPES: Final = {name: types for name, _, types in _STAGING}
_staged_in: weakref.WeakSet[Tx] = weakref.WeakSet()
#: Staging tables already filled in a transaction (a second fill must empty them first).
_filled: weakref.WeakKeyDictionary[Tx, set[str]] = weakref.WeakKeyDictionary()


def _driver_connection(tx: Tx) -> Any:
    return tx.connection.connection


def pg_cursor(tx: Tx) -> Any:
    """The psycopg cursor of the transaction's connection (same transaction)."""
    return _driver_connection(tx).cursor()


def pg_staging(tx: Tx) -> Any:
    """A cursor on a connection whose staging tables exist.

    They are created once per connection; the connection remembers it only after a commit
    (a rolled-back transaction takes its CREATE TABLE with it)."""
    fairy = _driver_connection(tx)
    cursor = fairy.cursor()
    # The record's info dict outlives this checkout (the fairy does not).
    info: dict[str, Any] = fairy.info
    if not info.get(_STAGING_READY) and tx not in _staged_in:
        for name, columns, _ in _STAGING:
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns}) ON COMMIT DELETE ROWS"
            )
        _staged_in.add(tx)
        tx.after_commit(lambda: info.__setitem__(_STAGING_READY, True))
    return cursor


def pg_copy(tx: Tx, cursor: Any, table: str, rows: Iterable[Sequence[Any]]) -> None:
    """Fill a staging table (emptied first if this transaction filled it before)."""
    filled = _filled.setdefault(tx, set())
    if table in filled:
        cursor.execute(f"DELETE FROM {table}")
    filled.add(table)
    with cursor.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(_COPY_TYPES[table]))
        for row in rows:
            copy.write_row(row)


#: Separates values passed as one text parameter and split with ``string_to_array`` (binding
#: one string is far cheaper than binding an array of them). Customer ids and external ids
#: cannot contain it.
UNIT_SEPARATOR: Final = "\x1f"


def joined(values: Iterable[str]) -> str:
    return UNIT_SEPARATOR.join(values)


# SQLite ------------------------------------------------------------------------------------------


def sqlite_time(instant: datetime | None) -> str | None:
    """The text ``UTCDateTime`` stores on SQLite (SQLAlchemy's DATETIME storage format)."""
    if instant is None:
        return None
    value = instant.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


def _add(left: str, right: str) -> str:
    return quantity_text(Decimal(left) + Decimal(right))


def _greatest(left: str, right: str) -> str:
    return left if Decimal(left) >= Decimal(right) else right


def _least(left: str, right: str) -> str:
    return left if Decimal(left) <= Decimal(right) else right


def sqlite_cursor(tx: Tx) -> Any:
    """The sqlite3 cursor of the transaction, with the exact-decimal functions registered."""
    fairy = _driver_connection(tx)
    if not fairy.info.get(_FUNCTIONS_READY):
        raw = fairy.driver_connection
        raw.create_function("tb_dec_add", 2, _add, deterministic=True)
        raw.create_function("tb_dec_max", 2, _greatest, deterministic=True)
        raw.create_function("tb_dec_min", 2, _least, deterministic=True)
        fairy.info[_FUNCTIONS_READY] = True
    return fairy.cursor()
