"""Processing the inbox: one event per transaction, so an event's effect and its ``processed``
mark commit together (a worker killed mid-event leaves the event pending and its effect
undone; the next run does both once).

Due events are taken oldest first by the provider's ``created`` time, locked with ``SKIP
LOCKED`` on PostgreSQL so several workers share the inbox. A failing event is retried with
exponential backoff; after ``inbox_attempts_max`` failures it is parked for a human
(``tallybook webhooks-in replay``). The effect of a failing event runs in a savepoint, so the
failure is recorded while whatever it half did is rolled back.
"""

from __future__ import annotations

import logging
import math
import random
import traceback
from datetime import timedelta
from typing import Final

from tallybook.db import Database, Tx
from tallybook.kit.errors import Conflict, NotFound
from tallybook.observability.metrics import counter
from tallybook.payments import repository
from tallybook.payments.context import PaymentsContext
from tallybook.payments.errors import PaymentsCode
from tallybook.payments.inbox import handlers
from tallybook.payments.inbox.store import InboxStatus
from tallybook.payments.metrics import INBOX_LAG_SECONDS
from tallybook.payments.models import WebhookEvent

log = logging.getLogger(__name__)

BATCH_MAX: Final = 500
BACKOFF_BASE_SECONDS: Final = 10.0
BACKOFF_MAX_SECONDS: Final = 6 * 3600.0
ERROR_TEXT_LENGTH_MAX: Final = 4000
OUTCOME_TEXT_LENGTH_MAX: Final = 1000
ACTOR: Final = "system:payments.inbox"

EVENTS_PROCESSED = counter(
    "tallybook_payments_webhook_events_total",
    "Inbound provider events processed, by type and outcome",
    ("type", "outcome"),
)


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with jitter (half to all of the ceiling), capped."""
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * math.pow(2.0, max(attempts - 1, 0)))
    return ceiling / 2 + random.random() * ceiling / 2


def _process(tx: Tx, event: WebhookEvent, ctx: PaymentsContext) -> str:
    """Run the event's handler in a savepoint and record the outcome on the row."""
    now = tx.now()
    try:
        with tx.session.begin_nested():
            outcome = handlers.handle(tx, event.payload, ctx)
    except Exception as error:
        event.attempts += 1
        event.last_error = "".join(traceback.format_exception_only(type(error), error)).strip()[
            :ERROR_TEXT_LENGTH_MAX
        ]
        if event.attempts >= ctx.settings.inbox_attempts_max:
            event.status = str(InboxStatus.PARKED)
            log.error(
                "inbound event parked",
                extra={"event_id": event.event_id, "type": event.type, "error": event.last_error},
            )
        else:
            event.next_attempt_at = now + timedelta(seconds=backoff_seconds(event.attempts))
            log.warning(
                "inbound event failed",
                extra={"event_id": event.event_id, "type": event.type, "error": event.last_error},
            )
        EVENTS_PROCESSED.labels(
            event.type, event.status if event.status == "parked" else "failed"
        ).inc()
        return "parked" if event.status == InboxStatus.PARKED else "failed"
    ignored = outcome.startswith(handlers.IGNORED_PREFIX)
    event.status = str(InboxStatus.IGNORED if ignored else InboxStatus.PROCESSED)
    event.outcome = outcome[:OUTCOME_TEXT_LENGTH_MAX]
    event.processed_at = now
    event.last_error = None
    EVENTS_PROCESSED.labels(event.type, event.status).inc()
    INBOX_LAG_SECONDS.observe(max(0.0, (now - event.received_at).total_seconds()))
    return event.status


def process_one(db: Database, ctx: PaymentsContext) -> str | None:
    """Process the oldest due event; None when nothing is due."""
    with db.transaction(actor=ACTOR) as tx:
        event = repository.claim_due_event(tx, now=tx.now(), statuses=[InboxStatus.PENDING])
        if event is None:
            return None
        return _process(tx, event, ctx)


def process_due(db: Database, ctx: PaymentsContext, *, limit: int = BATCH_MAX) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(limit):
        outcome = process_one(db, ctx)
        if outcome is None:
            break
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def replay(tx: Tx, event_id: str) -> WebhookEvent:
    """Give a parked (or failing, or ignored) event a fresh start now. Processed events are
    not replayed: their effect happened (replaying would be harmless, but says nothing)."""
    event = repository.event(tx, event_id, lock=True)
    if event is None:
        raise NotFound("inbound event", event_id)
    if event.status == InboxStatus.PROCESSED:
        raise Conflict(
            PaymentsCode.INBOX_EVENT_NOT_REPLAYABLE,
            f"event {event_id} was processed: {event.outcome}",
            param="event",
        )
    event.status = str(InboxStatus.PENDING)
    event.attempts = 0
    event.next_attempt_at = tx.now()
    event.outcome = None
    return event


def replay_parked(tx: Tx, *, limit: int = BATCH_MAX) -> int:
    from sqlalchemy import select

    ids = list(
        tx.session.scalars(
            select(WebhookEvent.event_id)
            .where(WebhookEvent.status == InboxStatus.PARKED)
            .order_by(WebhookEvent.provider_created_at)
            .limit(limit)
        )
    )
    for event_id in ids:
        replay(tx, event_id)
    return len(ids)
