"""Metering tables: raw events, hourly rollups, distinct values, dead letters, late events and
the per-customer "invoiced through" watermarks.

Every accepted event is one row of ``metering_events`` and, in the same transaction, adds to
the hourly ``metering_rollups`` rows of every meter it matches. ``docs/metering.md`` explains
the invariants; the index comments name the queries they serve.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, DecimalType, UTCDateTime
from tallybook.db.migrate import ONLY_ON_DIALECTS


def table_of(model: type[Base]) -> Table:
    """The Core table of a model (bulk inserts skip the ORM on the hot path)."""
    return cast(Table, model.__table__)


#: SQLite only aliases the rowid for a column declared exactly ``INTEGER PRIMARY KEY``.
SEQ_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class MeteringEvent(Base):
    """An accepted usage event, stored once per (source, id). Append-only."""

    __tablename__ = "metering_events"
    __table_args__ = (
        # Exact, permanent dedup.
        UniqueConstraint("source", "event_id"),
        # Usage edges, explainability (list_events) and late re-reads: one customer, one type,
        # a time range.
        Index("ix_metering_events_customer_type_time", "customer_id", "type", "time"),
    )

    #: Our position in ingestion order (time-ordered inserts; cursor and tie-breaker).
    seq: Mapped[int] = mapped_column(SEQ_TYPE, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(255))
    #: The CloudEvents ``id`` (unique within ``source``).
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(200))
    #: The CloudEvents ``subject``: the customer's ``external_id``.
    subject: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[str] = mapped_column(String(40))
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    #: ``data`` as JSON text, numbers exactly as sent (never parsed into floats).
    data: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: blake2b-128 (hex) of the event content: type, subject, time as sent, data.
    content_hash: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The event's time fell in an already-invoiced period when it arrived.
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The highest meter ``definition_seq`` ingestion knew when counting this event.
    meters_seen: Mapped[int] = mapped_column(Integer)


class Rollup(Base):
    """Pre-aggregated usage of one meter for one customer, one hour and one dimension set.

    ``quantity`` is the meter's aggregation over the hour: count, sum, max, min, the latest
    value (with ``latest_time``/``latest_seq`` saying which event), or the number of distinct
    values new in this row (the values themselves are in :class:`RollupValue`).

    A big customer's current hour is written by every concurrent batch; one row would make
    them wait for each other's commit. On PostgreSQL each transaction picks one of
    ``ROLLUP_SHARDS`` rows (``shard``) instead; the hour's usage combines its shards the same
    way it combines hours (sum, extreme, latest). SQLite has one writer and uses shard 0.
    """

    __tablename__ = "metering_rollups"
    __table_args__ = (
        # The entitlement check sums a period's hours per check: on PostgreSQL this index
        # carries the quantity so the sum is an index-only scan instead of a heap visit per
        # hour (110 µs → 30 µs for a month with 30 active hours). SQLite reads the primary key.
        Index(
            "ix_metering_rollups_quantity",
            "meter_id",
            "customer_id",
            "window_start",
            postgresql_include=["quantity"],
            info={ONLY_ON_DIALECTS: ("postgresql",)},
        ).ddl_if(dialect="postgresql"),
    )

    meter_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    #: Canonical JSON of the dimension values (``""`` for a meter without group-by).
    dims_key: Mapped[str] = mapped_column(String(1200), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    event_count: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[Decimal] = mapped_column(DecimalType())
    latest_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    latest_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RollupValue(Base):
    """The distinct values a unique-count meter saw in one rollup row: unique counts over any
    range stay exact (a count distinct over these, not a sum of hourly counts)."""

    __tablename__ = "metering_rollup_values"

    meter_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    dims_key: Mapped[str] = mapped_column(String(1200), primary_key=True)
    value_key: Mapped[str] = mapped_column(String(300), primary_key=True)


class DeadLetter(Base):
    """A rejected event, kept with the reason until it is replayed or discarded."""

    __tablename__ = "metering_dead_letters"
    __table_args__ = (
        # One letter per (source, id); events without them get a letter each (NULLs differ).
        UniqueConstraint("source", "event_id"),
        # The listing and the status counts.
        Index("ix_metering_dead_letters_status_code", "status", "code"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    source: Mapped[str | None] = mapped_column(String(255), nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    subject: Mapped[str | None] = mapped_column(String(200), nullable=True)
    code: Mapped[str] = mapped_column(String(50))
    param: Mapped[str | None] = mapped_column(String(300), nullable=True)
    message: Mapped[str] = mapped_column(Text)
    #: The event as received (JSON text), replayed as is.
    raw: Mapped[str] = mapped_column(Text)
    #: pending → replayed | discarded
    status: Mapped[str] = mapped_column(String(16))
    #: How many times the event was received or replayed and rejected.
    attempts: Mapped[int] = mapped_column(Integer)
    #: First receipt: the event's time when it has none of its own, also on replay.
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LateEvent(Base):
    """An accepted event whose time fell in an already-invoiced period, until invoicing bills
    the difference and marks it billed."""

    __tablename__ = "metering_late_events"
    __table_args__ = (
        # "Unbilled late events of this customer", in seq order.
        Index("ix_metering_late_events_customer_billed", "customer_id", "billed_at", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    customer_id: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(200))
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    billed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: What billed it (an invoice id), for provenance.
    billed_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)


class InvoicedThrough(Base):
    """Per-customer watermark: usage before ``invoiced_through`` has been invoiced. Only moves
    forward. Events with ``time < invoiced_through`` are accepted and marked late."""

    __tablename__ = "metering_invoiced_through"

    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    invoiced_through: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
