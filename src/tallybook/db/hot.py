"""Hot reads: a small asyncio pool of PostgreSQL connections for the API's hottest lookups.

The entitlement check sits on every product request. Answering it from a worker thread
(SQLAlchemy's pool, a thread hop, the GIL handed back and forth) cost more CPU than the
statement itself, so the API's event loop runs these one-statement reads directly on
asyncio connections: autocommit (one statement is its own snapshot; no BEGIN or ROLLBACK
round trips), each statement prepared on each connection at its first execution, the main
engine's ``statement_timeout``.

The pool is deliberately small and plain: connections are made on demand up to
``size_max``; a request that finds none idle waits for one (at most
``HOT_POOL_TIMEOUT_SECONDS``); a connection that comes back broken or inside a transaction is
dropped. (psycopg_pool's asyncio pool did the same at about three times the CPU per checkout.)
asyncpg was measured too: cheaper on a one-row read, dearer on the check's wide row.

**Statements bypass psycopg's cursor.** psycopg makes and closes the connections (with
their options, and ``info``) and loads the rows (its C ``Transformer``, in text format as a
cursor reads them, so rows hold exactly the types a cursor gives: ``Decimal``, ``datetime``,
lists, dicts…), but statements run on libpq directly: each SQL string's ``%(name)s``
placeholders are converted once (:class:`PgStatement`); each statement is prepared once per
connection (the first ``PREPARED_PER_CONNECTION_MAX`` of them; any more run unprepared),
declaring the parameter types psycopg would declare, then executed with
``send_query_prepared``, its parameters written as text by a few small functions
(:func:`dump_params`: str, int, Decimal, bool, None, datetime and lists of them, a list as
an array literal; anything else is a ``TypeError``), while the event loop watches the
socket (one reader for the connection's life, see :class:`HotConnection`). The cursor's
machinery (its state and generators, a dumper looked up per value, the list dumper
sniffing element types, a reader added and removed around each wait) was a third to a half
of the client's CPU per statement. In ``bench/hot_reads.py`` (uvloop, statements one after
another on one connection; four runs on a 2-core VM whose speed drifts by tens of percent,
so the ratios within a run are the figures to trust), a one-row primary-key read took 0.54
to 0.70 of the cursor's client CPU (medians 68 to 95 µs against 110 to 137 µs), and a
statement over a ``text[]`` and a ``timestamptz[]`` parameter returning three rows (the
shape of the batched check) 0.50 to 0.51 (98 to 102 µs against 195 to 216 µs); bare libpq
with the same parameter writing and no pool measured 0.58 to 0.63 and 0.47 to 0.51 in the
same runs.

An error result (bad SQL, ``statement_timeout``) raises psycopg's exception for its SQLSTATE,
and the connection serves the next statement. A statement interrupted between its send and
its last result (a cancelled task, a broken socket) leaves the connection's protocol state
unknown: that connection is dropped (its statement cancelled on the server, then closed),
never reused; so is one whose session the server ended (a FATAL error).

**Batches.** Under load, concurrent lookups of one statement are coalesced into one statement
over arrays (:meth:`HotReads.batched`): the first lookup goes out at once; lookups arriving
while ``BATCHES_IN_FLIGHT_MAX`` batches are already running wait and leave together in the
next one. At low load nothing waits and nothing changes; near capacity the per-statement
cost (protocol, snapshot, executor start-up: measured at about 130 µs of PostgreSQL CPU for
the entitlement check's statement, against about 55 µs of per-row work) is shared by the
batch, so capacity grows with the load instead of the queue. The connections use
``plan_cache_mode = force_generic_plan``: these statements are fixed shapes of index lookups,
and planning the batched check afresh each time cost about 1 ms.

A :class:`HotReads` belongs to one event loop: the API opens it when it starts serving (its
lifespan) and closes it when it stops. Reads only; every write goes through
``Database.transaction``. SQLite has none: callers fall back to their thread path.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from psycopg import (
    AsyncConnection,
    DataError,
    InternalError,
    OperationalError,
    ProgrammingError,
)
from psycopg import Error as PsycopgError
from psycopg import abc as pg_abc
from psycopg import errors as pg_errors
from psycopg.adapt import Transformer
from psycopg.pq import DiagnosticField, ExecStatus, TransactionStatus
from psycopg.pq.abc import PGresult
from sqlalchemy.engine import URL

from tallybook.db.engine import PG_STATEMENT_TIMEOUT_MS, normalize_url
from tallybook.db.pq_held import send_query_prepared

HOT_POOL_SIZE_MAX: Final = 8
HOT_POOL_TIMEOUT_SECONDS: Final = 10.0
#: Batches of one statement running at once, per event loop; more lookups wait for the next.
BATCHES_IN_FLIGHT_MAX: Final = 2
#: Lookups in one batch at most.
BATCH_SIZE_MAX: Final = 64
#: Statements prepared on one connection at most; further ones run unprepared (parsed and
#: planned at each execution) rather than grow the server's memory without bound.
PREPARED_PER_CONNECTION_MAX: Final = 100
#: SQL strings whose conversion a pool keeps; further ones are converted at each execution.
SQL_CACHED_MAX: Final = 256
#: How long a dropped connection's statement may take to be cancelled before it is closed.
CANCEL_TIMEOUT_SECONDS: Final = 5.0
#: How often the pool renews the socket watch of statements awaiting the server (the
#: longest a wait may outlive a socket the event loop stopped watching).
WAIT_RECHECK_SECONDS: Final = 1.0

Connection = AsyncConnection[tuple[Any, ...]]
Row = tuple[Any, ...]

# Type oids, as psycopg declares them for the same Python values (0: the server infers it).
_UNKNOWN: Final = 0
_BOOL: Final = 16
_INT8: Final = 20
_INT2: Final = 21
_INT4: Final = 23
_TIMESTAMP: Final = 1114
_TIMESTAMPTZ: Final = 1184
_NUMERIC: Final = 1700
_BOOL_ARRAY: Final = 1000
_INT2_ARRAY: Final = 1005
_INT4_ARRAY: Final = 1007
_INT8_ARRAY: Final = 1016
_TIMESTAMP_ARRAY: Final = 1115
_TIMESTAMPTZ_ARRAY: Final = 1185
_NUMERIC_ARRAY: Final = 1231

_TUPLES_OK: Final = ExecStatus.TUPLES_OK
_FATAL_ERROR: Final = ExecStatus.FATAL_ERROR
_COPY_STATUSES: Final = frozenset({ExecStatus.COPY_IN, ExecStatus.COPY_OUT, ExecStatus.COPY_BOTH})
_SEVERITY: Final = DiagnosticField.SEVERITY_NONLOCALIZED
#: Errors after which the server closes the session.
_SESSION_ENDING_SEVERITIES: Final = frozenset({b"FATAL", b"PANIC"})
_IDLE: Final = TransactionStatus.IDLE
_ACTIVE: Final = TransactionStatus.ACTIVE
_ENCODING: Final = "utf-8"
_NUL: Final = "\x00"


def conninfo_of(url: str | URL) -> str:
    """The libpq connection string of a ``postgresql://`` database URL (any driver name)."""
    parsed = normalize_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


