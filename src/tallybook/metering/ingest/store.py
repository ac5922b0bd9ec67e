"""The SQL of ingestion: locks, lookups, the dedup insert, late rows, dead letters.

Lock order (deadlock-free because every writer follows it): the ingest advisory lock (shared),
customer rows (``FOR KEY SHARE``, by id), event keys (sorted), dead-letter keys (sorted), rollup
keys (sorted, last: the hot rows are held for the shortest time). See ``raw`` for how rows reach each backend cheaply.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select, text, update
from sqlalchemy.dialects import sqlite

from tallybook.customers.models import Customer
from tallybook.db import Tx
from tallybook.metering.ingest.caches import caches_for
from tallybook.metering.ingest.raw import (
    STAGE_EVENTS,
    joined,
    pg_copy,
    pg_cursor,
    pg_staging,
    sqlite_cursor,
    sqlite_time,
)
from tallybook.metering.models import DeadLetter, InvoicedThrough, LateEvent, table_of

#: Ingestion holds it shared for the whole transaction; a meter backfill takes it exclusively
#: for an instant, which waits out every transaction that might not have seen the new meter.
INGEST_LOCK_KEY: Final = 7_301_990_302
SQLITE_IN_CHUNK: Final = 400

EventKey = tuple[str, str]
#: One text parameter split into rows and joined: ``= ANY(array)`` looks fast but, once psycopg
#: prepares the statement and PostgreSQL switches to a generic plan, it re-splits the text or
#: searches the array linearly for every row scanned (16 ms instead of 0.6 ms for 400 keys).
_SPLIT: Final = "unnest(string_to_array(%s, chr(31)))"


def _chunks(items: Sequence[Any], size: int = SQLITE_IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def lock_ingest_shared(tx: Tx) -> None:
    if tx.is_postgres:
        tx.session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": INGEST_LOCK_KEY})


def barrier(tx: Tx) -> None:
    """Wait until every ingesting transaction that started before now has finished."""
    if tx.is_postgres:
        tx.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK_KEY})


# Customers and watermarks --------------------------------------------------------------------


def lock_customers(tx: Tx, external_ids: Sequence[str]) -> dict[str, str]:
    """``external_id → id`` for the customers that exist.

    On PostgreSQL the rows are locked ``FOR KEY SHARE`` (in id order) until commit. Invoicing
    takes ``FOR UPDATE`` on a customer before it advances that customer's invoiced-through
    watermark and reads the period's usage; the two locks conflict, so an event is either in
    the usage invoicing reads or sees the new watermark and is marked late, never neither.
    """
    if not external_ids:
        return {}
    if tx.is_postgres:
        cursor = pg_cursor(tx)
        cursor.execute(
            "SELECT c.external_id, c.id FROM customers c "
            f"JOIN {_SPLIT} AS k(external_id) ON c.external_id = k.external_id "
            "ORDER BY c.id FOR KEY SHARE OF c",
            (joined(external_ids),),
        )
        rows: dict[str, str] = dict(cursor.fetchall())
        return rows
    caches = caches_for(tx)
    known = caches.customers
    found: dict[str, str] = {}
    misses: list[str] = []
    for external_id in external_ids:
        customer_id = known.get(external_id)  # .get: another thread may clear the cache
        if customer_id is None:
            misses.append(external_id)
        else:
            found[external_id] = customer_id
    if misses:
        cursor = sqlite_cursor(tx)
        looked_up: dict[str, str] = {}
        for chunk in _chunks(misses):
            marks = ",".join("?" * len(chunk))
            cursor.execute(
                f"SELECT external_id, id FROM customers WHERE external_id IN ({marks})",
                list(chunk),
            )
            looked_up.update(cursor.fetchall())
        caches.remember_customers(looked_up)
        found.update(looked_up)
    return found


def lock_customer_for_invoicing(tx: Tx, customer_id: str) -> bool:
    """``FOR UPDATE`` on the customer row (PostgreSQL): waits for in-flight ingestion of this
    customer's events and holds new ones back until commit. Returns whether it exists."""
    return customer_id in lock_customers_for_invoicing(tx, [customer_id])


