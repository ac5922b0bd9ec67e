"""Reconciliation tables.

- ``reconciliation_runs``: one run per UTC day (``run_date`` is unique: the daily job is
  idempotent), with what each check looked at (``checks``) and how many discrepancies it found.
- ``reconciliation_discrepancies``: one row per distinct problem (``fingerprint`` = kind + the
  objects involved), first and last seen, resolved when a later run no longer finds it (and
  reopened if it comes back).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, DecimalType, JSONType, UTCDateTime


class ReconciliationRun(Base):
    __tablename__ = "reconciliation_runs"
    __table_args__ = (CheckConstraint("status IN ('running', 'completed')", name="status"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: The UTC day the run reconciles as of (``YYYY-MM-DD``); one run per day.
    run_date: Mapped[str] = mapped_column(String(10), unique=True)
    #: running | completed
    status: Mapped[str] = mapped_column(String(16))
    #: Per check: what it examined (counts, windows) and how many it found.
    checks: Mapped[dict[str, Any]] = mapped_column(JSONType)
    discrepancies_found: Mapped[int] = mapped_column(Integer)
    discrepancies_new: Mapped[int] = mapped_column(Integer)
    discrepancies_resolved: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Discrepancy(Base):
    __tablename__ = "reconciliation_discrepancies"
    __table_args__ = (
        Index("ix_reconciliation_discrepancies_open", "resolved_at", "kind", "id"),
        Index("ix_reconciliation_discrepancies_kind", "kind", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    #: kind + the objects involved: the same problem found again updates this row.
    fingerprint: Mapped[str] = mapped_column(String(300), unique=True)
    #: The objects involved, by role: {"invoice_id": …, "customer_id": …, "transfer_id": …}.
    objects: Mapped[dict[str, Any]] = mapped_column(JSONType)
    currency: Mapped[str | None] = mapped_column(String(16), nullable=True)
    expected_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    actual_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expected_quantity: Mapped[Decimal | None] = mapped_column(DecimalType(), nullable=True)
    actual_quantity: Mapped[Decimal | None] = mapped_column(DecimalType(), nullable=True)
    detail: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    first_run_id: Mapped[str] = mapped_column(String(40))
    last_run_id: Mapped[str] = mapped_column(String(40))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_run_id: Mapped[str | None] = mapped_column(String(40), nullable=True)

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
