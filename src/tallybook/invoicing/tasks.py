"""Scheduled jobs of invoicing (collected by ``tallybook.jobs``).

``invoicing.close_periods`` (every minute; ``tallybook jobs run-due``):

1. **opening invoices**: the in-advance fees of periods that opened with nothing to close
   before them (a first period, after a trial or a pause), and charges a change asked to
   invoice now;
2. **drafts**: each period that ended within the grace window (``late_event_grace_hours``) gets
   a draft invoice, refreshed every few minutes while late events may still arrive;
3. **finalize**: each period whose grace window has passed is rated, finalized, posted to the
   ledger and handed to payments.

Work goes in bounded batches, one transaction per batch; each (subscription, period) is one
job run claimed and completed in that transaction, the subscriptions are locked with ``SKIP
LOCKED`` (two workers split the work) and an invoice's unique (subscription, period, kind) key
backs it all. A crash at any point rolls back the batch in flight; the next run picks it up.
A batch that fails is retried one period at a time, so one bad period never blocks the rest.

``invoicing.threshold`` (every minute): interim invoices for open periods whose accrued usage
passed the billing threshold (the plan version's, or the customer's override).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from tallybook.db import Database
from tallybook.invoicing import repository
from tallybook.invoicing.domain import InvoiceKind
from tallybook.invoicing.metrics import (
    CLOSE_SECONDS,
    INVOICE_AMOUNT_MINOR,
    INVOICE_FAILURES,
    INVOICES_FINALIZED,
)
from tallybook.invoicing.service.billing import JOB_CLOSE, Outcome, bill, run_key
from tallybook.invoicing.service.gather import BillingRequest
from tallybook.invoicing.settings import InvoicingSettings
from tallybook.work import jobruns
from tallybook.work.jobruns import LeaseLost
from tallybook.work.schedule import JobContext, ScheduledJob

log = logging.getLogger(__name__)

JOB_THRESHOLD: Final = "invoicing.threshold"
JOB_SWEEP: Final = "invoicing.close_sweep"
SWEEP_EVERY_SECONDS: Final = 24 * 3600
PASSES_MAX: Final = 5
DRAFT_REFRESH_SECONDS: Final = 300
EVERY_SECONDS: Final = 60


class _Tally:
    def __init__(self, context: JobContext, total: int | None) -> None:
        self.context = context
        self.total = total
        self.counts: dict[str, int] = {}
        self.done = 0

    def add(self, outcomes: Sequence[Outcome], text: str) -> int:
        progressed = 0
        for outcome in outcomes:
            self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
            if outcome.status in ("finalized", "drafted", "exists", "empty", "below_threshold"):
                progressed += 1
            if outcome.status == "finalized":
                INVOICES_FINALIZED.labels(str(outcome.request.kind)).inc()
                if outcome.currency is not None:
                    INVOICE_AMOUNT_MINOR.labels(outcome.currency).inc(max(outcome.total_minor, 0))
        self.done += progressed
        # Opening invoices are not among the periods counted up front: past the count, the
        # bar shows what was done without a total.
        known = self.total is not None and self.done <= self.total
        self.context.progress(self.done, self.total if known else None, text)
        return progressed

    def fail(self, request: BillingRequest) -> None:
        self.counts["failed"] = self.counts.get("failed", 0) + 1
        INVOICE_FAILURES.labels(str(request.kind)).inc()


def _run_batch(
    db: Database,
    requests: Sequence[BillingRequest],
    *,
    finalize: bool,
    owner: str,
    tally: _Tally,
    text: str,
) -> int:
    """One transaction for the batch; on failure, one per request (failures are recorded as
    failed job runs and never block the others)."""
    try:
        with db.transaction(actor=f"system:{JOB_CLOSE}") as tx:
            outcomes = bill(tx, requests, finalize=finalize, owner=owner, skip_locked=True)
        return tally.add(outcomes, text)
    except LeaseLost:
        return 0
    except Exception:
        if len(requests) == 1:
            _record_failure(db, requests[0], owner, tally)
            return 0
    progressed = 0
    for request in requests:
        progressed += _run_batch(
            db, [request], finalize=finalize, owner=owner, tally=tally, text=text
        )
    return progressed


def _record_failure(db: Database, request: BillingRequest, owner: str, tally: _Tally) -> None:
    log.exception("billing failed", extra={"request": run_key(request)})
    tally.fail(request)
    try:
        claim = jobruns.claim(db, job=JOB_CLOSE, run_key=run_key(request), owner=owner)
        if claim is not None:
            import sys

            error = sys.exc_info()[1] or RuntimeError("billing failed")
            jobruns.fail(db, claim, error)
    except Exception:
        log.exception("recording a failed run failed")


def _passes(
    db: Database,
    scan: Callable[[datetime, Any, int], list[tuple[Any, BillingRequest]]],
    *,
    now: datetime,
    finalize: bool,
    owner: str,
    batch: int,
    tally: _Tally,
    text: str,
) -> None:
    """Scan in pages (a cursor), bill each page; repeat while a pass deferred work."""
    for _ in range(PASSES_MAX):
        cursor: Any = None
        before = dict(tally.counts)
        while True:
            page = scan(now, cursor, batch)
            if not page:
                break
            cursor = page[-1][0]
            _run_batch(
                db, [r for _, r in page], finalize=finalize, owner=owner, tally=tally, text=text
            )
        deferred = tally.counts.get("deferred", 0) - before.get("deferred", 0)
        if deferred == 0:
            break


def close_due(db: Database, context: JobContext) -> dict[str, Any]:
    """Opening invoices, drafts in the grace window, finalization after it (module docstring)."""
    return _close(db, context, sweep=False)


def sweep_due(db: Database, context: JobContext) -> dict[str, Any]:
    """The same, looking back ``sweep_lookback_days`` (400) instead of 35: a period whose
    renewal was recorded more than a month late is still invoiced."""
    return _close(db, context, sweep=True)


def _close(db: Database, context: JobContext, *, sweep: bool) -> dict[str, Any]:
    started = time.perf_counter()
    settings = InvoicingSettings.from_settings()
    lookback_days = settings.sweep_lookback_days if sweep else settings.close_lookback_days
    batch = int(context.options.get("batch", settings.close_batch))
    grace = timedelta(hours=settings.late_event_grace_hours)
    with db.read(actor=f"system:{JOB_CLOSE}") as tx:
        now = tx.now()
        total = repository.count_periods_to_close(
            tx, ended_from=now - timedelta(days=lookback_days), ended_before=now - grace
        )
    tally = _Tally(context, total)
    owner = context.owner

    def openings(at: datetime, cursor: Any, limit: int) -> list[tuple[Any, BillingRequest]]:
        with db.read() as tx:
            rows = repository.openings_due(tx, at, after=cursor, limit=limit)
        return [
            (
                period_id,
                BillingRequest(
                    sub_id, period_id, InvoiceKind.UPDATE if now_flag else InvoiceKind.OPENING
                ),
            )
            for period_id, sub_id, now_flag in rows
        ]

    def ended(
        start: datetime, end: datetime, with_draft: bool | None
    ) -> Callable[[datetime, Any, int], list[tuple[Any, BillingRequest]]]:
        def scan(at: datetime, cursor: Any, limit: int) -> list[tuple[Any, BillingRequest]]:
            with db.read() as tx:
                rows = repository.periods_to_close(
                    tx,
                    ended_from=start,
                    ended_before=end,
                    after=cursor,
                    limit=limit,
                    with_draft=with_draft,
                )
            return [
                ((end_at, pid), BillingRequest(sid, pid, InvoiceKind.CYCLE))
                for end_at, pid, sid in rows
            ]

        return scan

    def stale(at: datetime, cursor: Any, limit: int) -> list[tuple[Any, BillingRequest]]:
        if cursor is not None:
            return []  # one page per pass: refreshed drafts are no longer stale
        with db.read() as tx:
            rows = repository.stale_drafts(
                tx, updated_before=at - timedelta(seconds=DRAFT_REFRESH_SECONDS), limit=limit
            )
        return [
            ((s, p), BillingRequest(s, p, InvoiceKind(k)))
            for s, p, k in rows
            if k == InvoiceKind.CYCLE
        ]

    common = {"now": now, "owner": owner, "batch": batch, "tally": tally}
    _passes(db, openings, finalize=True, text="opening invoices", **common)  # type: ignore[arg-type]
    _passes(db, ended(now - grace, now, False), finalize=False, text="drafting", **common)  # type: ignore[arg-type]
    _passes(db, stale, finalize=False, text="refreshing drafts", **common)  # type: ignore[arg-type]
    lookback = now - timedelta(days=lookback_days)
    _passes(db, ended(lookback, now - grace, None), finalize=True, text="closing periods", **common)  # type: ignore[arg-type]
    CLOSE_SECONDS.observe(time.perf_counter() - started)
    return dict(sorted(tally.counts.items()))


def threshold_due(db: Database, context: JobContext) -> dict[str, Any]:
    """Interim invoices for open periods past their billing threshold."""
    batch = int(context.options.get("batch", InvoicingSettings.from_settings().close_batch))
    tally = _Tally(context, None)
    with db.read(actor=f"system:{JOB_THRESHOLD}") as tx:
        now = tx.now()

    def scan(at: datetime, cursor: Any, limit: int) -> list[tuple[Any, BillingRequest]]:
        with db.read() as tx:
            rows = repository.threshold_candidates(tx, at, after=cursor, limit=limit)
        return [
            (sid, BillingRequest(sid, pid, InvoiceKind.THRESHOLD, threshold))
            for sid, pid, _customer, threshold in rows
        ]

    _passes(
        db,
        scan,
        now=now,
        finalize=True,
        owner=context.owner,
        batch=batch,
        tally=tally,
        text="threshold billing",
    )
    return dict(sorted(tally.counts.items()))


SCHEDULED_JOBS: list[ScheduledJob] = [
    ScheduledJob(
        name=JOB_CLOSE,
        description="Invoice ended periods after the grace window (drafts during it), opening fees",
        every_seconds=EVERY_SECONDS,
        run_due=close_due,
    ),
    ScheduledJob(
        name=JOB_SWEEP,
        description="Daily: the period close looking back 400 days (late-recorded periods)",
        every_seconds=SWEEP_EVERY_SECONDS,
        run_due=sweep_due,
    ),
    ScheduledJob(
        name=JOB_THRESHOLD,
        description="Issue interim invoices when accrued usage passes the billing threshold",
        every_seconds=EVERY_SECONDS,
        run_due=threshold_due,
    ),
]
