"""The transfer path's SQL on PostgreSQL: two statements per batch, whatever its size.

The generic path (:mod:`tallybook.ledger.repository`) sends a statement per table through
SQLAlchemy, after looking the batch's ids up: six or seven statements for one transfer. On a
small machine, where the client, the server and everything else share a few cores, each
statement costs more in client and server overhead than in execution. Here, on the session's
own psycopg connection (same transaction):

1. **lock** the normal accounts' balance rows by primary key, in account order (one
   statement). No idempotency lookup: most transfers are new, so the batch is decided
   optimistically. (A batch of plain transfers reads the rows unlocked first, decides while
   this lock is taken, and writes increments checked under the lock; see ``engine``.)
2. **write** everything in one statement of data-modifying CTEs, each part conditional on a
   *guard* that none of the batch's ids is stored yet. The guard's snapshot is taken after the
   locks are held, so a retry that committed earlier, or a concurrent request with the same id
   that held the same locks, is seen. If the guard fails, nothing is written and
   :func:`write_journal` returns False; the engine then looks the ids up and decides again.

**How rows travel.** Each table's rows go as one ``jsonb`` parameter, an array of positional
arrays (``[[id, kind, …], …]``), serialized by orjson and unpacked by the server with
``jsonb_array_elements`` and ``->>``. Adapting Python lists to PostgreSQL arrays in psycopg is
pure Python per element (quoting every string with a regular expression, formatting every
timestamp): it cost ~15 ms of client time per batch of 100 transfers, more than the server
spent writing them. orjson serializes the same rows in ~0.05 ms, and the server unpacks them in
~0.5 ms. Values the whole batch shares (the time, the actor, the linked batch's id) go once as
scalars; an ``effective_at`` equal to now travels as null. Lists of ids go as one array literal
(ids are validated to a quote-free alphabet, and quoted anyway).

Statement texts depend only on which parts a batch has (not on its size), so psycopg prepares
each once per connection.

Foreign keys are checked at the end of the statement, so a hold and its post may be written by
one statement. Shard rows of hot accounts are not locked beforehand: a batch touching one shard
row updates it in the write statement; a batch touching several updates them afterwards, one
statement each in (account, shard) order, so concurrent batches take them in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, Final

import orjson
from psycopg import Connection as PgConnection
from psycopg import Cursor

from tallybook.db import Tx
from tallybook.kit.money import AMOUNT_MINOR_MAX
from tallybook.ledger.repository import ENTRY_ROW, FAILURE_ROW, HOLD_ROW, TRANSFER_ROW, Stored

LOCK_BALANCE_ROWS: Final = """
SELECT account_id, closed, debits_must_not_exceed_credits, credits_must_not_exceed_debits,
       debits_posted, credits_posted, debits_pending, credits_pending
