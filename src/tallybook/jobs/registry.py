"""Scheduled jobs and outbox handlers, gathered from every domain's ``tasks.py``.

A domain exposes ``SCHEDULED_JOBS: list[ScheduledJob]`` and optionally
``OUTBOX_HANDLERS: dict[str, Handler]`` in its ``tasks.py``; this module lists the domains.
"""

from __future__ import annotations

from tallybook.work.outbox import Handler
from tallybook.work.schedule import JobContext, ScheduledJob

__all__ = ["JobContext", "ScheduledJob", "outbox_handlers", "scheduled_jobs"]


def scheduled_jobs() -> list[ScheduledJob]:
    from tallybook.entitlements import tasks as entitlements_tasks
    from tallybook.grants import tasks as grants_tasks
    from tallybook.invoicing import tasks as invoicing_tasks
    from tallybook.ledger import tasks as ledger_tasks
    from tallybook.metering import tasks as metering_tasks
    from tallybook.payments import tasks as payments_tasks
    from tallybook.reconciliation import tasks as reconciliation_tasks
    from tallybook.subscriptions import tasks as subscriptions_tasks
    from tallybook.webhooks import tasks as webhooks_tasks

    jobs: list[ScheduledJob] = []
    for module in (
        ledger_tasks,
        metering_tasks,
        subscriptions_tasks,
        grants_tasks,
        entitlements_tasks,
        invoicing_tasks,
        payments_tasks,
        webhooks_tasks,
        reconciliation_tasks,
    ):
        jobs.extend(getattr(module, "SCHEDULED_JOBS", []))
    return jobs


def outbox_handlers() -> dict[str, Handler]:
    from tallybook.payments import tasks as payments_tasks
    from tallybook.webhooks import tasks as webhooks_tasks

    handlers: dict[str, Handler] = {}
    for module in (payments_tasks, webhooks_tasks):
        handlers.update(getattr(module, "OUTBOX_HANDLERS", {}))
    return handlers
