"""Meters: which events count, and how they aggregate.

A meter matches CloudEvents by ``type`` (and optional ``filters`` on ``data`` fields), reads a
value at ``value_path`` inside ``data`` (not needed for ``count``), aggregates it per window
with ``aggregation``, and may split usage by ``group_by`` dimensions (name → path in ``data``).

Meters are versioned by id: a meter row never changes its definition once it exists. Defining a
meter with an existing ``key`` creates a new version (a new ``mtr_`` id, ``version`` + 1) and
archives nothing: prices keep pointing at the exact version they were published with.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, JSONType, UTCDateTime


class Aggregation(StrEnum):
    COUNT = "count"
    SUM = "sum"
    MAX = "max"
    MIN = "min"
    UNIQUE_COUNT = "unique_count"
    LATEST = "latest"


class Meter(Base):
    __tablename__ = "meters"
    __table_args__ = (UniqueConstraint("key", "version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: Stable name across versions, e.g. ``tokens`` or ``requests``.
    key: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    #: The CloudEvents ``type`` this meter counts.
    event_type: Mapped[str] = mapped_column(String(200), index=True)
    aggregation: Mapped[str] = mapped_column(String(20))
    #: Path into ``data`` of the value to aggregate (``None`` for count).
    value_path: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: ``[{"path": "tier", "op": "eq", "value": "pro"}, …]``
    filters: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    #: Dimension name → path in ``data``, e.g. ``{"model": "model"}``.
    group_by: Mapped[dict[str, str]] = mapped_column(JSONType)
    #: Unit shown on invoices (``tokens``, ``requests``, ``GB-hours``).
    unit: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
