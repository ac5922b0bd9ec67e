"""The transactional outbox.

Anything that leaves the database (a Stripe call, an outbound webhook, a NATS publish) is
written here in the same transaction as the change that caused it, and delivered by the relay
after commit. Delivery is at least once, so every handler must be idempotent (Stripe calls
carry idempotency keys derived from our ids; webhooks carry their message id).

- ``dedup_key`` makes enqueueing idempotent: the same (topic, dedup_key) is stored once.
- ``ordering_key`` makes delivery FIFO per key: a message waits while an older pending message
  with the same key exists (e.g. per webhook endpoint).
- Failures back off exponentially; after ``attempts_max`` the message is ``dead`` and waits for
  a human (``tallybook outbox replay``).
"""

from __future__ import annotations

import logging
import math
import random
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from tallybook.db import Database, Tx
from tallybook.kit.ids import new_id
from tallybook.work.models import OutboxMessage

log = logging.getLogger(__name__)

ATTEMPTS_MAX: Final = 12
BACKOFF_BASE_SECONDS: Final = 5.0
BACKOFF_MAX_SECONDS: Final = 6 * 3600.0
CLAIM_LEASE_SECONDS: Final = 120
RELAY_BATCH_MAX: Final = 100
ERROR_TEXT_LENGTH_MAX: Final = 4000

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
DEAD: Final = "dead"


class PermanentDeliveryError(Exception):
    """Raised by a handler when retrying can never help: the message goes straight to dead."""


def enqueue(
    tx: Tx,
    *,
    topic: str,
    dedup_key: str,
    payload: Mapping[str, Any],
    ordering_key: str | None = None,
    available_at: datetime | None = None,
) -> str:
    """Store a message unless (topic, dedup_key) already exists. Returns the message id."""
    now = tx.now()
    values = {
        "id": new_id("obx"),
        "topic": topic,
        "dedup_key": dedup_key,
        "ordering_key": ordering_key,
        "payload": dict(payload),
        "status": PENDING,
        "attempts": 0,
        "available_at": available_at or now,
        "created_at": now,
    }
    insert = postgresql.insert if tx.is_postgres else sqlite.insert
    stmt = (
        insert(OutboxMessage)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["topic", "dedup_key"])
    )
    tx.session.execute(stmt)
    existing = tx.session.scalar(
        select(OutboxMessage.id).where(
            OutboxMessage.topic == topic, OutboxMessage.dedup_key == dedup_key
        )
    )
    assert existing is not None
    return existing


def enqueue_many(tx: Tx, messages: Sequence[Mapping[str, Any]]) -> None:
    """:func:`enqueue` for many messages in one statement (each a mapping with ``topic``,
    ``dedup_key``, ``payload`` and optionally ``ordering_key``); existing (topic, dedup_key)
    pairs are left as they are. For batch jobs that enqueue one message per item."""
    if not messages:
        return
    now = tx.now()
    rows = [
        {
            "id": new_id("obx"),
            "topic": m["topic"],
            "dedup_key": m["dedup_key"],
            "ordering_key": m.get("ordering_key"),
            "payload": dict(m["payload"]),
            "status": PENDING,
            "attempts": 0,
            "available_at": m.get("available_at") or now,
            "created_at": now,
        }
        for m in messages
    ]
    insert = postgresql.insert if tx.is_postgres else sqlite.insert
    # One statement with many parameter sets (SQLAlchemy batches them into multi-row VALUES).
    tx.session.execute(
        insert(OutboxMessage).on_conflict_do_nothing(index_elements=["topic", "dedup_key"]),
        rows,
    )


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with full jitter, capped."""
    exponent = float(max(attempts - 1, 0))
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * math.pow(2.0, exponent))
    jitter: float = random.random()
    return ceiling / 2 + jitter * ceiling / 2


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    id: str
    topic: str
    dedup_key: str
    ordering_key: str | None
    payload: dict[str, Any]
    attempts: int


def claim_due(
    tx: Tx, *, topics: Sequence[str], limit: int = RELAY_BATCH_MAX
) -> list[ClaimedMessage]:
    """Lease up to ``limit`` due messages (FIFO per ordering key) for delivery."""
    now = tx.now()
    older = aliased(OutboxMessage)
    blocked_by_older = exists().where(
        and_(
            older.ordering_key == OutboxMessage.ordering_key,
            older.status == PENDING,
            older.id < OutboxMessage.id,
        )
    )
    query = (
        select(OutboxMessage)
        .where(
            OutboxMessage.status == PENDING,
            OutboxMessage.available_at <= now,
            OutboxMessage.topic.in_(list(topics)),
            (OutboxMessage.ordering_key.is_(None)) | ~blocked_by_older,
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    if tx.is_postgres:
        query = query.with_for_update(skip_locked=True, of=OutboxMessage)
    rows = list(tx.session.scalars(query))
    lease_until = now + timedelta(seconds=CLAIM_LEASE_SECONDS)
    claimed = []
    for row in rows:
        row.available_at = lease_until
        row.attempts += 1
        claimed.append(
            ClaimedMessage(
                id=row.id,
                topic=row.topic,
                dedup_key=row.dedup_key,
                ordering_key=row.ordering_key,
                payload=dict(row.payload),
                attempts=row.attempts,
            )
        )
    return claimed


def mark_delivered(tx: Tx, message_id: str) -> None:
    tx.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(status=DELIVERED, delivered_at=tx.now(), last_error=None)
    )


def mark_failed(tx: Tx, message_id: str, error: str, *, permanent: bool = False) -> str:
    row = tx.session.get(OutboxMessage, message_id)
    assert row is not None
    row.last_error = error[:ERROR_TEXT_LENGTH_MAX]
    if permanent or row.attempts >= ATTEMPTS_MAX:
        row.status = DEAD
    else:
        row.available_at = tx.now() + timedelta(seconds=backoff_seconds(row.attempts))
    return row.status


def replay(tx: Tx, message_id: str) -> None:
    """Give a dead (or pending) message a fresh start now."""
    tx.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status != DELIVERED)
        .values(status=PENDING, attempts=0, available_at=tx.now(), last_error=None)
    )


def counts_by_status(tx: Tx) -> dict[str, int]:
    rows = tx.session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    )
    return {status: count for status, count in rows}


Handler = Callable[[Database, ClaimedMessage], None]


def relay_once(
    db: Database, handlers: Mapping[str, Handler], *, limit: int = RELAY_BATCH_MAX
) -> dict[str, int]:
    """Claim due messages, deliver each with its topic's handler, record the outcome.

    The claim commits before delivery, so a crash mid-delivery leaves the message leased; it
    becomes due again when the lease expires.
    """
    with db.transaction(actor="system:outbox") as tx:
        claimed = claim_due(tx, topics=list(handlers), limit=limit)
    outcome = {"delivered": 0, "failed": 0, "dead": 0}
    for message in claimed:
        try:
            handlers[message.topic](db, message)
        except Exception as exc:
            permanent = isinstance(exc, PermanentDeliveryError)
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            log.warning("outbox delivery failed", extra={"message_id": message.id, "error": detail})
            with db.transaction(actor="system:outbox") as tx:
                status = mark_failed(tx, message.id, detail, permanent=permanent)
            outcome["dead" if status == DEAD else "failed"] += 1
            continue
        with db.transaction(actor="system:outbox") as tx:
            mark_delivered(tx, message.id)
        outcome["delivered"] += 1
    return outcome
