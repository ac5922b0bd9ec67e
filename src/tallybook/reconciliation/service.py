"""Reconciliation use cases.

``run_reconciliation(db, day=…)`` runs every check once per UTC day (a second call the same day
returns the stored run) and records what it found: a discrepancy row per distinct problem,
first and last seen, resolved when a later run no longer finds it. The console and the API read
with :func:`list_discrepancies`, :func:`count_open` and :func:`list_runs`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from sqlalchemy import func, select

from tallybook.db import Database, Tx
from tallybook.kit.errors import Conflict, InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.reconciliation import checks, metrics
from tallybook.reconciliation.domain import DiscrepancyKind, Finding, Options
from tallybook.reconciliation.errors import ReconciliationCode
from tallybook.reconciliation.models import Discrepancy, ReconciliationRun
from tallybook.work import jobruns

log = logging.getLogger(__name__)

JOB: Final = "reconciliation.daily"
COMPLETED: Final = "completed"
RUNNING: Final = "running"
LIST_LIMIT_MAX: Final = 500


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run: ReconciliationRun
    #: False when the day's run existed already (nothing was checked again).
    ran: bool


def run_reconciliation(
    db: Database,
    *,
    day: date | None = None,
    options: Options | None = None,
    owner: str = "cli",
) -> RunOutcome:
    """Run the day's reconciliation (today, by the database clock) unless it already ran."""
    options = options or Options()
    with db.read() as tx:
        run_date = (day or tx.now().date()).isoformat()
    claim = jobruns.claim(db, job=JOB, run_key=run_date, owner=owner)
    if claim is None:
        with db.read() as tx:
            existing = _run_by_date(tx, run_date)
            if existing is None:
                raise Conflict(
                    ReconciliationCode.RUN_IN_PROGRESS,
                    f"the reconciliation of {run_date} is running in another worker",
                    param="date",
                )
            tx.session.expunge(existing)
        return RunOutcome(existing, ran=False)
    try:
        with db.transaction(actor=f"system:{JOB}") as tx:
            run = _run_by_date(tx, run_date)
            if run is None:
                run = ReconciliationRun(
                    id=new_id("rcr"),
                    run_date=run_date,
                    status=RUNNING,
                    checks={},
                    discrepancies_found=0,
                    discrepancies_new=0,
                    discrepancies_resolved=0,
                    started_at=tx.now(),
                )
                tx.session.add(run)
            run_id = run.id
        findings: list[Finding] = []
        scopes: dict[str, Any] = {}
        with db.read() as tx:
            for name, check in checks.CHECKS.items():
                result = check(tx, options)
                findings.extend(result.findings)
                scopes[name] = {**result.scope, "found": len(result.findings)}
        with db.transaction(actor=f"system:{JOB}") as tx:
            run = tx.session.get_one(ReconciliationRun, run_id)
            new, resolved = _record(tx, run, findings)
            run.status = COMPLETED
            run.checks = scopes
            run.discrepancies_found = len({f.fingerprint for f in findings})
            run.discrepancies_new = new
            run.discrepancies_resolved = resolved
            run.finished_at = tx.now()
            jobruns.complete(tx, claim, {"run_id": run_id, "found": run.discrepancies_found})
            open_by_kind = _open_by_kind(tx)
            finished = run.finished_at
            tx.session.flush()
            tx.session.expunge(run)
    except BaseException as error:
        jobruns.fail(db, claim, error)
        raise
    _export(open_by_kind, finished.timestamp())
    log.info(
        "reconciliation run",
        extra={"run_id": run_id, "found": run.discrepancies_found, "new": new},
    )
    return RunOutcome(run, ran=True)


def _run_by_date(tx: Tx, run_date: str) -> ReconciliationRun | None:
    return tx.session.scalar(
        select(ReconciliationRun).where(ReconciliationRun.run_date == run_date)
    )