FROM ledger_balances
WHERE account_id = ANY(%s::text[]) AND shard = 0
ORDER BY account_id
FOR NO KEY UPDATE
"""

#: The same rows, read without a lock: a batch of plain transfers decides on them before it
#: locks anything (see :func:`send_write`'s ``balances_moved``).
READ_BALANCE_ROWS: Final = LOCK_BALANCE_ROWS.replace("FOR NO KEY UPDATE\n", "")

#: The same locks, in the same order, returning only how many rows were locked.
LOCK_ONLY: Final = (
    "SELECT count(*) FROM (SELECT 1 FROM ledger_balances"
    " WHERE account_id = ANY(%s::text[]) AND shard = 0"
    " ORDER BY account_id FOR NO KEY UPDATE) AS locked"
)

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


def _at(fields: Sequence[str], name: str, cast: str = "") -> str:
    """The SQL reading field ``name`` of the JSON row ``r`` (an array in ``fields`` order)."""
    position = fields.index(name)
    if cast == "jsonb":
        return f"r->{position}"
    return f"(r->>{position}){cast}"


#: Each part of the write: (CTE name, table, (column, SQL that computes it)). ``%(now)s`` and
#: friends are the values the batch shares.
_Part = tuple[str, str, tuple[tuple[str, str], ...]]
_T, _E, _F, _H = TRANSFER_ROW, ENTRY_ROW, FAILURE_ROW, HOLD_ROW
_TRANSFERS_INSERT: Final[_Part] = (
    "t",
    "ledger_transfers",
    (
        ("id", _at(_T, "id")),
        ("kind", _at(_T, "kind")),
        ("reason_code", _at(_T, "reason_code")),
        ("metadata", _at(_T, "metadata", "jsonb")),
        ("effective_at", f"COALESCE({_at(_T, 'effective_at', '::timestamptz')}, %(now)s)"),
        ("created_at", "%(now)s::timestamptz"),
        ("pending_id", _at(_T, "pending_id")),
        ("reverses_id", _at(_T, "reverses_id")),
        ("expires_at", _at(_T, "expires_at", "::timestamptz")),
        ("batch_id", "%(batch_id)s::text"),
        ("request", _at(_T, "request", "jsonb")),
        ("actor", "%(actor)s::text"),
    ),
)
_ENTRIES_INSERT: Final[_Part] = (
    "e",
    "ledger_entries",
    (
        ("transfer_id", _at(_E, "transfer_id")),
        ("account_id", _at(_E, "account_id")),
        ("shard", _at(_E, "shard", "::smallint")),
        ("currency", _at(_E, "currency")),
        ("direction", _at(_E, "direction")),
        ("phase", _at(_E, "phase")),
        ("amount_minor", _at(_E, "amount_minor", "::bigint")),
        ("effective_at", f"COALESCE({_at(_E, 'effective_at', '::timestamptz')}, %(now)s)"),
        ("created_at", "%(now)s::timestamptz"),
    ),
)
_FAILURES_INSERT: Final[_Part] = (
    "f",
    "ledger_transfer_failures",
    (
        ("id", _at(_F, "id")),
        ("kind", _at(_F, "kind")),
        ("code", _at(_F, "code")),
        ("message", _at(_F, "message")),
        ("param", _at(_F, "param")),
        ("request", _at(_F, "request", "jsonb")),
        ("batch_id", "%(batch_id)s::text"),
        ("failed_at", "%(now)s::timestamptz"),
        ("actor", "%(actor)s::text"),
    ),
)
_HOLDS_INSERT: Final[_Part] = (
    "h",
    "ledger_open_holds",
    (
        ("transfer_id", _at(_H, "transfer_id")),
        ("expires_at", _at(_H, "expires_at", "::timestamptz")),
    ),
)

_GUARD: Final = "(SELECT ok FROM guard)"


def _driver(tx: Tx) -> PgConnection[Any]:
    connection = tx.session.connection().connection.driver_connection
    assert isinstance(connection, PgConnection)
    return connection


def text_array(values: Sequence[str]) -> str:
    """A ``text[]`` literal: binding it as one string costs nothing, where psycopg adapts a list
    element by element. Every element is quoted (so ``NULL`` stays a string)."""
    return (
        "{"
        + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )


def _json(value: Any) -> str:
    # Timestamps serialize as RFC 3339 with their offset, which PostgreSQL reads exactly.
    return orjson.dumps(value).decode()


@contextmanager
def pipelined(tx: Tx) -> Iterator[None]:
    """Inside, statements go out at once and their results are read when asked for (psycopg's
    pipeline mode), so the transfer path computes while the server executes. Only this
    module's statements may run inside (SQLAlchemy expects results at once)."""
    with _driver(tx).pipeline():
        yield


class Pending:
    """A statement sent; :meth:`rows` waits for its result."""

    def __init__(self, cursor: Cursor[Any] | None) -> None:
        self._cursor = cursor

    def rows(self) -> list[Any]:
        if self._cursor is None:
            return []
        with self._cursor as cursor:
            return cursor.fetchall()


def _send_over_accounts(tx: Tx, sql: str, account_ids: Sequence[str]) -> Pending:
    """Send ``sql``, whose one parameter is the account ids as a ``text[]``."""
    if not account_ids:
        return Pending(None)
    cursor = _driver(tx).cursor()
    cursor.execute(sql, (text_array(account_ids),))
    return Pending(cursor)


def send_lock(tx: Tx, account_ids: Sequence[str]) -> Pending:
    """Lock normal accounts' balance rows in id order (never pass a sharded account here)."""
    return _send_over_accounts(tx, LOCK_BALANCE_ROWS, account_ids)


def send_lock_only(tx: Tx, account_ids: Sequence[str]) -> Pending:
    """Lock normal accounts' balance rows in id order, as :func:`send_lock`, reading nothing
    back (for a batch that read them already)."""
    return _send_over_accounts(tx, LOCK_ONLY, account_ids)


def send_read(tx: Tx, account_ids: Sequence[str]) -> Pending:
    """Read normal accounts' balance rows without locking them (values to decide on before
    the locks are taken; the write statement checks they still allow what was decided)."""
    return _send_over_accounts(tx, READ_BALANCE_ROWS, account_ids)


def stored_outcomes(tx: Tx, transfer_ids: Sequence[str]) -> dict[str, Stored]:
    if not transfer_ids:
        return {}
    with _driver(tx).cursor() as cursor:
        rows = cursor.execute(STORED_OUTCOMES, {"ids": text_array(transfer_ids)}).fetchall()
    return {row[0]: Stored(*row) for row in rows}


