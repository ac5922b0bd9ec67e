"""Scheduled jobs of metering (collected by ``tallybook.jobs``)."""

from __future__ import annotations

from typing import Any

from tallybook.db import Database
from tallybook.metering.backfill import run_backfills
from tallybook.work.schedule import JobContext, ScheduledJob

#: Transactions per meter per run, so one huge backfill cannot hold the scheduler for long;
#: the next run resumes from the checkpoint.
BACKFILL_BATCHES_PER_RUN = 200


def backfill_meters(db: Database, context: JobContext) -> dict[str, Any]:
    batches = context.options.get("batches_max", BACKFILL_BATCHES_PER_RUN)
    return run_backfills(db, owner=context.owner, batches_max=batches)


SCHEDULED_JOBS: list[ScheduledJob] = [
    ScheduledJob(
        name="metering.backfill",
        description="Count stored events for meters defined after them (exactly once)",
        every_seconds=10,
        run_due=backfill_meters,
    )
]
