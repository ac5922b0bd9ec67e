from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, JSONType, UTCDateTime


class OutboxMessage(Base):
    """A side effect to perform after commit (a Stripe call, an outbound webhook, a NATS
    publish). Written in the same transaction as the state change that caused it."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        UniqueConstraint("topic", "dedup_key"),
        # Serves the relay's "due messages" scan.
        Index("ix_outbox_messages_due", "status", "available_at"),
        # Serves the per-ordering-key FIFO guard.
        Index("ix_outbox_messages_ordering", "ordering_key", "status", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    topic: Mapped[str] = mapped_column(String(100))
    dedup_key: Mapped[str] = mapped_column(String(300))
    ordering_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    #: pending → delivered, or dead after attempts_max failures (a human replays it).
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class JobRun(Base):
    """One run of a job for one key (a period, a subscription period, a day): the unit of
    job idempotency. A succeeded run is never repeated; a crashed one resumes from its
    checkpoint once its lease expires."""

    __tablename__ = "job_runs"

    job: Mapped[str] = mapped_column(String(100), primary_key=True)
    run_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: running → succeeded | failed
    status: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    checkpoint: Mapped[dict[str, Any]] = mapped_column(JSONType)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class DomainEvent(Base):
    """Something that happened (``invoice.finalized``, ``grant.created``, ``limit.reached``),
    written in the same transaction as the change. Outbound webhooks deliver these to our users
    and the console builds customer timelines from them. Append-only."""

    __tablename__ = "domain_events"
    __table_args__ = (Index("ix_domain_events_customer", "customer_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    object_id: Mapped[str | None] = mapped_column(String(120), nullable=True, index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    actor: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
