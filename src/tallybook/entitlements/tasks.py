"""Scheduled jobs of the entitlements domain (collected by ``tallybook.jobs``).

- ``entitlements.expire_reservations`` (every minute): open reservations past ``expires_at``
  become ``expired`` and their money holds are voided (the ledger's ``ledger.expire_holds`` may
  have expired them first: either is fine). Checks stop counting a reservation the moment it
  expires, whether or not this ran.
- ``entitlements.spend_alerts`` (every five minutes): for every customer with a spend limit,
  measure this period's on-demand spend and fire ``limit.threshold_reached`` for thresholds
  reached (once each: a unique row). Checks fire them too, as they see them; this catches
  customers whose spend grows without checks.

Each tick is one job run per job (keyed by its time slot) that checkpoints after every item,
so a crashed run resumes where it stopped; every item is idempotent on its own.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from tallybook.db import Database
from tallybook.entitlements import check, repository, reservations, spend
from tallybook.work import jobruns
from tallybook.work.schedule import JobContext, ScheduledJob

log = logging.getLogger(__name__)

EXPIRE_JOB: Final = "entitlements.expire_reservations"
ALERTS_JOB: Final = "entitlements.spend_alerts"
BATCH_MAX: Final = 200


def _slot(db: Database, every_minutes: int) -> str:
    now = db.clock.now()
    minute = now.minute - now.minute % every_minutes
    return now.replace(minute=minute, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")


def run_expire_reservations(db: Database, context: JobContext) -> dict[str, Any]:
    claim = jobruns.claim(db, job=EXPIRE_JOB, run_key=_slot(db, 1), owner=context.owner)
    if claim is None:
        return {"skipped": 1}
    expired = int(claim.checkpoint.get("expired", 0))
    failed = 0
    while True:
        with db.read(actor=f"system:{EXPIRE_JOB}") as tx:
            due = repository.due_reservations(tx, tx.now(), limit=BATCH_MAX)
        progressed = 0
        for reservation_id in due:
            try:
                with db.transaction(actor=f"system:{EXPIRE_JOB}") as tx:
                    if reservations.expire(tx, reservation_id):
                        expired += 1
                        progressed += 1
                    jobruns.save_checkpoint(tx, claim, {"expired": expired})
            except jobruns.LeaseLost:
                raise
            except Exception:
                failed += 1
                log.exception("expiring a reservation failed", extra={"id": reservation_id})
        context.progress(expired, None, "reservations expired")
        if len(due) < BATCH_MAX or progressed == 0:
            break
    with db.transaction(actor=f"system:{EXPIRE_JOB}") as tx:
        jobruns.complete(tx, claim, {"expired": expired, "failed": failed})
    return {"expired": expired, "failed": failed}


def run_spend_alerts(db: Database, context: JobContext) -> dict[str, Any]:
    claim = jobruns.claim(db, job=ALERTS_JOB, run_key=_slot(db, 5), owner=context.owner)
    if claim is None:
        return {"skipped": 1}
    after: str | None = claim.checkpoint.get("after")
    fired = int(claim.checkpoint.get("fired", 0))
    checked = failed = 0
    while True:
        with db.read(actor=f"system:{ALERTS_JOB}") as tx:
            customers = repository.spend_limit_customers(tx, after=after, limit=BATCH_MAX)
        if not customers:
            break
        for customer_id in customers:
            after = customer_id
            try:
                with db.transaction(actor=f"system:{ALERTS_JOB}") as tx:
                    customer = check.resolve_customer(tx, customer_id)
                    now = tx.now()
                    facts = spend.spend_facts_for(
                        tx,
                        customer,
                        meter_id=None,
                        quantity=None,
                        facts=check.subscription_facts(tx, customer.id, now),
                        now=now,
                    )
                    if facts is not None:
                        fired += spend.record_spend_thresholds(tx, customer.id, facts)
                    jobruns.save_checkpoint(tx, claim, {"after": after, "fired": fired})
                checked += 1
            except jobruns.LeaseLost:
                raise
            except Exception:
                failed += 1
                log.exception("spend alerts failed", extra={"customer_id": customer_id})
        context.progress(checked, None, "spend limits checked")
    with db.transaction(actor=f"system:{ALERTS_JOB}") as tx:
        jobruns.complete(tx, claim, {"checked": checked, "fired": fired, "failed": failed})
    return {"checked": checked, "fired": fired, "failed": failed}


SCHEDULED_JOBS: list[ScheduledJob] = [
    ScheduledJob(
        name=EXPIRE_JOB,
        description="Expire open reservations past their timeout (holds voided)",
        every_seconds=60,
        run_due=run_expire_reservations,
    ),
    ScheduledJob(
        name=ALERTS_JOB,
        description="Fire spend-limit threshold alerts for customers with a spend limit",
        every_seconds=300,
        run_due=run_spend_alerts,
    ),
]