def _record(tx: Tx, run: ReconciliationRun, findings: Sequence[Finding]) -> tuple[int, int]:
    now = tx.now()
    by_fingerprint = {f.fingerprint: f for f in findings}
    existing = {
        d.fingerprint: d
        for d in tx.session.scalars(
            select(Discrepancy).where(
                Discrepancy.fingerprint.in_(list(by_fingerprint))
                | Discrepancy.resolved_at.is_(None)
            )
        )
    }
    new = resolved = 0
    for fingerprint, finding in by_fingerprint.items():
        row = existing.get(fingerprint)
        if row is None:
            new += 1
            row = Discrepancy(
                id=new_id("rcd"),
                kind=finding.kind.value,
                fingerprint=fingerprint,
                first_seen_at=now,
                first_run_id=run.id,
            )
            tx.session.add(row)
        elif row.resolved_at is not None:
            new += 1  # came back
        row.objects = finding.objects
        row.currency = finding.currency
        row.expected_minor = finding.expected_minor
        row.actual_minor = finding.actual_minor
        row.expected_quantity = finding.expected_quantity
        row.actual_quantity = finding.actual_quantity
        row.detail = finding.detail
        row.last_seen_at = now
        row.last_run_id = run.id
        row.resolved_at = None
        row.resolved_run_id = None
    for fingerprint, row in existing.items():
        if fingerprint not in by_fingerprint and row.resolved_at is None:
            row.resolved_at = now
            row.resolved_run_id = run.id
            resolved += 1
    return new, resolved


def _open_by_kind(tx: Tx) -> dict[str, int]:
    rows = tx.session.execute(
        select(Discrepancy.kind, func.count())
        .where(Discrepancy.resolved_at.is_(None))
        .group_by(Discrepancy.kind)
    )
    return {kind: int(n) for kind, n in rows}


def _export(open_by_kind: dict[str, int], finished_at: float) -> None:
    for kind in DiscrepancyKind:
        metrics.DISCREPANCIES.labels(kind.value).set(open_by_kind.get(kind.value, 0))
    metrics.LAST_RUN_TIMESTAMP.set(finished_at)
    metrics.RUNS.inc()


# Reads -------------------------------------------------------------------------------------


def _kind(kind: str | None) -> str | None:
    if kind is not None and kind not in {k.value for k in DiscrepancyKind}:
        raise InvalidRequest(
            ReconciliationCode.KIND_INVALID,
            f"kind must be one of {', '.join(k.value for k in DiscrepancyKind)}",
            param="kind",
        )
    return kind


def list_discrepancies(
    tx: Tx,
    *,
    open_only: bool = True,
    kind: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Discrepancy]:
    """Discrepancies, most recently seen first (for the console: offset paging)."""
    query = select(Discrepancy).order_by(Discrepancy.last_seen_at.desc(), Discrepancy.id.desc())
    if open_only:
        query = query.where(Discrepancy.resolved_at.is_(None))
    if (kind := _kind(kind)) is not None:
        query = query.where(Discrepancy.kind == kind)
    limit = max(1, min(limit, LIST_LIMIT_MAX))
    return list(tx.session.scalars(query.limit(limit).offset(max(offset, 0))))


def count_open(tx: Tx, *, kind: str | None = None) -> int:
    query = select(func.count()).select_from(Discrepancy).where(Discrepancy.resolved_at.is_(None))
    if (kind := _kind(kind)) is not None:
        query = query.where(Discrepancy.kind == kind)
    return int(tx.session.scalar(query) or 0)


def page_discrepancies(
    tx: Tx, request: PageRequest, *, status: str = "open", kind: str | None = None
) -> Page[Discrepancy]:
    """Cursor pages (newest first by id) for the API; ``status`` is open, resolved or all."""
    if status not in ("open", "resolved", "all"):
        raise InvalidRequest(
            ReconciliationCode.STATUS_INVALID,
            "status must be open, resolved or all",
            param="status",
        )
    query = select(Discrepancy).order_by(Discrepancy.id.desc())
    if status == "open":
        query = query.where(Discrepancy.resolved_at.is_(None))
    elif status == "resolved":
        query = query.where(Discrepancy.resolved_at.is_not(None))
    if (kind := _kind(kind)) is not None:
        query = query.where(Discrepancy.kind == kind)
    if request.starting_after:
        query = query.where(Discrepancy.id < request.starting_after)
    return page_from_rows(list(tx.session.scalars(query.limit(request.limit + 1))), request)


def get_discrepancy(tx: Tx, discrepancy_id: str) -> Discrepancy:
    found = tx.session.get(Discrepancy, discrepancy_id)
    if found is None:
        raise NotFound("discrepancy", discrepancy_id)
    return found


def list_runs(tx: Tx, request: PageRequest) -> Page[ReconciliationRun]:
    query = select(ReconciliationRun).order_by(ReconciliationRun.id.desc())
    if request.starting_after:
        query = query.where(ReconciliationRun.id < request.starting_after)
    return page_from_rows(list(tx.session.scalars(query.limit(request.limit + 1))), request)


def latest_run(tx: Tx) -> ReconciliationRun | None:
    return tx.session.scalar(
        select(ReconciliationRun).order_by(ReconciliationRun.run_date.desc()).limit(1)
    )
