"""The hot-read pool (``db.hot``): one-statement reads on asyncio connections, on PostgreSQL.

Every scenario runs on asyncio's own event loop and on uvloop (what ``tallybook serve`` runs)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any

import psycopg
import pytest

from tallybook.db import Database
from tallybook.db.hot import (
    PREPARED_PER_CONNECTION_MAX,
    HotConnection,
    HotReads,
    PgStatement,
    conninfo_of,
)
from tests.fixtures.aio import Run


@contextlib.asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[HotReads]:
    """A pool open for the block, closed after it."""
    hot = HotReads(url, **options)
    await hot.open()
    try:
        yield hot
    finally:
        await hot.close()


def only_connection(hot: HotReads) -> HotConnection:
    """The pool's one idle connection (a pool of ``size_max=1`` between reads)."""
    assert hot._size == 1 and len(hot._idle) == 1
    return hot._idle[0]


def test_conninfo_drops_the_sqlalchemy_driver_name() -> None:
    assert conninfo_of("postgresql+psycopg://u:p@h:5433/d") == "postgresql://u:p@h:5433/d"


def test_placeholders_become_numbered_parameters_once_per_name() -> None:
    statement = PgStatement("SELECT %(a)s, %(b)s::int, %(a)s || '%%', 10 %% 3")
    assert statement.query == b"SELECT $1, $2::int, $1 || '%', 10 % 3"
    assert statement.names == ("a", "b")
    for bad in ("SELECT 50%", "SELECT %s", "SELECT %(a)d", "SELECT %()s", "SELECT '5%'"):
        with pytest.raises(psycopg.ProgrammingError):
            PgStatement(bad)


def test_a_read_returns_the_first_row_or_none(pg_db: Database, run: Run[Any]) -> None:
    async def scenario() -> tuple[object, object]:
        async with opened(pg_db.url) as hot:
            one = await hot.fetchone("SELECT %(a)s::int + 1, 'x'", {"a": 41})
            none = await hot.fetchone("SELECT 1 WHERE false", {})
        return one, none

    assert run(scenario()) == ((42, "x"), None)


def test_reads_beyond_the_pool_size_wait_for_a_connection(pg_db: Database, run: Run[Any]) -> None:
    async def scenario() -> list[object]:
        async with opened(pg_db.url, size_max=2) as hot:
            rows = await asyncio.gather(
                *(hot.fetchone("SELECT pg_sleep(0.05), %(n)s::int", {"n": n}) for n in range(6))
            )
            assert hot._size <= 2
        return [row[1] for row in rows if row is not None]

    assert run(scenario()) == list(range(6))


def test_a_connection_that_died_is_replaced(pg_db: Database, run: Run[Any]) -> None:
    async def scenario() -> object:
        async with opened(pg_db.url, size_max=1) as hot:
            row = await hot.fetchone("SELECT pg_backend_pid()", {})
            assert row is not None
            with psycopg.connect(conninfo_of(pg_db.url), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            with pytest.raises(psycopg.OperationalError):
                await hot.fetchone("SELECT 1", {})
            again = await hot.fetchone("SELECT pg_backend_pid()", {})
            assert again is not None and again[0] != row[0]
            return again

    run(scenario())


def test_a_connection_that_died_while_idle_is_replaced(pg_db: Database, run: Run[Any]) -> None:
    """The server closing an idle connection is read while it idles (its socket is watched):
    the next read on it fails, and the one after runs on a new connection."""

    async def scenario() -> None:
        async with opened(pg_db.url, size_max=1) as hot:
            row = await hot.fetchone("SELECT pg_backend_pid()", {})
            assert row is not None
            with psycopg.connect(conninfo_of(pg_db.url), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            for _ in range(1000):
                if only_connection(hot).connection.closed:
                    break
                await asyncio.sleep(0.01)
            assert only_connection(hot).connection.closed
            with pytest.raises(psycopg.OperationalError):
                await hot.fetchone("SELECT 1", {})
            again = await hot.fetchone("SELECT pg_backend_pid()", {})
            assert again is not None and again[0] != row[0]

    run(scenario())


def test_a_closed_pool_refuses_reads(pg_db: Database, run: Run[Any]) -> None:
    async def scenario() -> None:
        hot = HotReads(pg_db.url)
        await hot.open()
        await hot.close()
        with pytest.raises(RuntimeError, match="closed"):
            await hot.fetchone("SELECT 1", {})

    run(scenario())


# Parameters and rows ------------------------------------------------------------------------

AWKWARD_TEXTS = [
    'a "quoted" word',
    "back\\slash and \\\\ two",
    'a \\" both',
    "comma, and {braces}",
    "ünïcödé ✓ 🧾",
    "",
    "NULL",
    " spaces ",
    "'single'",
    "new\nline\ttab",
]
INSTANTS = [
    datetime(2026, 11, 1, 9, 0, 0, tzinfo=UTC),
    datetime(2026, 11, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-8))),
]
ROUND_TRIP_SQL = (
    "SELECT %(texts)s::text[], %(texts_with_nulls)s::text[], %(text)s::text, %(small)s::int,"
    " %(big)s::bigint, %(huge)s::numeric, %(decimal)s::numeric, %(decimals)s::numeric[],"
    " %(at)s::timestamptz, %(instants)s::timestamptz[], %(yes)s::bool, %(no)s::bool,"
    " %(bools)s::bool[], %(none)s::text, %(ints)s::int[], %(matrix)s::int[], %(empty)s::text[]"
)
ROUND_TRIP_PARAMS: dict[str, Any] = {
    "texts": AWKWARD_TEXTS,
    "texts_with_nulls": [None, "a", None, "NULL", None],
    "text": 'x, "y" \\ {z}',
    "small": -7,
    "big": 2**40,
    "huge": 2**70,
    "decimal": Decimal("-12345678901234567890.123456789"),
    "decimals": [Decimal("0.000002"), None, Decimal("1E+3"), Decimal("-0")],
    "at": INSTANTS[1],
    "instants": [*INSTANTS, None],
    "yes": True,
    "no": False,
    "bools": [True, None, False],
    "none": None,
    "ints": [1, -(2**31), 2**31 - 1, None],
    "matrix": [[1, 2], [3, None]],
    "empty": [],
}


