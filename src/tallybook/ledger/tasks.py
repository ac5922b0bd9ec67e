"""Scheduled jobs and outbox handlers of the ledger (collected by ``tallybook.jobs``)."""

from __future__ import annotations

from tallybook.ledger.service.transfers import EXPIRE_HOLDS_JOB, run_expire_holds
from tallybook.work.schedule import ScheduledJob

SCHEDULED_JOBS: list[ScheduledJob] = [
    ScheduledJob(
        name=EXPIRE_HOLDS_JOB,
        description="Release holds whose timeout has passed (an expire_pending transfer each)",
        every_seconds=60,
        run_due=run_expire_holds,
    )
]
