"""Domain events: the record of what happened, for outbound webhooks and timelines.

Call :func:`emit` in the same transaction as the state change::

    events.emit(tx, "invoice.finalized", customer_id=invoice.customer_id,
                object_id=invoice.id, data={"invoice": InvoiceOut.of(invoice).model_dump(mode="json")})

Event types are ``<object>.<past-tense verb>`` (Stripe style). ``data`` is JSON-ready (use
``model_dump(mode="json")`` or plain types; Decimals become strings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import insert, select

from tallybook.db import Tx
from tallybook.kit.hashing import json_dumps, json_loads
from tallybook.kit.ids import new_id
from tallybook.work.models import DomainEvent

TIMELINE_LIMIT_MAX: Final = 500


def emit(
    tx: Tx,
    event_type: str,
    *,
    data: Mapping[str, Any],
    customer_id: str | None = None,
    object_id: str | None = None,
) -> str:
    event_id = new_id("evt")
    tx.session.add(
        DomainEvent(
            id=event_id,
            type=event_type,
            customer_id=customer_id,
            object_id=object_id,
            data=json_loads(json_dumps(dict(data))),
            actor=tx.actor,
            request_id=tx.request_id,
            created_at=tx.now(),
        )
    )
    return event_id


def emit_many(
    tx: Tx, items: Sequence[tuple[str, str | None, str | None, Mapping[str, Any]]]
) -> list[str]:
    """:func:`emit` for many events in one statement: each item is (type, customer id, object
    id, data), stored in that order (ids ascend). For batch jobs. Returns the event ids."""
    if not items:
        return []
    now = tx.now()
    rows = [
        {
            "id": new_id("evt"),
            "type": event_type,
            "customer_id": customer_id,
            "object_id": object_id,
            "data": json_loads(json_dumps(dict(data))),
            "actor": tx.actor,
            "request_id": tx.request_id,
            "created_at": now,
        }
        for event_type, customer_id, object_id, data in items
    ]
    tx.session.execute(insert(DomainEvent), rows)
    return [row["id"] for row in rows]


def timeline(
    tx: Tx,
    *,
    customer_id: str,
    limit: int = 100,
    types: Sequence[str] | None = None,
    before: str | None = None,
) -> list[DomainEvent]:
    """A customer's events, newest first; ``before`` (an event id) pages to older ones."""
    query = (
        select(DomainEvent)
        .where(DomainEvent.customer_id == customer_id)
        # Ordering by both index columns lets PostgreSQL walk ix_domain_events_customer
        # backwards instead of the primary key (it otherwise may, for customers whose events
        # are all old, and scan most of the log).
        .order_by(DomainEvent.customer_id.desc(), DomainEvent.id.desc())
        .limit(min(limit, TIMELINE_LIMIT_MAX))
    )
    if types:
        query = query.where(DomainEvent.type.in_(list(types)))
    if before is not None:
        query = query.where(DomainEvent.id < before)
    return list(tx.session.scalars(query))


def after(tx: Tx, *, event_id: str | None, limit: int) -> list[DomainEvent]:
    """Events after ``event_id`` in id order (for fan-out to webhook endpoints)."""
    query = select(DomainEvent).order_by(DomainEvent.id).limit(limit)
    if event_id is not None:
        query = query.where(DomainEvent.id > event_id)
    return list(tx.session.scalars(query))
