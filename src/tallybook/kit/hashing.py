"""Canonical JSON and content hashes (idempotency comparisons, invoice content hashes)."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson

from tallybook.kit.clock import isoformat_z
from tallybook.kit.quantity import quantity_text


def json_default(value: Any) -> Any:
    """orjson's ``default`` for tallybook's values: Decimals as plain text, datetimes as
    RFC 3339 ``Z``, dates ISO, enums by value, sets sorted."""
    if isinstance(value, Decimal):
        return quantity_text(value) if value.is_finite() else str(value)
    if isinstance(value, datetime):
        return isoformat_z(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, Decimals as plain text, datetimes as RFC 3339 Z."""
    return orjson.dumps(value, default=json_default, option=orjson.OPT_SORT_KEYS)


def content_hash(value: Any) -> str:
    """SHA-256 hex of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def json_dumps(value: Any) -> str:
    """JSON text for storage (keys in insertion order, Decimals as strings)."""
    return orjson.dumps(value, default=json_default).decode()


def json_loads(text: str | bytes) -> Any:
    return orjson.loads(text)
