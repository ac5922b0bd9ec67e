"""Scheduled jobs of this domain (collected by ``tallybook.jobs``): the daily reconciliation."""

from __future__ import annotations

from typing import Any, Final

from tallybook.db import Database
from tallybook.reconciliation import service
from tallybook.work.schedule import JobContext, ScheduledJob

#: The scheduler offers the job a chance hourly; it runs once per UTC day.
EVERY_SECONDS: Final = 3600


def reconcile_due(db: Database, context: JobContext) -> dict[str, Any]:
    outcome = service.run_reconciliation(db, owner=context.owner)
    run = outcome.run
    return {
        "run_id": run.id,
        "date": run.run_date,
        "ran": outcome.ran,
        "found": run.discrepancies_found,
        "new": run.discrepancies_new,
        "resolved": run.discrepancies_resolved,
    }


SCHEDULED_JOBS: list[ScheduledJob] = [
    ScheduledJob(
        name=service.JOB,
        description="Compare ledger, invoices, usage, payments and clearing accounts; once a day",
        every_seconds=EVERY_SECONDS,
        run_due=reconcile_due,
    )
]
