"""Job runs: idempotent, resumable, exclusive units of scheduled work.

A job is identified by (job, run_key), for example ``("invoicing.close_period",
"sub_01J…:2026-11-01")`` or ``("grants.daily", "2026-11-24")``.

- :func:`claim` takes a lease on the run. A succeeded run is never claimed again; a run whose
  lease is held by a live worker is not claimed by a second one; a run whose lease expired
  (its worker crashed) is taken over and resumes from its checkpoint.
- :func:`save_checkpoint` is called inside the same transaction as a batch of work, so the work
  and the cursor that says it is done commit together: after a crash the run resumes exactly
  after the last committed batch. It also fences: if another worker has taken the lease, the
  update matches no row and the batch rolls back (:class:`LeaseLost`).
- :func:`complete` marks the run succeeded, again fenced by the owner.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import literal_column, null, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tallybook.db import Database, Tx
from tallybook.kit.ids import new_id
from tallybook.work.models import JobRun

LEASE_SECONDS_DEFAULT: Final = 300
ERROR_TEXT_LENGTH_MAX: Final = 4000

RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"


class LeaseLost(Exception):
    """Another worker took over this run; the current batch must roll back."""


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id('wrk')[-6:]}"


@dataclass(frozen=True, slots=True)
class Claim:
    job: str
    run_key: str
    owner: str
    checkpoint: dict[str, Any]
    attempts: int
    resumed: bool


def claim(
    db: Database,
    *,
    job: str,
    run_key: str,
    owner: str,
    lease_seconds: int = LEASE_SECONDS_DEFAULT,
) -> Claim | None:
    """Take the run's lease, or return None if it succeeded already or is held by a live owner."""
    with db.transaction(actor=f"system:{job}") as tx:
        return claim_in(tx, job=job, run_key=run_key, owner=owner, lease_seconds=lease_seconds)


def claim_in(
    tx: Tx, *, job: str, run_key: str, owner: str, lease_seconds: int = LEASE_SECONDS_DEFAULT
) -> Claim | None:
    now = tx.now()
    lease_until = now + timedelta(seconds=lease_seconds)
    query = select(JobRun).where(JobRun.job == job, JobRun.run_key == run_key)
    if tx.is_postgres:
        query = query.with_for_update()
    run = tx.session.scalar(query)
    if run is None:
        run = JobRun(
            job=job,
            run_key=run_key,
            status=RUNNING,
            owner=owner,
            lease_expires_at=lease_until,
            attempts=1,
            checkpoint={},
            started_at=now,
        )
        tx.session.add(run)
        try:
            with tx.session.begin_nested():
                tx.session.flush()
        except Exception:
            # Another worker inserted it first; it holds the lease.
            return None
        return Claim(job, run_key, owner, {}, 1, resumed=False)
    if run.status == SUCCEEDED:
        return None
    lease_live = run.lease_expires_at is not None and run.lease_expires_at > now
    if run.status == RUNNING and lease_live and run.owner != owner:
        return None
    run.status = RUNNING
    run.owner = owner
    run.lease_expires_at = lease_until
    run.attempts += 1
    return Claim(job, run_key, owner, dict(run.checkpoint or {}), run.attempts, resumed=True)


