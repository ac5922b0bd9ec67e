"""Scheduled jobs of subscriptions (collected by ``tallybook.jobs``).

``subscriptions.advance`` moves every subscription whose period or trial has ended across its
boundary: renewals (the new period's in-advance fees become pending charges), changes and
cancellations scheduled for period end, trial ends (convert, cancel or pause). Each
(subscription, boundary) is one job run (``work.jobruns``), claimed and completed in the same
transaction as the work, so a boundary is processed exactly once however many workers run and
whatever crashes; the subscription row lock serializes it with API calls.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from tallybook.db import Database
from tallybook.kit.clock import isoformat_z
from tallybook.subscriptions import repository
from tallybook.subscriptions.periods import floor_to_second
from tallybook.subscriptions.service import _state as state
from tallybook.subscriptions.service import lifecycle
from tallybook.work import jobruns
from tallybook.work.schedule import JobContext, ScheduledJob

log = logging.getLogger(__name__)

JOB_ADVANCE: Final = "subscriptions.advance"
ADVANCE_BATCH_MAX: Final = 500
ADVANCE_EVERY_SECONDS: Final = 60


def advance_due(db: Database, context: JobContext) -> dict[str, Any]:
    """Process every subscription due by now, in batches, each in its own transaction."""
    limit = int(context.options.get("limit", ADVANCE_BATCH_MAX))
    done = skipped = failed = boundaries = 0
    # A cursor over (deadline, id): a subscription that fails stays due but is not retried
    # in this run, and never blocks the ones after it.
    cursor: tuple[Any, str] | None = None
    while True:
        with db.read(actor=f"system:{JOB_ADVANCE}") as tx:
            due = repository.due(tx, tx.now(), after=cursor, limit=limit)
        if not due:
            break
        for cursor in due:
            subscription_id = cursor[1]
            try:
                crossed = _advance_one(db, subscription_id, context.owner)
            except Exception:
                failed += 1
                log.exception("advancing a subscription failed", extra={"id": subscription_id})
                continue
            if crossed is None:
                skipped += 1
            else:
                done += 1
                boundaries += crossed
            context.progress(done + skipped + failed, None, "advancing subscriptions")
    return {"advanced": done, "boundaries": boundaries, "skipped": skipped, "failed": failed}


def _advance_one(db: Database, subscription_id: str, owner: str) -> int | None:
    with db.transaction(actor=f"system:{JOB_ADVANCE}") as tx:
        subscription = state.lock(tx, subscription_id)
        if subscription.next_action_at is None or subscription.next_action_at > tx.now():
            return None  # someone else got there first
        run_key = f"{subscription.id}:{isoformat_z(subscription.next_action_at)}"
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