# The write statement ----------------------------------------------------------------------


def _insert(part: _Part, parameter: str) -> str:
    name, table, columns = part
    names = ", ".join(column for column, _ in columns)
    values = ", ".join(expression for _, expression in columns)
    return (
        f"{name} AS (INSERT INTO {table} ({names}) SELECT {values} "
        f"FROM jsonb_array_elements(%({parameter})s::jsonb) AS r WHERE {_GUARD})"
    )


#: The rows of ``balances_moved`` that the balances no longer allow: closed since they were
#: read, or without the room the batch's transfers need in a limited direction, or one that
#: would overflow a column. ``r`` is [account, debit room needed, credit room needed, the four
#: increments]; the room is computed in numeric (the differences of bigints can overflow).
_MOVED_REFUSED: Final = (
    "SELECT 1 FROM jsonb_array_elements(%(moved)s::jsonb) AS r JOIN ledger_balances AS x"
    " ON x.account_id = r->>0 AND x.shard = 0"
    " WHERE x.account_id = ANY(%(moved_ids)s::text[]) AND (x.closed"
    " OR (x.debits_must_not_exceed_credits AND x.credits_posted::numeric - x.debits_posted"
    " - x.debits_pending < (r->>1)::numeric)"
    " OR (x.credits_must_not_exceed_debits AND x.debits_posted::numeric - x.credits_posted"
    " - x.credits_pending < (r->>2)::numeric)"
    f" OR x.debits_posted > {AMOUNT_MINOR_MAX} - (r->>3)::bigint"
    f" OR x.credits_posted > {AMOUNT_MINOR_MAX} - (r->>4)::bigint"
    f" OR x.debits_pending > {AMOUNT_MINOR_MAX} - (r->>5)::bigint"
    f" OR x.credits_pending > {AMOUNT_MINOR_MAX} - (r->>6)::bigint)"
)


@lru_cache(maxsize=64)
def _statement(shape: tuple[bool, bool, bool, bool, bool, bool, bool, bool]) -> str:
    transfers, entries, failures, holds_opened, holds_closed, balances, one_shard, moved = shape
    parts = [
        # Each id probes the primary keys, one lateral lookup per id: psycopg prepares the
        # statement, and a generic plan for ``id = ANY(…)`` scanned the whole transfers table
        # whenever its statistics were stale, as they are while a young table grows.
        "guard AS (SELECT NOT EXISTS (SELECT 1 FROM unnest(%(ids)s::text[]) AS i(id)"
        " CROSS JOIN LATERAL (SELECT 1 FROM ledger_transfers AS t WHERE t.id = i.id"
        " UNION ALL SELECT 1 FROM ledger_transfer_failures AS f WHERE f.id = i.id LIMIT 1) AS hit)"
        + (f" AND NOT EXISTS ({_MOVED_REFUSED})" if moved else "")
        + " AS ok)"
    ]
    if transfers:
        parts.append(_insert(_TRANSFERS_INSERT, "transfers"))
    if entries:
        parts.append(_insert(_ENTRIES_INSERT, "entries"))
    if failures:
        parts.append(_insert(_FAILURES_INSERT, "failures"))
    if holds_opened:
        parts.append(_insert(_HOLDS_INSERT, "holds_opened"))
    if holds_closed:
        parts.append(
            "r AS (DELETE FROM ledger_open_holds "
            f"WHERE transfer_id = ANY(%(holds_closed)s::text[]) AND {_GUARD})"
        )
    if balances:
        # The rows are named by primary key (account_id = ANY, shard = 0) so the planner reaches
        # them through the index whatever it thinks of the JSON's size; the JSON gives the values.
        parts.append(
            "b AS (UPDATE ledger_balances AS x SET debits_posted = (r->>1)::bigint, "
            "credits_posted = (r->>2)::bigint, debits_pending = (r->>3)::bigint, "
            "credits_pending = (r->>4)::bigint "
            "FROM jsonb_array_elements(%(balances)s::jsonb) AS r "
            "WHERE x.account_id = ANY(%(balance_ids)s::text[]) AND x.shard = 0 "
            f"AND x.account_id = r->>0 AND {_GUARD})"
        )
    if moved:
        parts.append(
            "m AS (UPDATE ledger_balances AS x SET debits_posted = x.debits_posted + (r->>3)::bigint,"
            " credits_posted = x.credits_posted + (r->>4)::bigint,"
            " debits_pending = x.debits_pending + (r->>5)::bigint,"
            " credits_pending = x.credits_pending + (r->>6)::bigint"
            " FROM jsonb_array_elements(%(moved)s::jsonb) AS r"
            " WHERE x.account_id = ANY(%(moved_ids)s::text[]) AND x.shard = 0"
            f" AND x.account_id = r->>0 AND {_GUARD})"
        )
    if one_shard:
        parts.append(
            "s AS (UPDATE ledger_balances SET debits_posted = debits_posted + %(s_dp)s::bigint, "
            "credits_posted = credits_posted + %(s_cp)s::bigint, "
            "debits_pending = debits_pending + %(s_dpp)s::bigint, "
            "credits_pending = credits_pending + %(s_cpp)s::bigint "
            f"WHERE account_id = %(s_account)s AND shard = %(s_shard)s::smallint AND {_GUARD})"
        )
    return "WITH " + ",\n".join(parts) + "\nSELECT ok FROM guard"


