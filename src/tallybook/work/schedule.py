"""The shape of a scheduled job. Domains declare ``SCHEDULED_JOBS`` in their ``tasks.py``;
``tallybook.jobs`` collects and runs them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tallybook.db import Database


def _no_progress(done: int, total: int | None, text: str) -> None:
    return None


@dataclass
class JobContext:
    """What a running job gets besides the database: who it is, and a progress callback."""

    owner: str
    #: progress(done, total, description); total may be None when unknown.
    progress: Callable[[int, int | None, str], None] = _no_progress
    #: Options passed from the CLI (``--limit``, ``--dry-run``…), job-specific.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    description: str
    #: How often the worker's scheduler offers the job a chance to run.
    every_seconds: int
    #: Runs whatever is due now; idempotent per (job, run key) through work.jobruns.
    run_due: Callable[[Database, JobContext], dict[str, Any]]
