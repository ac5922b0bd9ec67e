"""The hot-read pool (``db.hot``): one-statement reads on asyncio connections, on PostgreSQL."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from tallybook.db import Database
from tallybook.db.hot import HotReads, conninfo_of
from tests.fixtures.aio import run_async


def test_conninfo_drops_the_sqlalchemy_driver_name() -> None:
    assert conninfo_of("postgresql+psycopg://u:p@h:5433/d") == "postgresql://u:p@h:5433/d"


def test_a_read_returns_the_first_row_or_none(pg_db: Database) -> None:
    async def scenario() -> tuple[object, object]:
        hot = HotReads(pg_db.url)
        await hot.open()
        try:
            one = await hot.fetchone("SELECT %(a)s::int + 1, 'x'", {"a": 41})
            none = await hot.fetchone("SELECT 1 WHERE false", {})
        finally:
            await hot.close()
        return one, none

    assert run_async(scenario()) == ((42, "x"), None)


def test_reads_beyond_the_pool_size_wait_for_a_connection(pg_db: Database) -> None:
    async def scenario() -> list[object]:
        hot = HotReads(pg_db.url, size_max=2)
        await hot.open()
        try:
            rows = await asyncio.gather(
                *(hot.fetchone("SELECT pg_sleep(0.05), %(n)s::int", {"n": n}) for n in range(6))
            )
            assert hot._size <= 2
        finally:
            await hot.close()
        return [row[1] for row in rows if row is not None]

    assert run_async(scenario()) == list(range(6))


def test_a_connection_that_died_is_replaced(pg_db: Database) -> None:
    async def scenario() -> object:
        hot = HotReads(pg_db.url, size_max=1)
        await hot.open()
        try:
            row = await hot.fetchone("SELECT pg_backend_pid()", {})
            assert row is not None
            with psycopg.connect(conninfo_of(pg_db.url), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            with pytest.raises(psycopg.OperationalError):
                await hot.fetchone("SELECT 1", {})
            again = await hot.fetchone("SELECT pg_backend_pid()", {})
            assert again is not None and again[0] != row[0]
            return again
        finally:
            await hot.close()

    run_async(scenario())


def test_a_closed_pool_refuses_reads(pg_db: Database) -> None:
    async def scenario() -> None:
        hot = HotReads(pg_db.url)
        await hot.open()
        await hot.close()
        with pytest.raises(RuntimeError, match="closed"):
            await hot.fetchone("SELECT 1", {})

    run_async(scenario())


BATCH_SQL = (
    "SELECT q.n, q.a * 10, q.b FROM unnest(%(a)s::int[], %(b)s::text[]) WITH ORDINALITY"
    " AS q(a, b, n) WHERE q.a >= 0"
)


def test_concurrent_lookups_share_batches_and_each_gets_its_own_row(pg_db: Database) -> None:
    async def scenario() -> tuple[list[object], int, int]:
        hot = HotReads(pg_db.url)
        await hot.open()
        try:
            batcher = hot.batched(BATCH_SQL)
            rows = await asyncio.gather(
                *(batcher.fetchone({"a": n if n % 5 else -1, "b": f"x{n}"}) for n in range(40))
            )
            return list(rows), batcher.batches, batcher.lookups
        finally:
            await hot.close()

    rows, batches, lookups = run_async(scenario())
    assert rows == [None if n % 5 == 0 else (n * 10, f"x{n}") for n in range(40)]
    assert lookups == 40 and batches < 40


def test_a_failing_batch_fails_each_of_its_lookups(pg_db: Database) -> None:
    async def scenario() -> list[object]:
        hot = HotReads(pg_db.url)
        await hot.open()
        try:
            batcher = hot.batched(
                "SELECT q.n, 1 / q.a FROM unnest(%(a)s::int[]) WITH ORDINALITY AS q(a, n)"
            )
            return await asyncio.gather(
                *(batcher.fetchone({"a": n}) for n in (1, 0, 2)), return_exceptions=True
            )
        finally:
            await hot.close()

    outcomes = run_async(scenario())
    assert outcomes[0] == (1,) or isinstance(outcomes[0], psycopg.errors.DivisionByZero)
    assert isinstance(outcomes[1], psycopg.errors.DivisionByZero)
