"""Catalog tables: features, plans, plan versions, prices, entitlement definitions.

A plan version is editable while ``draft`` and immutable once ``published``: the service
refuses edits, and database triggers (migration ``0004_catalog``) refuse any insert, update or
delete of a published version's prices and entitlements, and any change to its terms.
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

DRAFT = "draft"
PUBLISHED = "published"
ARCHIVED = "archived"


class Feature(Base):
    __tablename__ = "catalog_features"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: boolean | config | metered
    type: Mapped[str] = mapped_column(String(16))
    #: The meter version a metered feature counts (``meters.id``).
    meter_id: Mapped[str | None] = mapped_column(ForeignKey("meters.id"), nullable=True)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Plan(Base):
    __tablename__ = "catalog_plans"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PlanVersion(Base):
    __tablename__ = "catalog_plan_versions"
    __table_args__ = (
        UniqueConstraint("plan_id", "version"),
        CheckConstraint("status IN ('draft', 'published', 'archived')", name="status"),
        CheckConstraint("interval_count >= 1", name="interval_count"),
        CheckConstraint(
            "minimum_commitment_minor IS NULL OR minimum_commitment_minor >= 0",
            name="minimum_commitment",
        ),
        CheckConstraint(
            "billing_threshold_minor IS NULL OR billing_threshold_minor > 0",
            name="billing_threshold",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("catalog_plans.id"), index=True)
    #: 1, 2, 3… within the plan.
    version: Mapped[int] = mapped_column(Integer)
    #: draft → published → archived (archived: no new subscriptions; existing ones continue).
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    interval_unit: Mapped[str] = mapped_column(String(8))
    interval_count: Mapped[int] = mapped_column(Integer)
    minimum_commitment_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: Issue an invoice early once the period's accrued charges reach this amount (invoicing).
    billing_threshold_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    upgrade_policy: Mapped[str] = mapped_column(String(32))
    downgrade_policy: Mapped[str] = mapped_column(String(32))
    same_price_policy: Mapped[str] = mapped_column(String(32))
    cancellation_credit: Mapped[str] = mapped_column(String(16))
    trial_period_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Price(Base):
    __tablename__ = "catalog_prices"
    __table_args__ = (
        UniqueConstraint("plan_version_id", "key"),
        CheckConstraint("type IN ('flat', 'usage')", name="type"),
        CheckConstraint("amount_minor IS NULL OR amount_minor >= 0", name="amount"),
        CheckConstraint("max_charge_minor IS NULL OR max_charge_minor >= 0", name="max_charge"),
        CheckConstraint(
            "(type = 'flat' AND amount_minor IS NOT NULL AND timing IS NOT NULL) OR "
            "(type = 'usage' AND meter_id IS NOT NULL AND model IS NOT NULL)",
            name="shape",
        ),
        Index("ix_catalog_prices_version_position", "plan_version_id", "position"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    plan_version_id: Mapped[str] = mapped_column(ForeignKey("catalog_plan_versions.id"))
    position: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(8))
    timing: Mapped[str | None] = mapped_column(String(16), nullable=True)
    amount_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    meter_id: Mapped[str | None] = mapped_column(ForeignKey("meters.id"), nullable=True, index=True)
    model: Mapped[str | None] = mapped_column(String(16), nullable=True)
    unit_price: Mapped[Decimal | None] = mapped_column(DecimalType(), nullable=True)
    #: ``[{"up_to": "1000" | null, "unit_price": "0.01", "flat_fee_minor": 0}, …]``
    tiers: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, nullable=True)
    package_size: Mapped[Decimal | None] = mapped_column(DecimalType(), nullable=True)
    package_price: Mapped[Decimal | None] = mapped_column(DecimalType(), nullable=True)
    package_rounding: Mapped[str | None] = mapped_column(String(8), nullable=True)
    included_quantity: Mapped[Decimal] = mapped_column(DecimalType())
    max_charge_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: ``{"model": "gpt-4o"}``: only usage whose group-by dimensions match is priced here.
    group_filter: Mapped[dict[str, str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Entitlement(Base):
    """Feature → value in one plan version (evaluated by the entitlements domain)."""

    __tablename__ = "catalog_entitlements"
    __table_args__ = (
        UniqueConstraint("plan_version_id", "feature_id"),
        CheckConstraint(
            "enforcement IS NULL OR enforcement IN ('hard', 'soft')", name="enforcement"
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    plan_version_id: Mapped[str] = mapped_column(ForeignKey("catalog_plan_versions.id"))
    feature_id: Mapped[str] = mapped_column(ForeignKey("catalog_features.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    config: Mapped[Any] = mapped_column(JSONType, nullable=True)
    #: A metered feature's usage limit per billing period (NULL: unlimited).
    limit_quantity: Mapped[Decimal | None] = mapped_column(DecimalType(), nullable=True)
    enforcement: Mapped[str | None] = mapped_column(String(8), nullable=True)
    #: The meter version the limit counts (copied from the feature when the version is drafted).
    meter_id: Mapped[str | None] = mapped_column(ForeignKey("meters.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
