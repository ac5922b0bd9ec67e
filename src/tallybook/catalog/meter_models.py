"""Meters: which events count, and how they aggregate.

A meter matches CloudEvents by ``type`` (and optional ``filters`` on ``data`` fields), reads a
value at ``value_path`` inside ``data`` (not needed for ``count``), aggregates it per window
with ``aggregation``, and may split usage by ``group_by`` dimensions (name → path in ``data``).

Meters are versioned by id: a meter row never changes its definition once it exists. Defining a
meter with an existing ``key`` creates a new version (a new ``mtr_`` id, ``version`` + 1) and
archives nothing: prices keep pointing at the exact version they were published with.

``definition_seq`` orders meter definitions across all keys (1, 2, 3…, assigned under a lock, so
it grows in commit order). Ingestion stamps every event with the highest ``definition_seq`` it
knew, which is how a meter defined after events arrived knows exactly which stored events it
still has to count (its backfill; see ``docs/metering.md``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Integer, String, UniqueConstraint
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
    __table_args__ = (UniqueConstraint("key", "version"), UniqueConstraint("definition_seq"))

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
    #: Position of this definition among all meter definitions (see module docstring).
    definition_seq: Mapped[int] = mapped_column(Integer)
    #: Backfill progress: stored events up to this event ``seq`` that were ingested before the
    #: meter existed are counted in its rollups. Queries count the rest from raw events.
    backfilled_through_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    #: When the backfill finished (``None`` while events ingested before the meter remain).
    backfilled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