# -- Statements and parameters -------------------------------------------------------------

#: ``%(name)s``, ``%%``, or any other ``%`` (an error, as in psycopg).
_PLACEHOLDER: Final = re.compile(r"%(?:\(([^)]*)\)(.?)|(.?))", re.DOTALL)


class PgStatement:
    """One SQL string with psycopg ``%(name)s`` placeholders, converted for libpq: the query
    with ``$1``, ``$2``… (one per distinct name; ``%%`` is a literal ``%``) and the
    parameter names in that order."""

    __slots__ = ("names", "query")

    def __init__(self, sql: str) -> None:
        names: list[str] = []
        parts: list[str] = []
        position = 0
        for match in _PLACEHOLDER.finditer(sql):
            parts.append(sql[position : match.start()])
            position = match.end()
            name, conversion, other = match.groups()
            if name is not None and name and conversion == "s":
                if name not in names:
                    names.append(name)
                parts.append(f"${names.index(name) + 1}")
            elif other == "%":
                parts.append("%")
            else:
                raise ProgrammingError(
                    f"only '%(name)s' placeholders and '%%' are allowed, got {match.group()!r}"
                )
        parts.append(sql[position:])
        self.query: Final = "".join(parts).encode(_ENCODING)
        self.names: Final = tuple(names)


def _dump_str(value: str) -> tuple[bytes, int]:
    if _NUL in value:
        raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return value.encode(), _UNKNOWN


