"""Client CPU per statement of the hot-read pool (``db.hot``), beside psycopg's ``AsyncCursor``
(how the pool ran statements before) and bare libpq, measured in the same run.

    .venv/bin/python bench/hot_reads.py                      # 40 rounds of 500 statements
    .venv/bin/python bench/hot_reads.py --rounds 100 --statements 1000
    TALLYBOOK_BENCH_PG_URL=postgresql://… .venv/bin/python bench/hot_reads.py

What it does, under uvloop:

1. creates a table of 10,000 rows (``bench_hot_reads_<random>``, dropped at the end) in the
   database of ``TALLYBOOK_BENCH_PG_URL`` (default: the local server, database ``test``);
2. opens three ways to read it, each on one connection with the pool's options:

   - ``HotReads``: the pool (``size_max=1``), ``fetchone``/``fetchall``;
   - ``AsyncCursor``: a psycopg ``AsyncConnection`` and one reused cursor, ``execute`` then
     ``fetchone``/``fetchall`` (psycopg prepares a statement at its fifth execution): the
     baseline, as the pool ran statements before;
   - ``libpq``: the floor: the statement prepared once, then ``send_query_prepared`` and a
     wait on the socket, the parameters written by the pool's ``dump_params`` and the rows
     loaded by psycopg's ``Transformer``, with no pool, no checks and no error handling;

3. for each statement, after a warm-up, runs ``--rounds`` rounds; in each round every way
   (in a shuffled order) awaits ``--statements`` statements one after another and is timed:
   client CPU (``time.process_time``: this process only, PostgreSQL's work excluded) and
   wall time, per statement. The statements: a one-row primary-key read (six columns:
   text, numeric, timestamptz, bigint, jsonb), and a batched statement over a ``text[]``
   and a ``timestamptz[]`` parameter returning three rows (the shape of the entitlement
   check's batch);
4. prints, per way, the median and the fastest round, the median wall time, and the median
   over rounds of the ratio to ``AsyncCursor`` in the same round.

All three ways return the same rows (checked before timing). This machine's speed drifts
by tens of percent within minutes, so rounds are short and interleaved, and the ratios
(taken within a round) are the figures to compare across runs. Wall time includes the
round trip and PostgreSQL's work, which no way changes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import uvloop
from psycopg import AsyncConnection, AsyncCursor
from psycopg.adapt import Transformer

from tallybook.db.engine import PG_STATEMENT_TIMEOUT_MS
from tallybook.db.hot import HotReads, PgStatement, conninfo_of, dump_params

PG_URL = os.environ.get("TALLYBOOK_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROWS = 10_000
WARM_UP_STATEMENTS = 500
EPOCH = datetime(2026, 11, 1, tzinfo=UTC)
OPTIONS = f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS} -c plan_cache_mode=force_generic_plan"

Row = tuple[Any, ...]
Params = dict[str, Any]
Way = Callable[[Params], Awaitable[object]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--statements", type=int, default=500, help="per round and way")
    return parser.parse_args()


async def create_table(conninfo: str, table: str) -> None:
    async with await AsyncConnection.connect(conninfo, autocommit=True) as connection:
        await connection.execute(
            f"CREATE TABLE {table} (id text PRIMARY KEY, customer_id text NOT NULL,"
            " amount numeric(20, 6) NOT NULL, created_at timestamptz NOT NULL,"
            " quantity bigint NOT NULL, metadata jsonb NOT NULL)"
        )
        await connection.execute(
            f"INSERT INTO {table} SELECT 'row_' || lpad(n::text, 5, '0'), 'cus_' || (n %% 997),"
            " n * 1.25, %(epoch)s::timestamptz + n * interval '1 minute', n * 1000,"
            " jsonb_build_object('n', n) FROM generate_series(1, %(rows)s) AS n",
            {"epoch": EPOCH, "rows": ROWS},
        )
        await connection.execute(f"VACUUM ANALYZE {table}")


async def drop_table(conninfo: str, table: str) -> None:
    async with await AsyncConnection.connect(conninfo, autocommit=True) as connection:
        await connection.execute(f"DROP TABLE IF EXISTS {table}")


def row_id(n: int) -> str:
    return f"row_{n:05d}"


def pk_params(count: int) -> list[Params]:
    return [{"id": row_id(random.randint(1, ROWS))} for _ in range(count)]


def batch_params(count: int) -> list[Params]:
    """Three ids each, and an instant after each row's ``created_at`` (so all three match)."""
    out = []
    for _ in range(count):
        ns = random.sample(range(1, ROWS + 1), 3)
        out.append(
            {
                "id": [row_id(n) for n in ns],
                "at": [EPOCH + timedelta(minutes=n, seconds=30) for n in ns],
            }
        )
    return out


