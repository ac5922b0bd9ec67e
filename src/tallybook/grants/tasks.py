"""Scheduled jobs of the grants domain (collected by ``tallybook.jobs``).

``grants.maintain`` (every five minutes; the issue's "daily job", run often so expiries and
instances land on time) does, in this order:

1. **recurring**: issue every due instance of every active schedule. Each instance is its own
   transaction and job run (``grants.recurring_instance / <schedule>:<k>``) with a
   deterministic grant id and a unique (schedule, period) key: running twice issues nothing
   twice. Issuing comes before expiring, so a capped rollover moves out of the previous
   instance before it expires.
2. **plan_credits**: give subscriptions on plan versions with credit rules their schedules.
3. **expire**: expire grants past ``expires_at``; the remainder returns to its source through
   the ledger (``grant:<id>:expire``), idempotent under the grant's row lock.

Each tick is one job run (``grants.maintain / <five-minute slot>``): every item commits with a
checkpoint (phase, last id), so a crashed run resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from tallybook.db import Database, Tx
from tallybook.grants import issuance, plan_credits, recurring, repository
from tallybook.work import jobruns
from tallybook.work.schedule import JobContext, ScheduledJob

log = logging.getLogger(__name__)

JOB: Final = "grants.maintain"
EVERY_SECONDS: Final = 300
BATCH_MAX: Final = 200
PHASES: Final = ("recurring", "plan_credits", "expire")


def _slot(db: Database) -> str:
    now = db.clock.now()
    minute = now.minute - now.minute % (EVERY_SECONDS // 60)
    return now.replace(minute=minute, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")


def _issue_one(tx: Tx, recurring_id: str, owner: str) -> int:
    return len(recurring.issue_due(tx, recurring_id, owner=owner))


def _expire_one(tx: Tx, grant_id: str, owner: str) -> int:
    grant = repository.get_grant(tx, grant_id)
    if grant is None or recurring.waits_for_successor(tx, grant):
        return 0
    return int(issuance.expire_grant(tx, grant_id))


def _sync_rule(tx: Tx, rule_id: str, owner: str) -> int:
    started = 0
    after: str | None = None
    while True:
        count, after = plan_credits.sync(tx, rule_id, after_subscription_id=after)
        started += count
        if after is None:
            return started


def _due(db: Database, phase: str, after: str | None) -> list[str]:
    with db.read(actor=f"system:{JOB}") as tx:
        now = tx.now()
        if phase == "recurring":
            return repository.due_recurring(tx, now, limit=BATCH_MAX, after_id=after)
        if phase == "plan_credits":
            return [r.id for r in repository.active_rules(tx) if after is None or r.id > after]
        return repository.due_expiries(tx, now, limit=BATCH_MAX, after_id=after)


_WORK: Final[dict[str, Callable[[Tx, str, str], int]]] = {
    "recurring": _issue_one,
    "plan_credits": _sync_rule,
    "expire": _expire_one,
}


def run_maintenance(db: Database, context: JobContext) -> dict[str, Any]:
    claim = jobruns.claim(db, job=JOB, run_key=_slot(db), owner=context.owner)
    if claim is None:
        return {"skipped": 1}
    state: dict[str, Any] = {"phase": PHASES[0], "after": None, "counts": {}, "failed": 0}
    state.update(claim.checkpoint)
    counts: dict[str, int] = dict(state["counts"])
    for phase in PHASES[PHASES.index(state["phase"]) :]:
        after = state["after"] if phase == state["phase"] else None
        while True:
            due = _due(db, phase, after)
            if not due:
                break
            for item in due:
                after = item
                try:
                    with db.transaction(actor=f"system:{JOB}") as tx:
                        counts[phase] = counts.get(phase, 0) + _WORK[phase](tx, item, context.owner)
                        jobruns.save_checkpoint(
                            tx,
                            claim,
                            {
                                "phase": phase,
                                "after": item,
                                "counts": counts,
                                "failed": state["failed"],
                            },
                        )
                except jobruns.LeaseLost:
                    raise
                except Exception:
                    # One bad item never blocks the others; it stays due for the next run.
                    state["failed"] += 1
                    log.exception("grants maintenance failed", extra={"phase": phase, "id": item})
                context.progress(sum(counts.values()), None, f"grants: {phase}")
            if phase == "plan_credits":
                break
    result = {**{phase: counts.get(phase, 0) for phase in PHASES}, "failed": state["failed"]}
    with db.transaction(actor=f"system:{JOB}") as tx:
        jobruns.complete(tx, claim, result)
    return result


SCHEDULED_JOBS: list[ScheduledJob] = [
    ScheduledJob(
        name=JOB,
        description="Issue recurring grant instances, start included-in-plan credits, expire "
        "grants (remainders back to their source through the ledger)",
        every_seconds=EVERY_SECONDS,
        run_due=run_maintenance,
    )
]
