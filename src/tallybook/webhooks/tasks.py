"""Scheduled jobs: fan domain events out to endpoints, and deliver due webhooks."""

from __future__ import annotations

from typing import Any

from tallybook.db import Database
from tallybook.webhooks import delivery, service
from tallybook.work.schedule import JobContext, ScheduledJob


def run_fan_out(db: Database, context: JobContext) -> dict[str, Any]:
    created = 0
    while True:
        with db.transaction(actor="system:webhooks") as tx:
            batch = service.fan_out(tx)
        created += batch
        if batch < service.FANOUT_BATCH_MAX:
            return {"deliveries_queued": created}


def run_deliver(db: Database, context: JobContext) -> dict[str, Any]:
    totals = {"succeeded": 0, "failed": 0}
    while True:
        counts = delivery.deliver_due(db)
        totals["succeeded"] += counts["succeeded"]
        totals["failed"] += counts["failed"]
        if counts["succeeded"] + counts["failed"] == 0:
            return totals


SCHEDULED_JOBS: list[ScheduledJob] = [
    ScheduledJob(
        name="webhooks.fan_out",
        description="Queue a delivery for each webhook endpoint subscribed to each new event",
        every_seconds=2,
        run_due=run_fan_out,
    ),
    ScheduledJob(
        name="webhooks.deliver",
        description="Send due webhooks, in order per endpoint, with retries and backoff",
        every_seconds=2,
        run_due=run_deliver,
    ),
]