def lock_customers_for_invoicing(tx: Tx, customer_ids: Sequence[str]) -> set[str]:
    """``FOR UPDATE`` on many customer rows (PostgreSQL) in one statement per chunk, in id
    order (the order ingestion locks them in). Returns the ids that exist."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(customer_ids))):
        query = select(Customer.id).where(Customer.id.in_(list(chunk))).order_by(Customer.id)
        if tx.is_postgres:
            query = query.with_for_update()
        found.update(tx.session.scalars(query))
    return found


def watermarks(tx: Tx, customer_ids: Sequence[str]) -> dict[str, datetime]:
    if not customer_ids:
        return {}
    if tx.is_postgres:
        cursor = pg_cursor(tx)
        cursor.execute(
            "SELECT w.customer_id, w.invoiced_through FROM metering_invoiced_through w "
            f"JOIN {_SPLIT} AS k(customer_id) ON w.customer_id = k.customer_id",
            (joined(customer_ids),),
        )
        return dict(cursor.fetchall())
    result: dict[str, datetime] = {}
    for chunk in _chunks(list(customer_ids)):
        rows = tx.session.execute(
            select(InvoicedThrough.customer_id, InvoicedThrough.invoiced_through).where(
                InvoicedThrough.customer_id.in_(list(chunk))
            )
        )
        result.update({customer_id: instant for customer_id, instant in rows})
    return result


# Events ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class EventRow:
    source: str
    event_id: str
    type: str
    subject: str
    customer_id: str
    time: datetime
    data: str | None
    content_hash: str
    received_at: datetime
    late: bool
    meters_seen: int


def stored_hashes(tx: Tx, keys: Sequence[EventKey]) -> dict[EventKey, str]:
    """Content hashes of already-stored events among ``keys`` (few: rejected events)."""
    if not keys:
        return {}
    if tx.is_postgres:
        cursor = pg_cursor(tx)
        cursor.execute(
            "SELECT e.source, e.event_id, e.content_hash FROM metering_events e "
            "JOIN unnest(%s::text[], %s::text[]) AS k(source, event_id) "
            "ON e.source = k.source AND e.event_id = k.event_id",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        return {(s, i): h for s, i, h in cursor.fetchall()}
    return _sqlite_stored(sqlite_cursor(tx), keys)


def _sqlite_stored(cursor: Any, keys: Sequence[EventKey]) -> dict[EventKey, str]:
    result: dict[EventKey, str] = {}
    for chunk in _chunks(list(keys)):
        pairs = ",".join("(?,?)" for _ in chunk)
        cursor.execute(
            "SELECT source, event_id, content_hash FROM metering_events "
            f"WHERE (source, event_id) IN (VALUES {pairs})",
            [part for key in chunk for part in key],
        )
        result.update({(s, i): h for s, i, h in cursor.fetchall()})
    return result


_PG_INSERT_STAGED: Final = f"""
INSERT INTO metering_events
    (source, event_id, type, subject, customer_id, time, data, content_hash, received_at, late,
     meters_seen)
SELECT source, event_id, type, subject, customer_id, time, data, content_hash, received_at,
       late, meters_seen
FROM {STAGE_EVENTS} ORDER BY source, event_id
ON CONFLICT (source, event_id) DO NOTHING
RETURNING seq, source, event_id
"""
_PG_SKIPPED_HASHES: Final = f"""
SELECT s.ord, e.content_hash
FROM unnest(string_to_array(%s, ',')::int[]) AS k(ord)
JOIN {STAGE_EVENTS} s ON s.ord = k.ord
JOIN metering_events e ON e.source = s.source AND e.event_id = s.event_id
"""


def insert_events(
    tx: Tx, rows: Sequence[EventRow]
) -> tuple[dict[EventKey, int], dict[EventKey, str]]:
    """Insert the rows whose (source, id) is new. Returns the new rows' seqs and, for the rows
    that already existed, the stored content hash. ``rows`` must be sorted by key (the lock
    order) and free of in-batch duplicates."""
    if not rows:
        return {}, {}
    if tx.is_postgres:
        cursor = pg_staging(tx)
        pg_copy(
            tx,
            cursor,
            STAGE_EVENTS,
            (
                (
                    r.source,
                    r.event_id,
                    r.type,
                    r.subject,
                    r.customer_id,
                    r.time,
                    r.data,
                    r.content_hash,
                    r.received_at,
                    r.late,
                    r.meters_seen,
                    position,
                )
                for position, r in enumerate(rows)
            ),
        )
        cursor.execute(_PG_INSERT_STAGED)
        seqs = {(s, i): seq for seq, s, i in cursor.fetchall()}
        skipped = [p for p, r in enumerate(rows) if (r.source, r.event_id) not in seqs]
        existing: dict[EventKey, str] = {}
        if skipped:
            # A new statement, so a new snapshot: it sees rows a concurrent transaction
            # committed while this insert waited on them.
            cursor.execute(_PG_SKIPPED_HASHES, (",".join(map(str, skipped)),))
            for position, content_hash in cursor.fetchall():
                row = rows[position]
                existing[(row.source, row.event_id)] = content_hash
        return seqs, existing
    # SQLite: one writer at a time (BEGIN IMMEDIATE). Each row is tried once: inserted (its
    # rowid is its seq) or ignored (it exists; its hash is read after).
    cursor = sqlite_cursor(tx)
    numbered: dict[EventKey, int] = {}
    ignored: list[EventKey] = []
    for r in rows:
        cursor.execute(
            "INSERT INTO metering_events (source, event_id, type, subject, customer_id, time, "
            "data, content_hash, received_at, late, meters_seen) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (source, event_id) DO NOTHING",
            (
                r.source,
                r.event_id,
                r.type,
                r.subject,
                r.customer_id,
                sqlite_time(r.time),
                r.data,
                r.content_hash,
                sqlite_time(r.received_at),
                int(r.late),
                r.meters_seen,
            ),
        )
        if cursor.rowcount == 1:
            numbered[(r.source, r.event_id)] = cursor.lastrowid
        else:
            ignored.append((r.source, r.event_id))
    return numbered, _sqlite_stored(cursor, ignored) if ignored else {}


def insert_late(tx: Tx, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        tx.session.execute(table_of(LateEvent).insert(), list(rows))


# Dead letters ----------------------------------------------------------------------------------


@dataclass(slots=True)
class DeadLetterRow:
    id: str
    #: The existing letter being replayed, if any.
    origin_id: str | None
    source: str | None
    event_id: str | None
    type: str | None
    subject: str | None
    code: str
    param: str | None
    message: str
    raw: str
    received_at: datetime


_PG_UPSERT_DEAD_LETTERS: Final = """
INSERT INTO metering_dead_letters AS d
    (id, source, event_id, type, subject, code, param, message, raw, status, attempts,
     received_at, last_attempt_at, resolved_at)
