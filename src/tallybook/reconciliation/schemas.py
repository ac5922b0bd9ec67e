"""API shapes of reconciliation runs and discrepancies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from tallybook.reconciliation.models import Discrepancy, ReconciliationRun


class RunOut(BaseModel):
    object: Literal["reconciliation_run"] = "reconciliation_run"
    id: str
    date: str
    status: str
    checks: dict[str, Any]
    discrepancies_found: int
    discrepancies_new: int
    discrepancies_resolved: int
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, run: ReconciliationRun) -> RunOut:
        return cls(
            id=run.id,
            date=run.run_date,
            status=run.status,
            checks=dict(run.checks or {}),
            discrepancies_found=run.discrepancies_found,
            discrepancies_new=run.discrepancies_new,
            discrepancies_resolved=run.discrepancies_resolved,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )


class DiscrepancyOut(BaseModel):
    object: Literal["reconciliation_discrepancy"] = "reconciliation_discrepancy"
    id: str
    kind: str
    status: Literal["open", "resolved"]
    objects: dict[str, Any]
    currency: str | None
    expected_minor: int | None
    actual_minor: int | None
    #: Decimal quantities as strings (exact).
    expected_quantity: str | None
    actual_quantity: str | None
    detail: str
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    first_run_id: str
    last_run_id: str

    @classmethod
    def of(cls, row: Discrepancy) -> DiscrepancyOut:
        return cls(
            id=row.id,
            kind=row.kind,
            status="open" if row.resolved_at is None else "resolved",
            objects=dict(row.objects or {}),
            currency=row.currency,
            expected_minor=row.expected_minor,
            actual_minor=row.actual_minor,
            expected_quantity=None if row.expected_quantity is None else str(row.expected_quantity),
            actual_quantity=None if row.actual_quantity is None else str(row.actual_quantity),
            detail=row.detail,
            first_seen_at=row.first_seen_at,
            last_seen_at=row.last_seen_at,
            resolved_at=row.resolved_at,
            first_run_id=row.first_run_id,
            last_run_id=row.last_run_id,
        )
