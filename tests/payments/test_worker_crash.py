"""Workers killed (SIGKILL) in the middle of processing the inbox: an event's effect and its
"processed" mark commit together, so after another worker finishes, each effect happened
exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tallybook.db import Database
from tallybook.payments.inbox import processor, store
from tallybook.payments.models import WebhookEvent
from tests.fixtures.databases import database_url_of
from tests.payments.conftest import offline_stripe_ctx
from tests.payments.many import assert_each_effect_once, burst, many_attempts

pytestmark = [pytest.mark.slow, pytest.mark.pg_only]

REPO = Path(__file__).resolve().parents[2]
POLL_SECONDS = 0.02
WAIT_SECONDS_MAX = 120


def _processed(db: Database) -> int:
    with db.read() as tx:
        return int(
            tx.session.scalar(
                select(func.count())
                .select_from(WebhookEvent)
                .where(WebhookEvent.status == "processed")
            )
            or 0
        )


def _start_worker(db: Database) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.payments.inbox_worker",
            database_url_of(db),
            db.clock.now().isoformat(),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    return worker


def _wait_until(predicate: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS_MAX
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(POLL_SECONDS)


def test_workers_killed_mid_processing_leave_each_effect_exactly_once(pg_db: Database) -> None:
    ctx = offline_stripe_ctx()
    db, attempts = many_attempts(pg_db, ctx, 50)
    events = burst(attempts)  # 500 events
    import orjson

    with db.transaction(actor="test") as tx:
        for event in events:
            store.accept(tx, orjson.dumps(event))

    # Two workers share the inbox; kill one after it has done some, then the other.
    first, second = _start_worker(db), _start_worker(db)
    kills = []
    try:
        _wait_until(lambda: _processed(db) >= 60, "the workers to make progress")
        first.send_signal(signal.SIGKILL)
        kills.append(_processed(db))
        _wait_until(lambda: _processed(db) >= kills[0] + 60, "the survivor to go on")
        second.send_signal(signal.SIGKILL)
        kills.append(_processed(db))
    finally:
        for worker in (first, second):
            worker.kill()
            worker.wait(timeout=30)
    assert kills[-1] < len(events), "the workers finished before being killed; use more events"

    # A fresh worker finishes (PostgreSQL released the killed workers' locks with their
    # connections; their half-done transactions were rolled back).
    outcome = processor.process_due(db, ctx, limit=2000)
    assert set(outcome) == {"processed"}, outcome
    assert _processed(db) == len(events)
    assert_each_effect_once(db, attempts, events)