class BareLibpq:
    """The floor: one connection driven on libpq with nothing but the statement's work."""

    def __init__(self, connection: AsyncConnection[Row]) -> None:
        self._connection = connection
        self._pgconn = connection.pgconn
        self._loop = asyncio.get_running_loop()
        self._readable: asyncio.Future[None] | None = None
        self._prepared: dict[str, tuple[PgStatement, bytes, Any]] = {}
        self._loop.add_reader(self._pgconn.socket, self._on_readable)

    def _on_readable(self) -> None:
        readable, self._readable = self._readable, None
        if readable is not None:
            readable.set_result(None)
        else:
            self._pgconn.consume_input()

    async def _last_result(self) -> Any:
        pgconn, last = self._pgconn, None
        while True:
            while pgconn.is_busy():
                readable = self._readable = self._loop.create_future()
                await readable
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                return last
            last = result

    async def fetchall(self, sql: str, params: Params) -> list[Row]:
        prepared = self._prepared.get(sql)
        if prepared is None:
            statement = PgStatement(sql)
            _, oids = dump_params(statement, params)
            name = b"bare_%d" % len(self._prepared)
            self._pgconn.send_prepare(name, statement.query, oids)
            await self._last_result()
            prepared = self._prepared[sql] = (statement, name, Transformer(self._connection))
        statement, name, transformer = prepared
        values, _ = dump_params(statement, params)
        self._pgconn.send_query_prepared(name, values)
        result = await self._last_result()
        transformer.set_pgresult(result)
        rows: list[Row] = transformer.load_rows(0, result.ntuples, tuple)
        return rows

    async def fetchone(self, sql: str, params: Params) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        self._loop.remove_reader(self._pgconn.socket)


async def time_way(way: Way, params: list[Params]) -> tuple[float, float]:
    """Client CPU and wall seconds per statement over ``params``, one await after another."""
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for one in params:
        await way(one)
    cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    return cpu / len(params), wall / len(params)


async def main(args: argparse.Namespace) -> None:
    conninfo = conninfo_of(PG_URL)
    table = f"bench_hot_reads_{uuid.uuid4().hex[:8]}"
    try:
        await create_table(conninfo, table)
        await measure(args, conninfo, table)
    finally:
        await drop_table(conninfo, table)


async def measure(args: argparse.Namespace, conninfo: str, table: str) -> None:
    pk_sql = (
        f"SELECT id, customer_id, amount, created_at, quantity, metadata FROM {table}"
        " WHERE id = %(id)s"
    )
    batch_sql = (
        f"SELECT q.n, t.id, t.amount, t.created_at FROM unnest(%(id)s::text[],"
        f" %(at)s::timestamptz[]) WITH ORDINALITY AS q(id, at, n) JOIN {table} t"
        " ON t.id = q.id AND t.created_at <= q.at"
    )
    hot = HotReads(PG_URL, size_max=1)
    cursor_connection = await AsyncConnection.connect(conninfo, autocommit=True, options=OPTIONS)
    bare_connection = await AsyncConnection.connect(conninfo, autocommit=True, options=OPTIONS)
    bare = BareLibpq(bare_connection)
    cursor: AsyncCursor[Row] = cursor_connection.cursor()
    try:
        await hot.open()

        async def cursor_fetchone(sql: str, params: Params) -> Row | None:
            await cursor.execute(sql, params)
            return await cursor.fetchone()

        async def cursor_fetchall(sql: str, params: Params) -> list[Row]:
            await cursor.execute(sql, params)
            return await cursor.fetchall()

        cases: list[tuple[str, Callable[[int], list[Params]], dict[str, Way]]] = [
            (
                "one-row primary-key read",
                pk_params,
                {
                    "HotReads": lambda params: hot.fetchone(pk_sql, params),
                    "AsyncCursor": lambda params: cursor_fetchone(pk_sql, params),
                    "libpq": lambda params: bare.fetchone(pk_sql, params),
                },
            ),
            (
                "batch: text[] + timestamptz[] → 3 rows",
                batch_params,
                {
                    "HotReads": lambda params: hot.fetchall(batch_sql, params),
                    "AsyncCursor": lambda params: cursor_fetchall(batch_sql, params),
                    "libpq": lambda params: bare.fetchall(batch_sql, params),
                },
            ),
        ]
        print(
            f"uvloop {uvloop.__version__}; {args.rounds} rounds of {args.statements:,}"
            " sequential statements per way; µs per statement"
        )
        print(
            f"{'statement':<40} {'way':<12} {'CPU median':>10} {'CPU best':>9}"
            f" {'wall median':>11} {'CPU ÷ cursor':>13}"
        )
        for title, make_params, ways in cases:
            for params in make_params(50):
                rows = [await way(params) for way in ways.values()]
                assert all(row == rows[0] for row in rows), rows
            for way in ways.values():
                await time_way(way, make_params(WARM_UP_STATEMENTS))
            figures: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
            for _ in range(args.rounds):
                order = list(ways.items())
                random.shuffle(order)
                for name, way in order:
                    figures[name].append(await time_way(way, make_params(args.statements)))
            cursor_cpus = [cpu for cpu, _ in figures["AsyncCursor"]]
            for name, rounds in figures.items():
                cpus = [cpu for cpu, _ in rounds]
                ratio = statistics.median(
                    cpu / cursor_cpu for cpu, cursor_cpu in zip(cpus, cursor_cpus, strict=True)
                )
                print(
                    f"{title:<40} {name:<12} {statistics.median(cpus) * 1e6:>10.1f}"
                    f" {min(cpus) * 1e6:>9.1f}"
                    f" {statistics.median(wall for _, wall in rounds) * 1e6:>11.1f}"
                    f" {ratio:>13.2f}"
                )
    finally:
        bare.close()
        await hot.close()
        await cursor_connection.close()
        await bare_connection.close()


if __name__ == "__main__":
    uvloop.run(main(parse_args()))
