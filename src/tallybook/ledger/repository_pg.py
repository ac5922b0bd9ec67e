"""The transfer path's SQL on PostgreSQL: two statements per batch, whatever its size.

The generic path (:mod:`tallybook.ledger.repository`) sends a statement per table through
SQLAlchemy, after looking the batch's ids up: six or seven statements for one transfer. On a
small machine, where the client, the server and everything else share a few cores, each
statement costs more in client and server overhead than in execution. Here, on the session's
own psycopg connection (same transaction):

1. **lock** the normal accounts' balance rows by primary key, in account order (one
   statement). No
   idempotency lookup: most transfers are new, so the batch is decided optimistically.
2. **write** everything in one statement of data-modifying CTEs, each part conditional on a
   *guard* that none of the batch's ids is stored yet. The guard's snapshot is taken after the
   locks are held, so a retry that committed earlier, or a concurrent request with the same id
   that held the same locks, is seen. If the guard fails, nothing is written and
   :func:`write_journal` returns False; the engine then looks the ids up and decides again.

Rows travel as ``VALUES`` with one parameter per field when few, as one array per column
through ``unnest`` when many (adapting arrays costs about 0.1 ms of client time each, which
dominates a one-transfer request but not a hundred-transfer batch). Statement texts depend only
on the batch's shape, so psycopg prepares them once per connection.

Foreign keys are checked at the end of the statement, so a hold and its post may be written by
one statement. Shard rows of hot accounts are not locked beforehand: a batch touching one shard
row updates it in the write statement; a batch touching several updates them afterwards, one
statement each in (account, shard) order, so concurrent batches take them in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

from psycopg import Connection as PgConnection
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb

from tallybook.db import Tx
from tallybook.kit.hashing import json_dumps
from tallybook.ledger.repository import Stored

LOCK_BALANCE_ROWS: Final = """
SELECT account_id, closed, debits_must_not_exceed_credits, credits_must_not_exceed_debits,
       debits_posted, credits_posted, debits_pending, credits_pending
FROM ledger_balances
WHERE account_id = ANY(%s::text[]) AND shard = 0
ORDER BY account_id
FOR NO KEY UPDATE
"""

STORED_OUTCOMES: Final = """
SELECT id, request, NULL::text AS code, NULL::text AS message, NULL::text AS param
FROM ledger_transfers WHERE id = ANY(%(ids)s::text[])
UNION ALL
SELECT id, request, code, message, param
FROM ledger_transfer_failures WHERE id = ANY(%(ids)s::text[])
"""

ADD_TO_SHARD: Final = """
UPDATE ledger_balances
SET debits_posted = debits_posted + %s::bigint, credits_posted = credits_posted + %s::bigint,
    debits_pending = debits_pending + %s::bigint, credits_pending = credits_pending + %s::bigint
WHERE account_id = %s AND shard = %s::smallint
"""

#: Up to this many rows a part of the write uses VALUES; beyond, arrays through unnest.
VALUES_ROWS_MAX: Final = 32

Columns = tuple[tuple[str, str], ...]

TRANSFER_COLUMNS: Final[Columns] = (
    ("id", "text"),
    ("kind", "text"),
    ("reason_code", "text"),
    ("metadata", "jsonb"),
    ("effective_at", "timestamptz"),
    ("created_at", "timestamptz"),
    ("pending_id", "text"),
    ("reverses_id", "text"),
    ("expires_at", "timestamptz"),
    ("batch_id", "text"),
    ("request", "jsonb"),
    ("actor", "text"),
)
ENTRY_COLUMNS: Final[Columns] = (
    ("transfer_id", "text"),
    ("account_id", "text"),
    ("shard", "smallint"),
    ("currency", "text"),
    ("direction", "text"),
    ("phase", "text"),
    ("amount_minor", "bigint"),
    ("effective_at", "timestamptz"),
    ("created_at", "timestamptz"),
)
FAILURE_COLUMNS: Final[Columns] = (
    ("id", "text"),
    ("kind", "text"),
    ("code", "text"),
    ("message", "text"),
    ("param", "text"),
    ("request", "jsonb"),
    ("batch_id", "text"),
    ("failed_at", "timestamptz"),
    ("actor", "text"),
)
HOLD_COLUMNS: Final[Columns] = (("transfer_id", "text"), ("expires_at", "timestamptz"))
BALANCE_COLUMNS: Final[Columns] = (
    ("account_id", "text"),
    ("dp", "bigint"),
    ("cp", "bigint"),
    ("dpp", "bigint"),
    ("cpp", "bigint"),
)
_JSON_COLUMNS: Final = frozenset({"metadata", "request"})


def _driver(tx: Tx) -> PgConnection[Any]:
    connection = tx.session.connection().connection.driver_connection
    assert isinstance(connection, PgConnection)
    return connection


def lock_balance_rows(tx: Tx, account_ids: Sequence[str]) -> list[Any]:
    """Lock normal accounts' balance rows in id order (never pass a sharded account here)."""
    if not account_ids:
        return []
    with _driver(tx).cursor(row_factory=namedtuple_row) as cursor:
        return cursor.execute(LOCK_BALANCE_ROWS, (list(account_ids),)).fetchall()


def stored_outcomes(tx: Tx, transfer_ids: Sequence[str]) -> dict[str, Stored]:
    if not transfer_ids:
        return {}
    with _driver(tx).cursor() as cursor:
        rows = cursor.execute(STORED_OUTCOMES, {"ids": list(transfer_ids)}).fetchall()
    return {row[0]: Stored(*row) for row in rows}


# The write statement ----------------------------------------------------------------------


