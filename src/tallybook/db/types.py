"""Column types that behave the same on SQLite and PostgreSQL.

- :class:`UTCDateTime`: always returns aware UTC datetimes. PostgreSQL stores ``timestamptz``;
  SQLite stores naive UTC text (``YYYY-MM-DD HH:MM:SS.ffffff``) that sorts correctly.
  Always bind datetimes through typed Core/ORM constructs (or ``bindparam(type_=UTCDateTime())``);
  a raw sqlite3 binding would write a different text format and break comparisons.
- :class:`DecimalType`: exact decimals. ``NUMERIC(38, 12)`` on PostgreSQL; canonical text on
  SQLite (SQLite's NUMERIC is a float). Never do arithmetic on these columns in SQLite SQL.
- :data:`JSONType`: ``JSONB`` on PostgreSQL, JSON text on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from tallybook.kit.invariant import invariant
from tallybook.kit.quantity import QUANTITY_PRECISION, QUANTITY_SCALE, quantity_text


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(DateTime(timezone=False))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        invariant(value.tzinfo is not None, f"naive datetime bound to a UTC column: {value!r}")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class DecimalType(TypeDecorator[Decimal]):
    impl = Numeric(QUANTITY_PRECISION, QUANTITY_SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(QUANTITY_PRECISION, QUANTITY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        invariant(not isinstance(value, float), "float bound to a Decimal column")
        decimal_value = Decimal(value)
        if dialect.name == "sqlite":
            return quantity_text(decimal_value)
        return decimal_value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value
        invariant(not isinstance(value, float), "float read from a Decimal column")
        return Decimal(str(value))


JSONType = JSON().with_variant(JSONB(), "postgresql")
