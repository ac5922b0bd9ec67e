from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, JSONType, UTCDateTime


class WebhookEndpoint(Base):
    """A URL of our user's that receives signed events (Standard Webhooks)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    #: Event types delivered to this endpoint; ``["*"]`` for all.
    event_types: Mapped[list[str]] = mapped_column(JSONType)
    #: ``whsec_<base64>``; needed in clear to sign (like Stripe, shown on create and rotate).
    secret: Mapped[str] = mapped_column(String(100))
    #: The previous secret during a rotation window: deliveries are signed with both.
    previous_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True
    )
    #: enabled | disabled
    status: Mapped[str] = mapped_column(String(16))
    disabled_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    #: Who disabled it: ``user`` (events stop queueing) or ``failures`` (events keep queueing
    #: and are delivered, in order, once a person re-enables the endpoint).
    disabled_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One event for one endpoint. Retried until it succeeds or is given up on; delivered in
    event order per endpoint (a pending delivery blocks the later ones of its endpoint)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        # Serves "the oldest pending delivery of each endpoint" (the FIFO head).
        Index("ix_webhook_deliveries_endpoint_pending", "endpoint_id", "status", "event_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(100))
    #: pending → succeeded | failed (gave up after the retry schedule)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebhookAttempt(Base):
    """The delivery log: every HTTP attempt with its outcome. Append-only."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(40))
    endpoint_id: Mapped[str] = mapped_column(String(40), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The first 2,048 characters of the response body, NUL bytes stripped.
    response_excerpt: Mapped[str | None] = mapped_column(Text, nullable=True)


class WebhookCursor(Base):
    """How far fan-out has scanned the domain event log (by event time)."""

    __tablename__ = "webhook_cursors"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    scanned_until: Mapped[datetime] = mapped_column(UTCDateTime())
