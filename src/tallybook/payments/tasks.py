"""Scheduled jobs and outbox handlers of the payments domain (collected by ``tallybook.jobs``).

Jobs (each runs whatever is due; all idempotent per (invoice, attempt): an attempt is a unique
row created under its collection's lock, and its provider call an outbox message keyed by it):

- ``payments.process_webhooks`` (2 s): the inbox of provider events.
- ``payments.collect_due`` (hourly, one run per UTC day): open invoices without a collection
  get one (a safety net behind invoicing's ``payments.collect`` message).
- ``payments.run_retries`` (5 min): start each collection's scheduled retry that is due.
- ``payments.sync`` (10 min): poll payments whose outcome is still unknown after
  ``sync_after_minutes`` (their webhook never came, or the confirmation was lost) and finish
  attempts whose provider call never ran.

Outbox handlers: ``payments.collect`` (from invoicing), ``payments.attempt``,
``payments.refund``, ``payments.sync_customer``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Final

from tallybook.db import Database
from tallybook.invoicing import service as invoicing
from tallybook.kit.errors import Conflict, NotFound
from tallybook.kit.pagination import PageRequest
from tallybook.payments import repository, topics
from tallybook.payments.context import PaymentsContext, context_from_env
from tallybook.payments.domain import POLLED_STATES
from tallybook.payments.inbox import processor
from tallybook.payments.providers.base import ProviderName, ProviderUnavailable
from tallybook.payments.service import collections, dunning, runner
from tallybook.work import jobruns
from tallybook.work.outbox import ClaimedMessage, Handler, PermanentDeliveryError
from tallybook.work.schedule import JobContext, ScheduledJob

log = logging.getLogger(__name__)

SYNC_BATCH_MAX: Final = 200
COLLECT_BATCH_MAX: Final = 100
JOB_COLLECT_DUE: Final = "payments.collect_due"
ACTOR: Final = "system:payments"


def _context(context: JobContext | None = None) -> PaymentsContext:
    """Tests pass a context in ``JobContext.options["payments"]``; processes read the env."""
    if context is not None:
        given = context.options.get("payments")
        if isinstance(given, PaymentsContext):
            return given
    return context_from_env()


# Jobs -------------------------------------------------------------------------------------------


def run_process_webhooks(db: Database, context: JobContext) -> dict[str, Any]:
    return processor.process_due(db, _context(context))


def run_retries(
    db: Database, context: JobContext, ctx: PaymentsContext | None = None
) -> dict[str, Any]:
    ctx = ctx or _context(context)
    started = 0
    with db.read(actor=ACTOR) as tx:
        due = dunning.due_collection_ids(tx, tx.now())
    for collection_id in due:
        with db.transaction(actor=ACTOR) as tx:
            if dunning.retry_due(tx, collection_id, ctx) is not None:
                started += 1
    return {"retries_started": started}


def run_sync(
    db: Database, context: JobContext, ctx: PaymentsContext | None = None
) -> dict[str, Any]:
    ctx = ctx or _context(context)
    with db.read(actor=ACTOR) as tx:
        stale_before = tx.now() - timedelta(minutes=ctx.settings.sync_after_minutes)
        ids = repository.stale_payment_ids(
            tx,
            statuses=[str(s) for s in POLLED_STATES],
            provider=str(ProviderName.STRIPE),
            updated_before=stale_before,
            limit=SYNC_BATCH_MAX,
        )
    outcomes: dict[str, int] = {}
    for payment_id in ids:
        try:
            outcome = runner.sync_payment(db, payment_id, ctx)
        except (ProviderUnavailable, PermanentDeliveryError) as error:
            log.warning(
                "payment sync failed", extra={"payment_id": payment_id, "error": str(error)}
            )
            outcome = "failed"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {"synced": len(ids), "outcomes": outcomes}


def run_collect_due(
    db: Database, context: JobContext, ctx: PaymentsContext | None = None
) -> dict[str, Any]:
    """The daily safety net: every open invoice without a collection gets one (its
    ``payments.collect`` message went dead, or the invoice was finalized before payments was
    deployed). One run per UTC day; a crash resumes from the checkpoint."""
    ctx = ctx or _context(context)
    with db.read(actor=ACTOR) as tx:
        day = tx.now().date().isoformat()
    claim = jobruns.claim(db, job=JOB_COLLECT_DUE, run_key=day, owner=context.owner)
    if claim is None:
        return {"skipped": "done today or running elsewhere"}
    after = claim.checkpoint.get("after")
    started = int(claim.checkpoint.get("started", 0))
    try:
        while True:
            with db.transaction(actor=ACTOR) as tx:
                page = invoicing.list_invoices(
                    tx, PageRequest(limit=COLLECT_BATCH_MAX, starting_after=after), status="open"
                )
                for invoice in page.data:
                    assert invoice.id is not None
                    if repository.collection_for_invoice(tx, invoice.id) is None:
                        collections.start(tx, invoice.id, ctx)
                        started += 1
                if page.data:
                    after = page.data[-1].id
                checkpoint = {"after": after, "started": started}
                if not page.has_more:
                    jobruns.complete(tx, claim, checkpoint)
                    return {"collections_started": started}
                jobruns.save_checkpoint(tx, claim, checkpoint)
    except Exception as error:
        jobruns.fail(db, claim, error)
        raise


SCHEDULED_JOBS: list[ScheduledJob] = [
    ScheduledJob(
        name="payments.process_webhooks",
        description="Process inbound Stripe events from the inbox (retries, parks poison events)",
        every_seconds=2,
        run_due=run_process_webhooks,
    ),
    ScheduledJob(
        name=JOB_COLLECT_DUE,
        description="Start collections for open invoices that have none (daily safety net)",
        every_seconds=3600,
        run_due=run_collect_due,
    ),
    ScheduledJob(
        name="payments.run_retries",
        description="Start the payment retries that are due (dunning schedule)",
        every_seconds=300,
        run_due=run_retries,
    ),
    ScheduledJob(
        name="payments.sync",
        description="Poll payments whose outcome is unknown (webhooks that never came)",
        every_seconds=600,
        run_due=run_sync,
    ),
]


# Outbox handlers --------------------------------------------------------------------------------


def outbox_handlers(ctx: PaymentsContext | None = None) -> dict[str, Handler]:
    """The handlers of this domain's topics, with ``ctx`` (tests) or the process's settings."""

    def context() -> PaymentsContext:
        return ctx if ctx is not None else context_from_env()

    def handle_collect(db: Database, message: ClaimedMessage) -> None:
        invoice_id = message.payload.get("invoice_id")
        if not isinstance(invoice_id, str):
            raise PermanentDeliveryError(
                f"payments.collect without an invoice_id: {message.payload}"
            )
        try:
            with db.transaction(actor=ACTOR) as tx:
                collections.start(tx, invoice_id, context())
        except (NotFound, Conflict) as error:
            raise PermanentDeliveryError(f"{error.code}: {error.message}") from error

    def handle_attempt(db: Database, message: ClaimedMessage) -> None:
        runner.run_attempt(db, str(message.payload["payment_id"]), context())

    def handle_refund(db: Database, message: ClaimedMessage) -> None:
        runner.run_refund(db, str(message.payload["refund_id"]), context())

    def handle_sync_customer(db: Database, message: ClaimedMessage) -> None:
        runner.sync_customer(db, str(message.payload["customer_id"]), context())

    return {
        topics.COLLECT: handle_collect,
        topics.ATTEMPT: handle_attempt,
        topics.REFUND: handle_refund,
        topics.SYNC_CUSTOMER: handle_sync_customer,
    }


OUTBOX_HANDLERS: dict[str, Handler] = outbox_handlers()