class PendingWrite:
    """The write statement sent; :meth:`succeeded` waits for its guard's answer."""

    def __init__(
        self,
        connection: PgConnection[Any] | None,
        cursor: Cursor[Any] | None,
        increments: Sequence[tuple[str, int, Sequence[int]]],
    ) -> None:
        self._connection = connection
        self._cursor = cursor
        self._increments = increments

    def succeeded(self) -> bool:
        """True when written; False when one of the batch's ids was stored meanwhile (then
        nothing was written)."""
        if self._cursor is None or self._connection is None:
            return True
        with self._cursor as cursor:
            row = cursor.fetchone()
        if row is None or not row[0]:
            return False
        if len(self._increments) > 1:
            with self._connection.pipeline(), self._connection.cursor() as cursor:
                for account_id, shard, delta in self._increments:
                    cursor.execute(ADD_TO_SHARD, [*delta, account_id, shard])
        return True


def send_write(
    tx: Tx,
    *,
    now: datetime,
    actor: str,
    batch_id: str | None,
    transfers: Sequence[Sequence[Any]],
    entries: Sequence[Sequence[Any]],
    failures: Sequence[Sequence[Any]],
    balances_set: Sequence[tuple[str, int, Sequence[int]]],
    balances_added: Sequence[tuple[str, int, Sequence[int]]],
    holds_opened: Sequence[Sequence[Any]],
    holds_closed: Sequence[str],
    balances_moved: Sequence[Sequence[Any]] = (),
) -> PendingWrite:
    """Send a batch's outcome, written unless one of its ids got stored meanwhile. Rows are
    tuples in the order of ``repository.TRANSFER_ROW`` and its siblings, ``effective_at``
    None for now. Several shard increments follow the statement once it succeeded, in
    (account, shard) order.

    ``balances_set`` are balances decided under their row locks (written as they are);
    ``balances_moved`` are increments decided on balances read without a lock, each
    ``(account, debit room needed, credit room needed, *increments)``: written only if, with
    the rows locked by now, every account is still open, has the room its limits need for
    every transfer decided (see ``engine``), and overflows no column. Otherwise nothing is
    written, as when an id was stored meanwhile."""
    ids = [row[0] for row in transfers] + [row[0] for row in failures]
    if not ids:
        return PendingWrite(None, None, ())
    increments = sorted(balances_added)
    one_shard = len(increments) == 1
    shape = (
        bool(transfers),
        bool(entries),
        bool(failures),
        bool(holds_opened),
        bool(holds_closed),
        bool(balances_set),
        one_shard,
        bool(balances_moved),
    )
    params: dict[str, Any] = {
        "ids": text_array(ids),
        "now": now,
        "actor": actor,
        "batch_id": batch_id,
    }
    if transfers:
        # Id order: two batches that share ids then meet on the first one, never in a cycle.
        params["transfers"] = _json(sorted(transfers, key=itemgetter(0)))
    if entries:
        params["entries"] = _json(entries)
    if failures:
        params["failures"] = _json(failures)
    if holds_opened:
        params["holds_opened"] = _json(holds_opened)
    if holds_closed:
        params["holds_closed"] = text_array(sorted(holds_closed))
    if balances_set:
        params["balances"] = _json(
            [[account_id, *values] for account_id, _, values in balances_set]
        )
        params["balance_ids"] = text_array([account_id for account_id, _, _ in balances_set])
    if balances_moved:
        params["moved"] = _json(balances_moved)
        params["moved_ids"] = text_array([row[0] for row in balances_moved])
    if one_shard:
        account_id, shard, delta = increments[0]
        params.update(
            s_dp=delta[0],
            s_cp=delta[1],
            s_dpp=delta[2],
            s_cpp=delta[3],
            s_account=account_id,
            s_shard=shard,
        )
    connection = _driver(tx)
    cursor = connection.cursor()
    cursor.execute(_statement(shape), params)
    return PendingWrite(connection, cursor, increments)
