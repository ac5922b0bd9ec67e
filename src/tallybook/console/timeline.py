"""A customer's timeline: the domain events (what happened) merged with the console's audit
entries about the customer (who did what from the console, and why), newest first.

Both kinds of id are time-ordered ULIDs behind their prefix, so one cursor (the 26-character
time-ordered body of the last id shown) pages through both streams at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from tallybook.console import audit, users
from tallybook.console.models import ConsoleAuditEntry
from tallybook.db import Tx
from tallybook.work import events
from tallybook.work.models import DomainEvent

PAGE_SIZE_MAX: Final = 200
#: The type filter value that selects console actions only.
CONSOLE_TYPE: Final = "console"
CURSOR_PATTERN: Final = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    at: datetime
    kind: str  # "event" | "console"
    type: str
    actor: str
    object_id: str | None
    data: dict[str, Any]
    request_id: str | None
    #: Console entries only.
    outcome: str | None = None
    reason: str | None = None

    @property
    def cursor(self) -> str:
        return self.id.rsplit("_", 1)[-1]


@dataclass(frozen=True, slots=True)
class TimelinePage:
    entries: list[Entry]
    next_cursor: str | None
    #: Display names of console users among the actors (``cusr_…`` → "Ada <ada@…>").
    actor_names: dict[str, str]


def _of_event(event: DomainEvent) -> Entry:
    return Entry(
        id=event.id,
        at=event.created_at,
        kind="event",
        type=event.type,
        actor=event.actor,
        object_id=event.object_id,
        data=dict(event.data or {}),
        request_id=event.request_id,
    )


def _of_audit(entry: ConsoleAuditEntry) -> Entry:
    return Entry(
        id=entry.id,
        at=entry.created_at,
        kind="console",
        type=entry.action,
        actor=entry.actor,
        object_id=entry.object_id,
        data=dict(entry.details or {}),
        request_id=entry.request_id,
        outcome=entry.outcome,
        reason=entry.reason,
    )


def valid_cursor(cursor: str | None) -> str | None:
    return cursor if cursor and CURSOR_PATTERN.match(cursor) else None


def load(
    tx: Tx,
    customer_id: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    types: Sequence[str] | None = None,
) -> TimelinePage:
    limit = min(max(limit, 1), PAGE_SIZE_MAX)
    cursor = valid_cursor(cursor)
    wanted = [t for t in (types or []) if t]
    event_types = [t for t in wanted if t != CONSOLE_TYPE]
    merged: list[Entry] = []
    if not wanted or event_types:
        merged += [
            _of_event(e)
            for e in events.timeline(
                tx,
                customer_id=customer_id,
                limit=limit + 1,
                types=event_types or None,
                before=f"evt_{cursor}" if cursor else None,
            )
        ]
    if not wanted or CONSOLE_TYPE in wanted:
        merged += [
            _of_audit(a)
            for a in audit.for_customer(
                tx, customer_id, before_id=f"aud_{cursor}" if cursor else None, limit=limit + 1
            )
        ]
    merged.sort(key=lambda entry: entry.cursor, reverse=True)
    shown = merged[:limit]
    user_ids = {e.actor for e in shown if e.actor.startswith("cusr_")}
    return TimelinePage(
        entries=shown,
        next_cursor=shown[-1].cursor if len(merged) > limit else None,
        actor_names=users.names_of(tx, user_ids),
    )
