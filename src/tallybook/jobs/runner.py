"""Runs scheduled jobs once (``tallybook jobs run-due``) or forever (``tallybook worker``)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from tallybook.db import Database
from tallybook.jobs.registry import JobContext, ScheduledJob, outbox_handlers, scheduled_jobs
from tallybook.kit.ids import new_id
from tallybook.observability.logging import REQUEST_ID
from tallybook.observability.metrics import JOB_LAST_SUCCESS, JOB_RUN_SECONDS, OUTBOX_DELIVERIES
from tallybook.work.jobruns import worker_identity
from tallybook.work.outbox import relay_once

log = logging.getLogger(__name__)

WORKER_TICK_SECONDS: Final = 1.0


def run_job(db: Database, job: ScheduledJob, context: JobContext) -> dict[str, Any]:
    started = time.perf_counter()
    outcome = "succeeded"
    token = REQUEST_ID.set(new_id("job"))  # every log line of the run carries one id
    try:
        result = job.run_due(db, context)
        JOB_LAST_SUCCESS.labels(job.name).set(time.time())
        return result
    except Exception:
        outcome = "failed"
        log.exception("job failed", extra={"job": job.name})
        raise
    finally:
        JOB_RUN_SECONDS.labels(job.name, outcome).observe(time.perf_counter() - started)
        REQUEST_ID.reset(token)


def run_due(
    db: Database,
    *,
    only: list[str] | None = None,
    progress_factory: Callable[[str], Callable[[int, int | None, str], None]] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every scheduled job (or the named ones) once, in registry order."""
    owner = worker_identity()
    reports: dict[str, dict[str, Any]] = {}
    for job in scheduled_jobs():
        if only and job.name not in only:
            continue
        context = JobContext(owner=owner, options=dict(options or {}))
        if progress_factory is not None:
            context.progress = progress_factory(job.name)
        reports[job.name] = run_job(db, job, context)
    return reports


def relay_outbox(db: Database) -> dict[str, int]:
    handlers = outbox_handlers()
    if not handlers:
        return {}
    outcome = relay_once(db, handlers)
    for key, count in outcome.items():
        if count:
            OUTBOX_DELIVERIES.labels("all", key).inc(count)
    return outcome


def run_worker(db: Database, *, stop: threading.Event | None = None) -> None:
    """The worker loop: a scheduler that offers each job a run every ``every_seconds``, and the
    outbox relay on every tick. Stops cleanly on SIGTERM/SIGINT."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    owner = worker_identity()
    last_run: dict[str, float] = {}
    jobs = scheduled_jobs()
    log.info("worker started", extra={"owner": owner, "jobs": [j.name for j in jobs]})
    while not stop.is_set():
        now = time.monotonic()
        for job in jobs:
            if now - last_run.get(job.name, -1e18) >= job.every_seconds:
                last_run[job.name] = now
                try:
                    run_job(db, job, JobContext(owner=owner))
                except Exception:
                    pass  # logged in run_job; the next tick tries again
        try:
            relay_outbox(db)
        except Exception:
            log.exception("outbox relay failed")
        stop.wait(WORKER_TICK_SECONDS)
    log.info("worker stopped", extra={"owner": owner})
