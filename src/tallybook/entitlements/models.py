"""Entitlements tables: per-customer overrides, reservations (and the rows that serialize
them), spend limits and the alerts fired against limits.

Usage is never stored here: it is metering's rollups, read at check time.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, DecimalType, JSONType, UTCDateTime


class EntitlementOverride(Base):
    """A per-customer value for one feature that takes precedence over every plan, until it
    expires or is revoked. At most one is active per (customer, feature): a new one replaces
    the previous."""

    __tablename__ = "entitlements_overrides"
    __table_args__ = (
        # The check: the live override of one customer and feature.
        Index("ix_entitlements_overrides_customer_feature", "customer_id", "feature_id", "status"),
        CheckConstraint("status IN ('active', 'revoked', 'replaced')", name="status"),
        CheckConstraint(
            "enforcement IS NULL OR enforcement IN ('hard', 'soft')", name="enforcement"
        ),
        CheckConstraint("expires_at IS NULL OR expires_at > starts_at", name="window"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    feature_id: Mapped[str] = mapped_column(ForeignKey("catalog_features.id"))
    #: boolean features
    enabled: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    #: config features
    config: Mapped[Any] = mapped_column(JSONType, nullable=True)
    #: metered features: the limit per period (NULL with ``unlimited``) and its enforcement.
    limit_quantity: Mapped[Decimal | None] = mapped_column(DecimalType(), nullable=True)
    unlimited: Mapped[bool] = mapped_column(Boolean)
    enforcement: Mapped[str | None] = mapped_column(String(8), nullable=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(String(8))
    created_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Reservation(Base):
    """Units of a metered feature and/or money from credit grants, set aside for work in flight
    until settled (the actual amount), released, or expired."""

    __tablename__ = "entitlements_reservations"
    __table_args__ = (
        # The check and the reserve path: open reservations of one customer and feature.
        Index(
            "ix_entitlements_reservations_customer_feature",
            "customer_id",
            "feature_id",
            "status",
        ),
        # The expiry job.
        Index("ix_entitlements_reservations_status_expires_at", "status", "expires_at"),
        CheckConstraint("status IN ('open', 'settled', 'released', 'expired')", name="status"),
        CheckConstraint(
            "quantity IS NOT NULL OR amount_minor IS NOT NULL", name="something_reserved"
        ),
        CheckConstraint("amount_minor IS NULL OR amount_minor > 0", name="amount"),
        CheckConstraint(
            "settled_amount_minor IS NULL OR (settled_amount_minor >= 0 "
            "AND settled_amount_minor <= amount_minor)",
            name="settled_amount",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    feature_id: Mapped[str | None] = mapped_column(ForeignKey("catalog_features.id"), nullable=True)
    meter_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: The usage period the units count against ([start, end)).
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    quantity: Mapped[Decimal | None] = mapped_column(DecimalType(), nullable=True)
    settled_quantity: Mapped[Decimal | None] = mapped_column(DecimalType(), nullable=True)
    amount_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    settled_amount_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: Money holds: ``[{"grant_id", "account_id", "transfer_id", "amount_minor"}]`` in the
    #: order they are consumed at settlement.
    holds: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(8))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Extra ``data`` fields for the usage event recorded at settlement (dimensions).
    event_data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONType)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ReservationLock(Base):
    """One row per (customer, feature, period): reserving and settling lock it, so
    ``used + reserved + quantity ≤ limit`` is checked by one transaction at a time."""

    __tablename__ = "entitlements_reservation_locks"

    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    feature_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SpendLimit(Base):
    """A customer's maximum on-demand spend per billing period, in their currency."""

    __tablename__ = "entitlements_spend_limits"
    __table_args__ = (CheckConstraint("amount_minor >= 0", name="amount"),)

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: Percentages of the limit that fire ``limit.threshold_reached`` (e.g. [50, 80, 100]).
    thresholds: Mapped[list[int]] = mapped_column(JSONType)
    set_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LimitAlert(Base):
    """An alert fired once: a spend threshold reached, or a limit exceeded, per customer,
    subject (``spend`` or a feature id) and period. The unique key is what makes it once."""

    __tablename__ = "entitlements_limit_alerts"
    __table_args__ = (
        UniqueConstraint("customer_id", "subject", "period_start", "kind", "threshold_percent"),
        CheckConstraint("kind IN ('threshold', 'exceeded')", name="kind"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    subject: Mapped[str] = mapped_column(String(40))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String(16))
    threshold_percent: Mapped[int] = mapped_column(Integer)
    #: What was measured when it fired (spend in minor units, or usage as text).
    measured: Mapped[str] = mapped_column(String(64))
    limit_value: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
