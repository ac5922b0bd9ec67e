"""Scheduled jobs and outbox handlers of this domain (collected by ``tallybook.jobs``)."""

from __future__ import annotations

from tallybook.work.schedule import ScheduledJob

SCHEDULED_JOBS: list[ScheduledJob] = []