SELECT id, source, event_id, type, subject, code, param, message, raw, 'pending', 1,
       received_at, %s, NULL
FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[],
            %s::varchar[], %s::varchar[], %s::text[], %s::text[], %s::timestamptz[])
    AS t(id, source, event_id, type, subject, code, param, message, raw, received_at)
ON CONFLICT (source, event_id) DO UPDATE SET
    type = excluded.type, subject = excluded.subject, code = excluded.code,
    param = excluded.param, message = excluded.message, raw = excluded.raw,
    status = 'pending', attempts = d.attempts + 1, last_attempt_at = excluded.last_attempt_at,
    resolved_at = NULL
RETURNING id, source, event_id
"""


def upsert_dead_letters(tx: Tx, rows: Sequence[DeadLetterRow], now: datetime) -> dict[int, str]:
    """Store rejected events; returns the letter id for each row position."""
    ids: dict[int, str] = {}
    fresh: list[tuple[int, DeadLetterRow]] = []
    for position, row in enumerate(rows):
        if row.origin_id is not None:
            tx.session.execute(
                update(DeadLetter)
                .where(DeadLetter.id == row.origin_id)
                .values(
                    code=row.code,
                    param=row.param,
                    message=row.message,
                    status="pending",
                    attempts=DeadLetter.attempts + 1,
                    last_attempt_at=now,
                )
            )
            ids[position] = row.origin_id
        else:
            fresh.append((position, row))
    if not fresh:
        return ids
    fresh.sort(key=lambda item: (item[1].source or "", item[1].event_id or "", item[1].id))
    if tx.is_postgres:
        cursor = pg_cursor(tx)
        letters = [row for _, row in fresh]
        cursor.execute(
            _PG_UPSERT_DEAD_LETTERS,
            (
                now,
                [r.id for r in letters],
                [r.source for r in letters],
                [r.event_id for r in letters],
                [r.type for r in letters],
                [r.subject for r in letters],
                [r.code for r in letters],
                [r.param for r in letters],
                [r.message for r in letters],
                [r.raw for r in letters],
                [r.received_at for r in letters],
            ),
        )
        by_key = {(s, i): letter_id for letter_id, s, i in cursor.fetchall() if s is not None}
        for position, row in fresh:
            keyed = row.source is not None and row.event_id is not None
            ids[position] = by_key.get((row.source, row.event_id), row.id) if keyed else row.id
        return ids
    for position, row in fresh:
        statement = (
            sqlite.insert(DeadLetter)
            .values(
                id=row.id,
                source=row.source,
                event_id=row.event_id,
                type=row.type,
                subject=row.subject,
                code=row.code,
                param=row.param,
                message=row.message,
                raw=row.raw,
                status="pending",
                attempts=1,
                received_at=row.received_at,
                last_attempt_at=now,
                resolved_at=None,
            )
            .on_conflict_do_update(
                index_elements=["source", "event_id"],
                set_={
                    "type": row.type,
                    "subject": row.subject,
                    "code": row.code,
                    "param": row.param,
                    "message": row.message,
                    "raw": row.raw,
                    "status": "pending",
                    "attempts": DeadLetter.attempts + 1,
                    "last_attempt_at": now,
                    "resolved_at": None,
                },
            )
            .returning(DeadLetter.id)
        )
        ids[position] = tx.session.execute(statement).scalar_one()
    return ids


def resolve_dead_letters(
    tx: Tx,
    letter_ids: Sequence[str],
    *,
    status: str,
    now: datetime,
    code: str | None = None,
    message: str | None = None,
) -> None:
    """Close replayed letters (``replayed``: the event is in; ``discarded``: it never can be)."""
    if not letter_ids:
        return
    values: dict[str, Any] = {"status": status, "resolved_at": now, "last_attempt_at": now}
    if code is not None:
        values["code"] = code
        values["param"] = "id"
    if message is not None:
        values["message"] = message
    tx.session.execute(
        update(DeadLetter).where(DeadLetter.id.in_(list(letter_ids))).values(**values)
    )