def claim_and_complete_many(
    tx: Tx, *, job: str, run_keys: Sequence[str], owner: str, result: dict[str, Any] | None = None
) -> set[str]:
    """For batch jobs whose runs are each claimed and completed inside the caller's
    transaction: :func:`claim_in` then :func:`complete` for many run keys in one statement.
    Returns the keys this call took: new runs, and runs neither succeeded nor held by another
    live owner (a failed run is taken again). Nothing is taken twice: a concurrent caller
    meets the same rows and waits for this transaction, then finds them succeeded."""
    if not run_keys:
        return set()
    now = tx.now()
    insert = postgresql.insert if tx.is_postgres else sqlite.insert
    rows = [
        {
            "job": job,
            "run_key": key,
            "status": SUCCEEDED,
            "owner": owner,
            "lease_expires_at": None,
            "attempts": 1,
            "checkpoint": {},
            "result": result or {},
            "started_at": now,
            "finished_at": now,
        }
        for key in run_keys
    ]
    statement = insert(JobRun)
    existing = JobRun.__table__.c
    new = statement.excluded
    # No bound parameters in the conflict clause (the values come from ``excluded``, the same
    # in every row): with them, SQLAlchemy sends an upsert with RETURNING one row at a time.
    upsert = statement.on_conflict_do_update(
        index_elements=["job", "run_key"],
        set_={
            "status": new.status,
            "owner": new.owner,
            "lease_expires_at": null(),
            "attempts": existing.attempts + literal_column("1"),
            "result": new.result,
            "finished_at": new.finished_at,
        },
        where=(existing.status != new.status)
        & (
            existing.lease_expires_at.is_(None)
            | (existing.lease_expires_at <= new.finished_at)
            | (existing.owner == new.owner)
        ),
    ).returning(JobRun.run_key)
    # One statement with many parameter sets, batched into multi-row VALUES … RETURNING (the
    # taken keys are a set: no parameter order is asked for, which would also go row by row).
    return {row[0] for row in tx.session.execute(upsert, rows)}


def save_checkpoint(
    tx: Tx, claim: Claim, checkpoint: dict[str, Any], *, lease_seconds: int = LEASE_SECONDS_DEFAULT
) -> None:
    """Record progress in the caller's transaction and extend the lease (fenced by owner)."""
    result = tx.session.execute(
        update(JobRun)
        .where(
            JobRun.job == claim.job,
            JobRun.run_key == claim.run_key,
            JobRun.owner == claim.owner,
            JobRun.status == RUNNING,
        )
        .values(
            checkpoint=checkpoint,
            lease_expires_at=tx.now() + timedelta(seconds=lease_seconds),
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"{claim.job}/{claim.run_key} is now owned by another worker")


def complete(tx: Tx, claim: Claim, result: dict[str, Any] | None = None) -> None:
    outcome = tx.session.execute(
        update(JobRun)
        .where(
            JobRun.job == claim.job,
            JobRun.run_key == claim.run_key,
            JobRun.owner == claim.owner,
            JobRun.status == RUNNING,
        )
        .values(status=SUCCEEDED, finished_at=tx.now(), result=result or {}, lease_expires_at=None)
    )
    if outcome.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseLost(f"{claim.job}/{claim.run_key} is now owned by another worker")


def fail(db: Database, claim: Claim, error: BaseException) -> None:
    """Record a failure; the run may be claimed again at once (e.g. on the next scheduler tick)."""
    detail = "".join(traceback.format_exception(error))[-ERROR_TEXT_LENGTH_MAX:]
    with db.transaction(actor=f"system:{claim.job}") as tx:
        tx.session.execute(
            update(JobRun)
            .where(
                JobRun.job == claim.job,
                JobRun.run_key == claim.run_key,
                JobRun.owner == claim.owner,
            )
            .values(status=FAILED, last_error=detail, lease_expires_at=None)
        )


def get_run(tx: Tx, job: str, run_key: str) -> JobRun | None:
    return tx.session.get(JobRun, (job, run_key))


def recent_runs(tx: Tx, *, job: str | None = None, limit: int = 50) -> list[JobRun]:
    query = select(JobRun).order_by(JobRun.started_at.desc()).limit(limit)
    if job is not None:
        query = query.where(JobRun.job == job)
    return list(tx.session.scalars(query))


def run_is_done(tx: Tx, job: str, run_key: str) -> bool:
    run = get_run(tx, job, run_key)
    return run is not None and run.status == SUCCEEDED


def lease_deadline(now: datetime, lease_seconds: int = LEASE_SECONDS_DEFAULT) -> datetime:
    return now + timedelta(seconds=lease_seconds)