@lru_cache(maxsize=512)
def _source(columns: Columns, count: int) -> str:
    """``(VALUES …) AS v(…)`` for a few rows, ``unnest(…) AS v(…)`` for many."""
    names = ", ".join(name for name, _ in columns)
    if count <= VALUES_ROWS_MAX:
        row = "(" + ", ".join(f"%s::{cast}" for _, cast in columns) + ")"
        return f"(VALUES {', '.join([row] * count)}) AS v({names})"
    arrays = ", ".join(f"%s::{cast}[]" for _, cast in columns)
    return f"unnest({arrays}) AS v({names})"


def _source_params(columns: Columns, rows: Sequence[Sequence[Any]]) -> list[Any]:
    if len(rows) <= VALUES_ROWS_MAX:
        return [value for row in rows for value in row]
    return [[row[index] for row in rows] for index in range(len(columns))]


def _row_values(row: Mapping[str, Any], columns: Columns) -> list[Any]:
    return [
        Jsonb(row[name], dumps=json_dumps) if name in _JSON_COLUMNS else row[name]
        for name, _ in columns
    ]


@lru_cache(maxsize=512)
def _statement(shape: tuple[int, int, int, int, bool, int, bool]) -> str:
    transfers, entries, failures, holds_opened, holds_closed, balances, one_shard = shape
    guard = "(SELECT ok FROM guard)"
    parts = [
        "guard AS (SELECT NOT EXISTS (SELECT 1 FROM ledger_transfers WHERE id = ANY(%s::text[]))"
        " AND NOT EXISTS (SELECT 1 FROM ledger_transfer_failures WHERE id = ANY(%s::text[]))"
        " AS ok)"
    ]

    def insert(name: str, table: str, columns: Columns, count: int) -> None:
        names = ", ".join(column for column, _ in columns)
        parts.append(
            f"{name} AS (INSERT INTO {table} ({names}) SELECT {names} "
            f"FROM {_source(columns, count)} WHERE {guard})"
        )

    if transfers:
        insert("t", "ledger_transfers", TRANSFER_COLUMNS, transfers)
    if entries:
        insert("e", "ledger_entries", ENTRY_COLUMNS, entries)
    if failures:
        insert("f", "ledger_transfer_failures", FAILURE_COLUMNS, failures)
    if holds_opened:
        insert("h", "ledger_open_holds", HOLD_COLUMNS, holds_opened)
    if holds_closed:
        parts.append(
            f"r AS (DELETE FROM ledger_open_holds WHERE transfer_id = ANY(%s::text[]) AND {guard})"
        )
    if 0 < balances <= VALUES_ROWS_MAX:
        # One primary-key update per row: a join with VALUES may be planned as a scan of the
        # whole table, which a hot row's dead versions make slow.
        for index in range(balances):
            parts.append(
                f"b{index} AS (UPDATE ledger_balances SET debits_posted = %s::bigint, "
                "credits_posted = %s::bigint, debits_pending = %s::bigint, "
                "credits_pending = %s::bigint "
                f"WHERE account_id = %s AND shard = 0 AND {guard})"
            )
    elif balances:
        parts.append(
            "b AS (UPDATE ledger_balances AS x SET debits_posted = v.dp, credits_posted = v.cp, "
            "debits_pending = v.dpp, credits_pending = v.cpp "
            f"FROM {_source(BALANCE_COLUMNS, balances)} "
            f"WHERE x.account_id = v.account_id AND x.shard = 0 AND {guard})"
        )
    if one_shard:
        parts.append(f"s AS ({ADD_TO_SHARD.strip()} AND {guard})")
    return "WITH " + ",\n".join(parts) + "\nSELECT ok FROM guard"


def write_journal(
    tx: Tx,
    *,
    transfers: Sequence[Mapping[str, Any]],
    entries: Sequence[Mapping[str, Any]],
    failures: Sequence[Mapping[str, Any]],
    balances_set: Sequence[tuple[str, int, Sequence[int]]],
    balances_added: Sequence[tuple[str, int, Sequence[int]]],
    holds_opened: Sequence[Mapping[str, Any]],
    holds_closed: Sequence[str],
) -> bool:
    """Write a batch's outcome unless one of its ids got stored meanwhile (then: False, and
    nothing written)."""
    ids = [row["id"] for row in transfers] + [row["id"] for row in failures]
    if not ids:
        return True
    ordered = sorted(transfers, key=lambda row: row["id"])
    increments = sorted(balances_added)
    one_shard = len(increments) == 1
    shape = (
        len(ordered),
        len(entries),
        len(failures),
        len(holds_opened),
        bool(holds_closed),
        len(balances_set),
        one_shard,
    )
    params: list[Any] = [ids, ids]
    for rows, columns in (
        (ordered, TRANSFER_COLUMNS),
        (entries, ENTRY_COLUMNS),
        (failures, FAILURE_COLUMNS),
        (holds_opened, HOLD_COLUMNS),
    ):
        if rows:
            params.extend(_source_params(columns, [_row_values(row, columns) for row in rows]))
    if holds_closed:
        params.append(sorted(holds_closed))
    if 0 < len(balances_set) <= VALUES_ROWS_MAX:
        for account_id, _, values in balances_set:
            params.extend([*values, account_id])
    elif balances_set:
        params.extend(
            _source_params(
                BALANCE_COLUMNS, [[account_id, *values] for account_id, _, values in balances_set]
            )
        )
    if one_shard:
        account_id, shard, delta = increments[0]
        params.extend([*delta, account_id, shard])
    connection = _driver(tx)
    with connection.cursor() as cursor:
        row = cursor.execute(_statement(shape), params).fetchone()
    if row is None or not row[0]:
        return False
    if len(increments) > 1:
        with connection.pipeline(), connection.cursor() as cursor:
            for account_id, shard, delta in increments:
                cursor.execute(ADD_TO_SHARD, [*delta, account_id, shard])
    return True
