"""Hot reads: a small asyncio pool of PostgreSQL connections for the API's hottest lookups.

The entitlement check sits on every product request. Answering it from a worker thread
(SQLAlchemy's pool, a thread hop, the GIL handed back and forth) cost more CPU than the
statement itself, so the API's event loop runs these one-statement reads directly on
psycopg's asyncio connections: autocommit (one statement is its own snapshot; no BEGIN or
ROLLBACK round trips), statements prepared by psycopg after a few executions on each
connection (PostgreSQL then settles on one generic plan), the main engine's
``statement_timeout``.

The pool is deliberately small and plain: connections are made on demand up to
``size_max``; a request that finds none idle waits for one (at most
``HOT_POOL_TIMEOUT_SECONDS``); a connection that comes back broken or inside a transaction is
dropped. (psycopg_pool's asyncio pool did the same at about three times the CPU per checkout.)
asyncpg was measured too: cheaper on a one-row read, dearer on the check's wide row.

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
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from psycopg import AsyncConnection, AsyncCursor
from psycopg.pq import TransactionStatus
from sqlalchemy.engine import URL

from tallybook.db.engine import PG_STATEMENT_TIMEOUT_MS, normalize_url

HOT_POOL_SIZE_MAX: Final = 8
HOT_POOL_TIMEOUT_SECONDS: Final = 10.0
#: Batches of one statement running at once, per event loop; more lookups wait for the next.
BATCHES_IN_FLIGHT_MAX: Final = 2
#: Lookups in one batch at most.
BATCH_SIZE_MAX: Final = 64

Connection = AsyncConnection[tuple[Any, ...]]


def conninfo_of(url: str | URL) -> str:
    """The libpq connection string of a ``postgresql://`` database URL (any driver name)."""
    parsed = normalize_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


class HotReads:
    """One-statement reads on pooled asyncio connections in autocommit."""

    def __init__(self, url: str | URL, *, size_max: int = HOT_POOL_SIZE_MAX) -> None:
        self._conninfo = conninfo_of(url)
        self._size_max = size_max
        self._idle: deque[Connection] = deque()
        self._waiters: deque[asyncio.Future[Connection]] = deque()
        self._size = 0
        self._closed = True
        #: One cursor per connection, reused (its result loaders are kept between reads).
        self._cursors: dict[Connection, AsyncCursor[tuple[Any, ...]]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._batchers: dict[str, Batcher] = {}

    async def open(self) -> None:
        """Open for reads, with one connection made now (so a bad URL fails at start-up)."""
        self._closed = False
        self._idle.append(await self._connect())

    async def close(self) -> None:
        self._closed = True
        while self._waiters:
            self._waiters.popleft().cancel()
        while self._idle:
            connection = self._idle.popleft()
            self._size -= 1
            self._cursors.pop(connection, None)
            await connection.close()

    async def fetchone(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row of one statement (``None`` when it returns none)."""
        rows = await self._execute(sql, params, every_row=False)
        return rows[0] if rows else None

    def batched(self, sql: str, *, observe: Callable[[int], object] | None = None) -> Batcher:
        """The batcher of ``sql``: a statement over arrays (see :class:`Batcher`);
        ``observe`` is told the size of each batch run."""
        batcher = self._batchers.get(sql)
        if batcher is None:
            batcher = self._batchers[sql] = Batcher(self, sql, observe=observe)
        return batcher

    async def fetchall(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of one statement."""
        return await self._execute(sql, params, every_row=True)

    async def _execute(
        self, sql: str, params: dict[str, Any], *, every_row: bool
    ) -> list[tuple[Any, ...]]:
        connection = await self._acquire()
        try:
            cursor = self._cursors.get(connection)
            if cursor is None:
                cursor = self._cursors[connection] = connection.cursor()
            await cursor.execute(sql, params)
            if every_row:
                return await cursor.fetchall()
            row = await cursor.fetchone()
            return [row] if row is not None else []
        finally:
            self._release(connection)

    async def _connect(self) -> Connection:
        self._size += 1
        try:
            return await AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                options=(
                    f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}"
                    " -c plan_cache_mode=force_generic_plan"
                ),
            )
        except BaseException:
            self._size -= 1
            raise

    async def _acquire(self) -> Connection:
        if self._closed:
            raise RuntimeError("the hot-read pool is closed")
        if self._idle:
            return self._idle.pop()
        if self._size < self._size_max:
            return await self._connect()
        waiter: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter, HOT_POOL_TIMEOUT_SECONDS)
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _release(self, connection: Connection) -> None:
        if (
            self._closed
            or connection.closed
            or connection.info.transaction_status is not TransactionStatus.IDLE
        ):
            self._size -= 1
            self._cursors.pop(connection, None)
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


class Batcher:
    """One-row lookups of one statement, coalesced under load into one statement over arrays.

    ``sql`` takes one array parameter per lookup parameter, under the same name (a lookup's
    ``{"customer": "cus_1"}`` becomes ``{"customer": ["cus_1", …]}`` for the batch), and
    returns at most one row per lookup, its first column the lookup's 1-based position in the
    arrays (``WITH ORDINALITY``); :meth:`fetchone` returns the rest of that row, or ``None``.
    """

    def __init__(
        self, hot: HotReads, sql: str, *, observe: Callable[[int], object] | None = None
    ) -> None:
        self._hot = hot
        self._sql = sql
        self._observe = observe
        self._pending: deque[tuple[dict[str, Any], asyncio.Future[tuple[Any, ...] | None]]] = (
            deque()
        )
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: Batches run and lookups answered (for tests and the benchmark's report).
        self.batches = 0
        self.lookups = 0

    async def fetchone(self, params: dict[str, Any]) -> tuple[Any, ...] | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[Any, ...] | None] = loop.create_future()
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

    async def _run(
        self, batch: list[tuple[dict[str, Any], asyncio.Future[tuple[Any, ...] | None]]]
    ) -> None:
        names = batch[0][0].keys()
        arrays = {name: [params[name] for params, _ in batch] for name in names}
        try:
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
