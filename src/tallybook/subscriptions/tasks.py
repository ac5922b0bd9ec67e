"""Scheduled jobs of subscriptions (collected by ``tallybook.jobs``).

``subscriptions.advance`` moves every subscription whose period or trial has ended across its
boundary: renewals (the new period's in-advance fees become pending charges), changes and
cancellations scheduled for period end, trial ends (convert, cancel or pause). Each
(subscription, boundary) is one job run (``work.jobruns``), claimed and completed in the same
transaction as the work, so a boundary is processed exactly once however many workers run and
whatever crashes; the subscription row lock serializes it with API calls.

Due subscriptions are advanced a chunk at a time: one transaction locks the chunk's rows (id
order, ``SKIP LOCKED`` on PostgreSQL, so two workers split the work instead of queueing on the
same rows) and advances each subscription inside its own savepoint, so one that raises is rolled
back alone, counted as failed and logged, and the others of the chunk still commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

from tallybook.db import Database, Tx
from tallybook.kit.clock import isoformat_z
from tallybook.subscriptions import repository
from tallybook.subscriptions.models import Subscription
from tallybook.subscriptions.periods import floor_to_second
from tallybook.subscriptions.service import _state as state
from tallybook.subscriptions.service import lifecycle
from tallybook.work import jobruns
from tallybook.work.schedule import JobContext, ScheduledJob

log = logging.getLogger(__name__)

JOB_ADVANCE: Final = "subscriptions.advance"
ADVANCE_BATCH_MAX: Final = 500
#: Subscriptions advanced per transaction (each in its own savepoint).
ADVANCE_CHUNK_MAX: Final = 100
ADVANCE_EVERY_SECONDS: Final = 60


def advance_due(db: Database, context: JobContext) -> dict[str, Any]:
    """Process every subscription due by now, in chunks, each chunk in one transaction."""
    limit = int(context.options.get("limit", ADVANCE_BATCH_MAX))
    chunk_size = max(1, min(int(context.options.get("chunk", ADVANCE_CHUNK_MAX)), limit))
    totals = {"advanced": 0, "boundaries": 0, "skipped": 0, "failed": 0}
    # A cursor over (deadline, id): a subscription that fails (or another worker holds) stays
    # due but is not retried in this run, and never blocks the ones after it.
    cursor: tuple[Any, str] | None = None
    while True:
        with db.read(actor=f"system:{JOB_ADVANCE}") as tx:
            due = repository.due(tx, tx.now(), after=cursor, limit=limit)
        if not due:
            break
        cursor = due[-1]
        for start in range(0, len(due), chunk_size):
            ids = [subscription_id for _, subscription_id in due[start : start + chunk_size]]
            for key, count in _advance_chunk(db, ids, context.owner).items():
                totals[key] += count
            context.progress(
                totals["advanced"] + totals["skipped"] + totals["failed"],
                None,
                "advancing subscriptions",
            )
    return totals


class _RunTakenElsewhere(Exception):
    """A chunk's job run was found succeeded or held when completing it: redo the chunk the
    slow way, claiming each run before its work."""


def _advance_chunk(db: Database, subscription_ids: Sequence[str], owner: str) -> dict[str, int]:
    try:
        try:
            return _advance_locked(db, subscription_ids, owner, claim_first=False)
        except _RunTakenElsewhere:
            return _advance_locked(db, subscription_ids, owner, claim_first=True)
    except Exception:
        # The chunk's transaction itself failed (its lock, its commit): nothing of it was
        # kept, every subscription of it stays due, and the next chunks still run.
        log.exception("advancing a chunk of subscriptions failed", extra={"ids": subscription_ids})
        return {"advanced": 0, "boundaries": 0, "skipped": 0, "failed": len(subscription_ids)}


def _advance_locked(
    db: Database, subscription_ids: Sequence[str], owner: str, *, claim_first: bool
) -> dict[str, int]:
    """Advance a chunk in one transaction, each subscription in its own savepoint.

    The job runs of the chunk are claimed and completed in the same transaction as the work:
    one at a time before each subscription's work (``claim_first``), or all at once after it.
    The second is safe because the runs of this job are only ever written under the
    subscription's row lock, in the transaction that does the work: holding the lock and
    seeing the boundary still due means no run for it committed. Should one be taken anyway,
    the whole chunk rolls back and is redone with ``claim_first``."""
    counts = {"advanced": 0, "boundaries": 0, "skipped": 0, "failed": 0}
    with db.transaction(actor=f"system:{JOB_ADVANCE}") as tx:
        locked = repository.lock_many(tx, subscription_ids, skip_locked=True)
        # Held by another worker or a request: left for the next run (a request brings the
        # subscription up to date itself).
        counts["skipped"] += len(set(subscription_ids)) - len(locked)
        preloaded = state.preload(tx, locked)
        completed: dict[int, list[str]] = {}  # boundaries crossed → run keys
        for subscription in locked:
            if subscription.next_action_at is None or subscription.next_action_at > tx.now():
                counts["skipped"] += 1  # someone else got there first
                continue
            run_key = f"{subscription.id}:{isoformat_z(subscription.next_action_at)}"
            try:
                with tx.session.begin_nested():
                    crossed = _advance_one(tx, subscription, run_key, owner, claim_first)
            except Exception:
                counts["failed"] += 1
                log.exception("advancing a subscription failed", extra={"id": subscription.id})
                continue
            if crossed is None:
                counts["skipped"] += 1
            else:
                counts["advanced"] += 1
                counts["boundaries"] += crossed
                completed.setdefault(crossed, []).append(run_key)
        if not claim_first:
            for crossed, run_keys in sorted(completed.items()):
                taken = jobruns.claim_and_complete_many(
                    tx,
                    job=JOB_ADVANCE,
                    run_keys=run_keys,
                    owner=owner,
                    result={"boundaries": crossed},
                )
                if len(taken) != len(run_keys):
                    raise _RunTakenElsewhere(sorted(set(run_keys) - taken))
        del preloaded
    return counts


def _advance_one(
    tx: Tx, subscription: Subscription, run_key: str, owner: str, claim_first: bool
) -> int | None:
    """Advance one locked, due subscription, inside the caller's savepoint."""
    if not claim_first:
        return lifecycle.advance(tx, subscription, floor_to_second(tx.now()))
    claim = jobruns.claim_in(tx, job=JOB_ADVANCE, run_key=run_key, owner=owner)
    if claim is None:
        return None
    crossed = lifecycle.advance(tx, subscription, floor_to_second(tx.now()))
    jobruns.complete(tx, claim, {"boundaries": crossed})
    return crossed


SCHEDULED_JOBS: list[ScheduledJob] = [
    ScheduledJob(
        name=JOB_ADVANCE,
        description="Renew subscriptions at period end, apply scheduled changes, end trials",
        every_seconds=ADVANCE_EVERY_SECONDS,
        run_due=advance_due,
    )
]