async def cursor_row(url: Any, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """The row psycopg's cursor reads for the same statement (the types to match)."""
    async with await psycopg.AsyncConnection.connect(conninfo_of(url)) as connection:
        cursor = await connection.execute(sql, params)
        return await cursor.fetchone()


def test_parameters_round_trip_with_the_types_a_cursor_gives(
    pg_db: Database, run: Run[Any]
) -> None:
    async def scenario() -> tuple[object, object]:
        async with opened(pg_db.url) as hot:
            row = await hot.fetchone(ROUND_TRIP_SQL, ROUND_TRIP_PARAMS)
        return row, await cursor_row(pg_db.url, ROUND_TRIP_SQL, ROUND_TRIP_PARAMS)

    row, expected = run(scenario())
    assert row == expected
    assert row == (
        AWKWARD_TEXTS,
        [None, "a", None, "NULL", None],
        'x, "y" \\ {z}',
        -7,
        2**40,
        Decimal(2**70),
        Decimal("-12345678901234567890.123456789"),
        [Decimal("0.000002"), None, Decimal("1000"), Decimal("0")],
        INSTANTS[1],
        [*INSTANTS, None],
        True,
        False,
        [True, None, False],
        None,
        [1, -(2**31), 2**31 - 1, None],
        [[1, 2], [3, None]],
        [],
    )
    assert isinstance(row, tuple)
    assert isinstance(expected, tuple)
    assert [type(value) for value in row] == [type(value) for value in expected]


def test_parameters_without_casts_are_declared_as_psycopg_declares_them(
    pg_db: Database, run: Run[Any]
) -> None:
    """No cast in the SQL: the server takes each parameter's type from what is declared
    (int2/int4/int8/numeric by size, numeric, bool, timestamptz; str unknown, so inferred)."""
    sql = (
        "SELECT %(small)s, %(medium)s, %(large)s, %(huge)s, %(decimal)s, %(flag)s, %(at)s,"
        " %(ints)s, %(big_ints)s, %(text)s, pg_typeof(%(small)s)::text,"
        " pg_typeof(%(large)s)::text, pg_typeof(%(ints)s)::text, left('abcdef', %(small)s)"
    )
    params = {
        "small": 3,
        "medium": 70_000,
        "large": 2**40,
        "huge": 2**70,
        "decimal": Decimal("1.50"),
        "flag": True,
        "at": INSTANTS[2],
        "ints": [1, 2],
        "big_ints": [1, 2**40],
        "text": "plain",
    }

    async def scenario() -> tuple[object, object]:
        async with opened(pg_db.url) as hot:
            row = await hot.fetchone(sql, params)
        return row, await cursor_row(pg_db.url, sql, params)

    row, expected = run(scenario())
    assert row == expected
    assert row == (
        3,
        70_000,
        2**40,
        Decimal(2**70),
        Decimal("1.50"),
        True,
        INSTANTS[2],
        [1, 2],
        [1, 2**40],
        "plain",
        "smallint",
        "bigint",
        "smallint[]",
        "abc",
    )


def test_rows_hold_the_types_a_cursor_gives(pg_db: Database, run: Run[Any]) -> None:
    sql = (
        "SELECT '{\"a\": [1, 2.5]}'::jsonb, '[1]'::json, 12.5::numeric(10, 2),"
        " '2026-11-01'::date, '2026-11-01 09:00'::timestamp, interval '1 day 2 hours',"
        " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, ARRAY['{x}', NULL]::text[],"
        " 1.5::float8, '\\x00ff'::bytea, ARRAY[now()]::timestamptz[], NULL::int"
    )

    async def scenario() -> tuple[object, object]:
        async with opened(pg_db.url) as hot:
            rows = await hot.fetchall(sql, {})
        return rows[0], await cursor_row(pg_db.url, sql, {})

    row, expected = run(scenario())
    assert isinstance(row, tuple) and isinstance(expected, tuple)
    assert [type(value) for value in row] == [type(value) for value in expected]
    assert row[:10] == expected[:10]
    assert row[0] == {"a": [1, 2.5]}


class Colour(StrEnum):
    RED = "red"


class Size(IntEnum):
    SMALL = 1
    LARGE = 40_000


def test_enums_of_str_and_int_are_sent_as_their_values(pg_db: Database, run: Run[Any]) -> None:
    async def scenario() -> object:
        async with opened(pg_db.url) as hot:
            return await hot.fetchone(
                "SELECT %(colour)s, %(colours)s::text[], %(size)s, %(sizes)s,"
                " pg_typeof(%(sizes)s)::text",
                {
                    "colour": Colour.RED,
                    "colours": [Colour.RED, None],
                    "size": Size.LARGE,
                    "sizes": [Size.SMALL, Size.LARGE],
                },
            )

    assert run(scenario()) == ("red", ["red", None], 40_000, [1, 40_000], "integer[]")


def test_values_of_no_supported_type_are_refused_by_name(pg_db: Database, run: Run[Any]) -> None:
    async def scenario() -> None:
        async with opened(pg_db.url, size_max=1) as hot:
            with pytest.raises(TypeError, match="'price'.*float"):
                await hot.fetchone("SELECT %(price)s", {"price": 1.5})
            with pytest.raises(TypeError, match="'ids'.*mixed types"):
                await hot.fetchone("SELECT %(ids)s", {"ids": ["a", 1]})
            with pytest.raises(TypeError, match="'ids'.*bytes"):
                await hot.fetchone("SELECT %(ids)s", {"ids": [b"a"]})
            with pytest.raises(psycopg.DataError, match="NUL"):
                await hot.fetchone("SELECT %(name)s", {"name": "a\x00b"})
            with pytest.raises(psycopg.DataError, match="NUL"):
                await hot.fetchone("SELECT %(names)s::text[]", {"names": ["a", "b\x00"]})
            with pytest.raises(psycopg.ProgrammingError, match="missing: b"):
                await hot.fetchone("SELECT %(a)s, %(b)s", {"a": 1})
            assert await hot.fetchone("SELECT %(a)s::int", {"a": 1, "unused": object()}) == (1,)
            assert hot._size == 1

    run(scenario())


def test_percent_signs_are_doubled_and_names_repeat(pg_db: Database, run: Run[Any]) -> None:
    async def scenario() -> object:
        async with opened(pg_db.url) as hot:
            return await hot.fetchone(
                "SELECT 7 %% 3, %(a)s::text || '%%', %(n)s::int * %(n)s::int", {"a": "50", "n": 4}
            )

    assert run(scenario()) == (1, "50%", 16)


def test_a_large_parameter_is_sent_in_parts(pg_db: Database, run: Run[Any]) -> None:
    """Megabytes of parameters fill the socket's buffer: the rest is sent as it drains."""
    names = [f"{n:08d}" + "x" * 92 for n in range(100_000)]

    async def scenario() -> object:
        async with opened(pg_db.url) as hot:
            return await hot.fetchone(
                "SELECT cardinality(%(names)s::text[]), (%(names)s::text[])[100000]",
                {"names": names},
            )

    assert run(scenario()) == (100_000, names[-1])


# Prepared statements ----------------------------------------------------------------------


def test_each_statement_is_prepared_once_per_connection(pg_db: Database, run: Run[Any]) -> None:
    sql = "SELECT %(a)s::int * 2"

    async def scenario() -> tuple[list[object], int, list[tuple[Any, ...]]]:
        async with opened(pg_db.url, size_max=1) as hot:
            rows = [await hot.fetchone(sql, {"a": n}) for n in range(5)]
            prepares = only_connection(hot).prepare_count
            prepared = await hot.fetchall(
                "SELECT statement, parameter_types::text[] FROM pg_prepared_statements"
                " ORDER BY name",
                {},
            )
            return rows, prepares, prepared

    rows, prepares, prepared = run(scenario())
    assert rows == [(n * 2,) for n in range(5)]
    assert prepares == 1
    assert prepared == [
        ("SELECT $1::int * 2", ["smallint"]),
        ("SELECT statement, parameter_types::text[] FROM pg_prepared_statements ORDER BY name", []),
    ]


def test_statements_beyond_the_limit_run_unprepared(pg_db: Database, run: Run[Any]) -> None:
    async def scenario() -> tuple[list[object], int]:
        async with opened(pg_db.url, size_max=1) as hot:
            rows = [
                await hot.fetchone(f"SELECT {n} + %(a)s::int", {"a": 1})
                for n in range(PREPARED_PER_CONNECTION_MAX + 3)
            ]
            again = await hot.fetchone(
                f"SELECT {PREPARED_PER_CONNECTION_MAX} + %(a)s::int", {"a": 2}
            )
            return [*rows, again], only_connection(hot).prepare_count

    rows, prepares = run(scenario())
    assert rows == [(n + 1,) for n in range(PREPARED_PER_CONNECTION_MAX + 3)] + [
        (PREPARED_PER_CONNECTION_MAX + 2,)
    ]
    assert prepares == PREPARED_PER_CONNECTION_MAX


# Errors and interruptions -------------------------------------------------------------------


def test_an_sql_error_raises_psycopgs_class_and_the_connection_stays(
    pg_db: Database, run: Run[Any]
) -> None:
    async def scenario() -> None:
        async with opened(pg_db.url, size_max=1) as hot:
            pid = await hot.fetchone("SELECT pg_backend_pid()", {})
            with pytest.raises(psycopg.errors.DivisionByZero):
                await hot.fetchone("SELECT 1 / %(zero)s::int", {"zero": 0})
            with pytest.raises(psycopg.errors.DivisionByZero):  # prepared, then failing again
                await hot.fetchone("SELECT 1 / %(zero)s::int", {"zero": 0})
            with pytest.raises(psycopg.errors.SyntaxError):
                await hot.fetchone("SELEC 1", {})
            with pytest.raises(psycopg.errors.UndefinedTable):
                await hot.fetchall("SELECT * FROM no_such_table WHERE id = %(id)s", {"id": "x"})
            with pytest.raises(psycopg.ProgrammingError, match="no rows"):
                await hot.fetchone("SET application_name = 'x'", {})
            assert await hot.fetchone("SELECT 1 / %(one)s::int", {"one": 1}) == (1,)
            assert await hot.fetchone("SELECT pg_backend_pid()", {}) == pid
            assert hot._size == 1

    run(scenario())


def test_a_statement_timeout_raises_query_canceled(pg_db: Database, run: Run[Any]) -> None:
    async def scenario() -> None:
        async with opened(pg_db.url, size_max=1) as hot:
            pid = await hot.fetchone("SELECT pg_backend_pid()", {})
            await hot.fetchone("SELECT set_config('statement_timeout', '50ms', false)", {})
            with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
                await hot.fetchone("SELECT pg_sleep(5)", {})
            assert await hot.fetchone("SELECT pg_backend_pid()", {}) == pid
            assert hot._size == 1

    run(scenario())


def test_a_cancelled_read_drops_its_connection_and_its_statement(
    pg_db: Database, run: Run[Any]
) -> None:
    async def scenario() -> None:
        async with opened(pg_db.url, size_max=1) as hot:
            first = await hot.fetchone("SELECT pg_backend_pid()", {})
            assert first is not None
            sleeping = asyncio.ensure_future(hot.fetchone("SELECT pg_sleep(30)", {}))
            await asyncio.sleep(0.2)
            sleeping.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sleeping
            assert hot._size == 0
            second = await hot.fetchone("SELECT pg_backend_pid()", {})
            assert second is not None and second[0] != first[0]
            assert hot._size == 1
            # The dropped connection's statement was cancelled, not left sleeping 30 s.
            for _ in range(1000):
                alive = await hot.fetchone(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %(pid)s", {"pid": first[0]}
                )
                if alive == (0,):
                    break
                await asyncio.sleep(0.01)
            assert alive == (0,)

    run(scenario())


def test_a_read_cancelled_while_waiting_for_a_connection_leaves_the_pool_whole(
    pg_db: Database, run: Run[Any]
) -> None:
    async def scenario() -> None:
        async with opened(pg_db.url, size_max=1) as hot:
            busy = asyncio.ensure_future(hot.fetchone("SELECT pg_sleep(0.2), 1", {}))
            await asyncio.sleep(0.05)
            waiting = asyncio.ensure_future(hot.fetchone("SELECT 2", {}))
            await asyncio.sleep(0.01)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            busy_row = await busy
            assert busy_row is not None and busy_row[1] == 1
            assert await hot.fetchone("SELECT 3", {}) == (3,)
            assert hot._size == 1

    run(scenario())


# Batches ------------------------------------------------------------------------------------

BATCH_SQL = (
    "SELECT q.n, q.a * 10, q.b FROM unnest(%(a)s::int[], %(b)s::text[]) WITH ORDINALITY"
    " AS q(a, b, n) WHERE q.a >= 0"
)


def test_concurrent_lookups_share_batches_and_each_gets_its_own_row(
    pg_db: Database, run: Run[Any]
) -> None:
    async def scenario() -> tuple[list[object], int, int]:
        async with opened(pg_db.url) as hot:
            batcher = hot.batched(BATCH_SQL)
            rows = await asyncio.gather(
                *(
                    batcher.fetchone(
                        {"a": n if n % 5 else -1, "b": f'x{n} "{AWKWARD_TEXTS[n % 10]}'}
                    )
                    for n in range(40)
                )
            )
            return list(rows), batcher.batches, batcher.lookups

    rows, batches, lookups = run(scenario())
    assert rows == [
        None if n % 5 == 0 else (n * 10, f'x{n} "{AWKWARD_TEXTS[n % 10]}') for n in range(40)
    ]
    assert lookups == 40 and batches < 40


def test_a_failing_batch_fails_each_of_its_lookups(pg_db: Database, run: Run[Any]) -> None:
    async def scenario() -> list[object]:
        async with opened(pg_db.url) as hot:
            batcher = hot.batched(
                "SELECT q.n, 1 / q.a FROM unnest(%(a)s::int[]) WITH ORDINALITY AS q(a, n)"
            )
            return await asyncio.gather(
                *(batcher.fetchone({"a": n}) for n in (1, 0, 2)), return_exceptions=True
            )

    outcomes = run(scenario())
    assert outcomes[0] == (1,) or isinstance(outcomes[0], psycopg.errors.DivisionByZero)
    assert isinstance(outcomes[1], psycopg.errors.DivisionByZero)


SINGLE_SQL = "SELECT %(a)s::int * 10, %(b)s::text || '!' WHERE %(a)s::int >= 0"
BATCH_OF_SINGLE_SQL = (
    "SELECT q.n, q.a * 10, q.b || '?' FROM unnest(%(a)s::int[], %(b)s::text[]) WITH ORDINALITY"
    " AS q(a, b, n) WHERE q.a >= 0"
)


def test_a_batch_of_one_runs_the_single_statement(pg_db: Database, run: Run[Any]) -> None:
    async def scenario() -> tuple[list[object], list[object], int]:
        async with opened(pg_db.url) as hot:
            batcher = hot.batched(BATCH_OF_SINGLE_SQL, single_sql=SINGLE_SQL)
            alone = [await batcher.fetchone({"a": a, "b": "x"}) for a in (3, -1)]
            together = await asyncio.gather(
                *(batcher.fetchone({"a": a, "b": "y"}) for a in (1, 2, -1, 4))
            )
            return alone, list(together), batcher.lookups

    alone, together, lookups = run(scenario())
    assert alone == [(30, "x!"), None]  # one at a time: the single statement ('!')
    # Lookups made in one turn of the loop leave together, over arrays ('?').
    assert together == [(10, "y?"), (20, "y?"), None, (40, "y?")]
    assert lookups == 6