def _int_oid(value: int) -> int:
    if -(2**15) <= value < 2**15:
        return _INT2
    if -(2**31) <= value < 2**31:
        return _INT4
    if -(2**63) <= value < 2**63:
        return _INT8
    return _NUMERIC


def _dump_int(value: int) -> tuple[bytes, int]:
    return b"%d" % value, _int_oid(value)


def _dump_bool(value: bool) -> tuple[bytes, int]:
    return (b"t" if value else b"f"), _BOOL


def _decimal_text(value: Decimal) -> str:
    return "NaN" if value.is_nan() else str(value)


def _dump_decimal(value: Decimal) -> tuple[bytes, int]:
    return _decimal_text(value).encode(), _NUMERIC


def _dump_datetime(value: datetime) -> tuple[bytes, int]:
    return value.isoformat().encode(), (_TIMESTAMP if value.tzinfo is None else _TIMESTAMPTZ)


def _dump_none(_value: None) -> tuple[None, int]:
    return None, _UNKNOWN


def _quoted(text: str) -> str:
    """An array element: double-quoted, its backslashes and double quotes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _str_element(value: str) -> str:
    if _NUL in value:
        raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return _quoted(value)


def _datetime_element(value: datetime) -> str:
    return '"' + value.isoformat() + '"'


def _int_element(value: int) -> str:
    return str(int(value))  # an int-valued Enum's own str() is its name


def _bool_element(value: bool) -> str:
    return "t" if value else "f"


#: The text of an array element of each type, and the oid of an array of them.
_ELEMENTS: Final[dict[type, tuple[Callable[[Any], str], int]]] = {
    str: (_str_element, _UNKNOWN),
    int: (_int_element, _INT2_ARRAY),  # widened by the largest element, as psycopg does
    bool: (_bool_element, _BOOL_ARRAY),
    Decimal: (_decimal_text, _NUMERIC_ARRAY),
    datetime: (_datetime_element, _TIMESTAMPTZ_ARRAY),  # _TIMESTAMP_ARRAY when naive
}
_INT_ARRAYS: Final = {_INT2: _INT2_ARRAY, _INT4: _INT4_ARRAY, _INT8: _INT8_ARRAY}


def _element_type(cls: type) -> type | None:
    """The type in :data:`_ELEMENTS` that ``cls`` is (a ``StrEnum`` is a ``str``)."""
    return next((base for base in cls.__mro__ if base in _ELEMENTS), None)


def _dump_list(value: list[Any]) -> tuple[bytes, int]:
    """A list as a PostgreSQL array literal, and the array type psycopg would declare."""
    types = set(map(type, value))
    if types == {str}:
        # The common case (ids): escape the elements in one pass over their join, with a
        # separator that cannot be in a text value (any NUL in one would be counted here).
        joined = _NUL.join(value)
        if joined.count(_NUL) != len(value) - 1:
            raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        escaped = joined.replace("\\", "\\\\").replace('"', '\\"').replace(_NUL, '","')
        return ('{"' + escaped + '"}').encode(), _UNKNOWN
    if types == {datetime}:
        literal = '{"' + '","'.join([element.isoformat() for element in value]) + '"}'
        return literal.encode(), (
            _TIMESTAMP_ARRAY if value[0].tzinfo is None else _TIMESTAMPTZ_ARRAY
        )
    leaves = list(_leaves(value, set()))
    if not leaves:
        return _array_literal(value, str).encode(), _UNKNOWN
    leaf_types = {_element_type(type(leaf)) for leaf in leaves}
    if None in leaf_types:
        unsupported = next(type(leaf) for leaf in leaves if _element_type(type(leaf)) is None)
        raise TypeError(f"cannot send a list of {unsupported.__name__}")
    if len(leaf_types) > 1:
        names = ", ".join(sorted(t.__name__ for t in leaf_types if t is not None))
        raise TypeError(f"cannot send a list of mixed types: {names}")
    element_type = leaf_types.pop()
    assert element_type is not None
    element_text, oid = _ELEMENTS[element_type]
    if element_type is int:
        largest, smallest = max(leaves), min(leaves)
        oid = _INT_ARRAYS.get(
            _int_oid(largest if smallest >= 0 else max(largest, -smallest - 1)), _NUMERIC_ARRAY
        )
    elif element_type is datetime and leaves[0].tzinfo is None:
        oid = _TIMESTAMP_ARRAY
    return _array_literal(value, element_text).encode(), oid


def _leaves(value: list[Any], seen: set[int]) -> Any:
    """The elements of a list that are neither lists nor None, however deeply nested."""
    if id(value) in seen:
        raise TypeError("cannot send a recursive list")
    seen.add(id(value))
    for element in value:
        if isinstance(element, list):
            yield from _leaves(element, seen)
        elif element is not None:
            yield element


def _array_literal(value: list[Any], element_text: Callable[[Any], str]) -> str:
    return (
        "{"
        + ",".join(
            [
                "NULL"
                if element is None
                else _array_literal(element, element_text)
                if isinstance(element, list)
                else element_text(element)
                for element in value
            ]
        )
        + "}"
    )


_Dumper = Callable[[Any], tuple[bytes | None, int]]

#: How each type of parameter value is written (as text) and declared (an oid).
_DUMPERS: Final[dict[type, _Dumper]] = {
    str: _dump_str,
    int: _dump_int,
    bool: _dump_bool,
    Decimal: _dump_decimal,
    datetime: _dump_datetime,
    type(None): _dump_none,
    list: _dump_list,
}


def _dumper_of(cls: type) -> _Dumper | None:
    """The dumper of a subclass of a type in :data:`_DUMPERS` (a ``StrEnum``: ``str``)."""
    dumper = next((_DUMPERS[base] for base in cls.__mro__ if base in _DUMPERS), None)
    if dumper is not None and len(_DUMPERS) < 64:
        _DUMPERS[cls] = dumper
    return dumper


def dump_params(
    statement: PgStatement, params: dict[str, Any]
) -> tuple[list[bytes | None], tuple[int, ...]]:
    """The values of ``statement``'s parameters as text, and their type oids (0: inferred).

    Raises ``TypeError`` naming the parameter for a value of no supported type."""
    values: list[bytes | None] = []
    oids: list[int] = []
    for name in statement.names:
        try:
            value = params[name]
        except KeyError:
            raise ProgrammingError(f"query parameter missing: {name}") from None
        dumper = _DUMPERS.get(type(value)) or _dumper_of(type(value))
        if dumper is None:
            raise TypeError(
                f"query parameter {name!r}: cannot send a {type(value).__name__}"
                " (str, int, Decimal, bool, None, datetime or a list of those)"
            )
        try:
            data, oid = dumper(value)
        except (TypeError, DataError) as error:
            raise type(error)(f"query parameter {name!r}: {error}") from None
        values.append(data)
        oids.append(oid)
    return values, tuple(oids)


# -- Connections -----------------------------------------------------------------------------


class PreparedStatement:
    """A statement prepared on one connection, with the transformer that loads its rows
    (its column loaders set from its first result, then kept)."""

    __slots__ = ("loaders_set", "name", "transformer")

    def __init__(self, name: bytes | None, transformer: pg_abc.Transformer) -> None:
        #: ``None``: not prepared (run with its query text each time).
        self.name = name
        self.transformer = transformer
        self.loaders_set = False


class HotConnection:
    """One pooled connection: psycopg's, with the statements prepared on it, run on libpq.

    The event loop watches the socket for as long as the connection lives (one reader,
    registered once: adding and removing it around each wait cost about 5 µs a statement
    under uvloop). uvloop stops watching a socket by itself when it reports an error (after
    calling the reader once), so the watch is renewed whenever a wait follows another in
    one statement, when the idle connection reads something, and by the pool's recheck of
    waits (:meth:`renew_watch`); a wait therefore never outlives a broken socket for long.
    """

    __slots__ = (
        "_loop",
        "_pgconn",
        "_prepared",
        "_readable",
        "_socket",
        "_watching",
        "broken",
        "connection",
        "prepare_count",
    )

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._pgconn = connection.pgconn
        self._socket = connection.pgconn.socket
        self._loop = asyncio.get_running_loop()
        self._prepared: dict[tuple[bytes, tuple[int, ...]], PreparedStatement] = {}
        #: What a statement awaits: the socket readable (set by :meth:`_on_readable`).
        self._readable: asyncio.Future[None] | None = None
        self._loop.add_reader(self._socket, self._on_readable)
        self._watching = True
        #: Set when the connection cannot run another statement: an exchange stopped between
        #: its send and its last result (a cancelled task, a broken socket: the protocol
        #: state is unknown), or the server ended the session (a FATAL error).
        self.broken = False
        #: Statements prepared on this connection (tests check that each is prepared once).
        self.prepare_count = 0

    @property
    def reusable(self) -> bool:
        return (
            not self.broken
            and not self.connection.closed
            and self._pgconn.transaction_status == _IDLE
        )

    @property
    def waiting(self) -> bool:
        """Whether a statement awaits the server."""
        return self._readable is not None

    async def execute(
        self,
        statement: PgStatement,
        values: list[bytes | None],
        oids: tuple[int, ...],
        *,
        every_row: bool,
    ) -> list[Row]:
        prepared = self._prepared.get((statement.query, oids))
        if prepared is None:
            prepared = await self._prepare(statement, oids)
        try:
            if prepared.name is None:
                self._pgconn.send_query_params(statement.query, values, oids)
            else:
                send_query_prepared(self._pgconn, prepared.name, values)
            results = await self._results()
        except BaseException:
            self.broken = True
            raise
        return self._rows(results, prepared, every_row)

    async def _prepare(self, statement: PgStatement, oids: tuple[int, ...]) -> PreparedStatement:
        transformer = Transformer(self.connection)
        if len(self._prepared) >= PREPARED_PER_CONNECTION_MAX:
            return PreparedStatement(None, transformer)
        name = b"tallybook_hot_%d" % (len(self._prepared) + 1)
        try:
            self._pgconn.send_prepare(name, statement.query, oids)
            results = await self._results()
        except BaseException:
            self.broken = True
            raise
        self._raise_on_error(results)
        prepared = self._prepared[(statement.query, oids)] = PreparedStatement(name, transformer)
        self.prepare_count += 1
        return prepared

    async def _results(self) -> list[PGresult]:
        """Every result of the statement just sent, once the server has sent them all."""
        pgconn = self._pgconn
        if pgconn.flush():
            await self._flush()
        results: list[PGresult] = []
        waits = 0
        while True:
            while pgconn.is_busy():
                if not self._watching:  # the server closed the connection, seen while idle
                    raise OperationalError("the connection is lost")
                if waits:
                    self.renew_watch()
                waits += 1
                readable = self._readable = self._loop.create_future()
                await readable
                try:
                    pgconn.consume_input()
                except OperationalError:
                    # The server closed the connection, maybe right after an error result
                    # explaining why (a terminated backend): that is the error to raise.
                    if any(result.status == _FATAL_ERROR for result in results):
                        return results
                    raise
            result = pgconn.get_result()
            if result is None:
                return results
            if result.status in _COPY_STATUSES:  # libpq would return it forever
                raise ProgrammingError("COPY is not supported by the hot-read pool")
            results.append(result)

    async def _flush(self) -> None:
        """Send what libpq could not send at once, reading meanwhile (so that a server
        blocked on writing to us cannot block us)."""
        pgconn = self._pgconn
        while True:
            ready = self._readable = self._loop.create_future()
            self._loop.add_writer(self._socket, _wake, ready)
            try:
                await ready
            finally:
                self._readable = None
                self._loop.remove_writer(self._socket)
            pgconn.consume_input()
            if not pgconn.flush():
                return

    def _rows(
        self, results: list[PGresult], prepared: PreparedStatement, every_row: bool
    ) -> list[Row]:
        self._raise_on_error(results)
        result = results[0]
        if result.status != _TUPLES_OK:
            raise ProgrammingError(
                "the statement returned no rows (command status:"
                f" {(result.command_status or b'').decode()})"
            )
        transformer = prepared.transformer
        transformer.set_pgresult(result, set_loaders=not prepared.loaders_set)
        prepared.loaders_set = prepared.name is not None
        try:
            if every_row:
                return transformer.load_rows(0, result.ntuples, tuple)
            return [transformer.load_row(0, tuple)] if result.ntuples else []
        finally:
            transformer.set_pgresult(None, set_loaders=False)

    def _raise_on_error(self, results: list[PGresult]) -> None:
        if not results:
            raise InternalError("the server sent no result")
        for result in results:
            if result.status == _FATAL_ERROR:
                if result.error_field(_SEVERITY) in _SESSION_ENDING_SEVERITIES:
                    self.broken = True
                raise pg_errors.error_from_result(result, encoding=_ENCODING)

    def _on_readable(self) -> None:
        readable = self._readable
        if readable is not None:
            self._readable = None
            if not readable.done():
                readable.set_result(None)
            return
        # Nothing awaits the socket (an idle connection, or a statement's task not yet
        # resumed): read what came, so that the socket stops being readable.
        try:
            self._pgconn.consume_input()
        except OperationalError:  # the server closed the connection: executing will say so
            self.stop_watching()
        else:
            self.renew_watch()

    def renew_watch(self) -> None:
        """Watch the socket afresh (in case the event loop stopped watching it)."""
        if self._watching:
            self._loop.remove_reader(self._socket)
            self._loop.add_reader(self._socket, self._on_readable)

    def stop_watching(self) -> None:
        """Stop watching the socket: at once when the connection is dropped, since libpq
        may already have closed the socket and the next connection may get its number."""
        if self._watching:
            self._watching = False
            self._loop.remove_reader(self._socket)

    async def close(self) -> None:
        """Close, cancelling first any statement still running on the server."""
        self.stop_watching()
        if not self.connection.closed and self._pgconn.transaction_status == _ACTIVE:
            try:
                await self.connection.cancel_safe(timeout=CANCEL_TIMEOUT_SECONDS)
            except PsycopgError:
                pass  # best effort: the connection is closed below whatever the server does
        await self.connection.close()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


# -- The pool --------------------------------------------------------------------------------


class HotReads:
    """One-statement reads on pooled asyncio connections in autocommit."""

    def __init__(self, url: str | URL, *, size_max: int = HOT_POOL_SIZE_MAX) -> None:
        self._conninfo = conninfo_of(url)
        self._size_max = size_max
        self._idle: deque[HotConnection] = deque()
        self._waiters: deque[asyncio.Future[HotConnection]] = deque()
        self._size = 0
        self._closed = True
        self._closing: set[asyncio.Task[None]] = set()
        self._batchers: dict[str, Batcher] = {}
        self._statements: dict[str, PgStatement] = {}
        #: Every open connection, idle or running a statement.
        self._connections: set[HotConnection] = set()
        self._recheck: asyncio.TimerHandle | None = None

    async def open(self) -> None:
        """Open for reads, with one connection made now (so a bad URL fails at start-up)."""
        self._closed = False
        self._idle.append(await self._connect())
        if self._recheck is not None:
            self._recheck.cancel()
        self._recheck = asyncio.get_running_loop().call_later(
            WAIT_RECHECK_SECONDS, self._recheck_waits
        )

    async def close(self) -> None:
        self._closed = True
        if self._recheck is not None:
            self._recheck.cancel()
        while self._waiters:
            self._waiters.popleft().cancel()
        while self._idle:
            connection = self._idle.popleft()
            self._size -= 1
            self._connections.discard(connection)
            await connection.close()
        if self._closing:  # connections dropped a moment ago: their statements' cancellations
            await asyncio.wait(list(self._closing))

    async def fetchone(self, sql: str, params: dict[str, Any]) -> Row | None:
        """The first row of one statement (``None`` when it returns none)."""
        rows = await self._execute(sql, params, every_row=False)
        return rows[0] if rows else None

    def batched(
        self,
        sql: str,
        *,
        single_sql: str | None = None,
        observe: Callable[[int], object] | None = None,
    ) -> Batcher:
        """The batcher of ``sql``: a statement over arrays (see :class:`Batcher`), and
        ``single_sql`` the same for one lookup; ``observe`` is told the size of each batch
        run."""
        batcher = self._batchers.get(sql)
        if batcher is None:
            batcher = self._batchers[sql] = Batcher(
                self, sql, single_sql=single_sql, observe=observe
            )
        return batcher

    async def fetchall(self, sql: str, params: dict[str, Any]) -> list[Row]:
        """Every row of one statement."""
        return await self._execute(sql, params, every_row=True)

    async def _execute(self, sql: str, params: dict[str, Any], *, every_row: bool) -> list[Row]:
        statement = self._statements.get(sql)
        if statement is None:
            statement = PgStatement(sql)
            if len(self._statements) < SQL_CACHED_MAX:
                self._statements[sql] = statement
        values, oids = dump_params(statement, params)
        if self._idle and not self._closed:  # the common case, without a coroutine
            connection = self._idle.pop()
        else:
            connection = await self._acquire()
        try:
            return await connection.execute(statement, values, oids, every_row=every_row)
        finally:
            self._release(connection)

    async def _connect(self) -> HotConnection:
        self._size += 1
        try:
            connection = await AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                client_encoding="UTF8",  # what the parameters are written in
                options=(
                    f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}"
                    " -c plan_cache_mode=force_generic_plan"
                ),
            )
        except BaseException:
            self._size -= 1
            raise
        hot_connection = HotConnection(connection)
        self._connections.add(hot_connection)
        return hot_connection

    async def _acquire(self) -> HotConnection:
        if self._closed:
            raise RuntimeError("the hot-read pool is closed")
        if self._idle:
            return self._idle.pop()
        if self._size < self._size_max:
            return await self._connect()
        waiter: asyncio.Future[HotConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter, HOT_POOL_TIMEOUT_SECONDS)
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _release(self, connection: HotConnection) -> None:
        if self._closed or not connection.reusable:
            self._size -= 1
            self._connections.discard(connection)
            connection.stop_watching()
            closing = asyncio.get_running_loop().create_task(connection.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _recheck_waits(self) -> None:
        """Renew the socket watch of every connection whose statement awaits the server
        (see :class:`HotConnection`), then come back in ``WAIT_RECHECK_SECONDS``."""
        for connection in self._connections:
            if connection.waiting:
                connection.renew_watch()
        if not self._closed:
            self._recheck = asyncio.get_running_loop().call_later(
                WAIT_RECHECK_SECONDS, self._recheck_waits
            )


class Batcher:
    """One-row lookups of one statement, coalesced under load into one statement over arrays.

    ``sql`` takes one array parameter per lookup parameter, under the same name (a lookup's
    ``{"customer": "cus_1"}`` becomes ``{"customer": ["cus_1", …]}`` for the batch), and
    returns at most one row per lookup, its first column the lookup's 1-based position in the
    arrays (``WITH ORDINALITY``); :meth:`fetchone` returns the rest of that row, or ``None``.

    ``single_sql``, when given, is the same lookup for one set of scalar parameters, returning
    the row without the position: a batch of one runs it instead (at low load most batches
    are of one, and the statement over arrays costs more for one lookup: its ``unnest`` and
    ``LATERAL`` join on the server, its arrays on both sides).
    """

    def __init__(
        self,
        hot: HotReads,
        sql: str,
        *,
        single_sql: str | None = None,
        observe: Callable[[int], object] | None = None,
    ) -> None:
        self._hot = hot
        self._sql = sql
        self._single_sql = single_sql
        self._observe = observe
        self._pending: deque[tuple[dict[str, Any], asyncio.Future[Row | None]]] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: Batches run and lookups answered (for tests and the benchmark's report).
        self.batches = 0
        self.lookups = 0

    async def fetchone(self, params: dict[str, Any]) -> Row | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Row | None] = loop.create_future()
        self._pending.append((params, answer))
        if self._in_flight < BATCHES_IN_FLIGHT_MAX:
            self._in_flight += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await answer

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = [
                    self._pending.popleft() for _ in range(min(len(self._pending), BATCH_SIZE_MAX))
                ]
                await self._run(batch)
        finally:
            self._in_flight -= 1

    async def _run(self, batch: list[tuple[dict[str, Any], asyncio.Future[Row | None]]]) -> None:
        try:
            if len(batch) == 1 and self._single_sql is not None:
                single = await self._hot.fetchone(self._single_sql, batch[0][0])
                rows = [(1, *single)] if single is not None else []
            else:
                names = batch[0][0].keys()
                arrays = {name: [params[name] for params, _ in batch] for name in names}
                rows = await self._hot.fetchall(self._sql, arrays)
        except BaseException as error:
            for _, answer in batch:
                if answer.done():
                    continue
                if isinstance(error, Exception):
                    answer.set_exception(error)
                else:
                    answer.cancel()
            if isinstance(error, Exception):
                return
            raise
        self.batches += 1
        self.lookups += len(batch)
        if self._observe is not None:
            self._observe(len(batch))
        found = {row[0]: row[1:] for row in rows}
        for position, (_, answer) in enumerate(batch, start=1):
            if not answer.done():
                answer.set_result(found.get(position))
