"""libpq's sends holding the GIL (``db.pq_held``): the same libpq psycopg loaded, the same
results as psycopg's own calls, psycopg's error when a send fails."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import pq

from tallybook.db import Database, pq_held
from tallybook.db.hot import conninfo_of


@pytest.fixture
def pgconn(pg_db: Database) -> Iterator[pq.abc.PGconn]:
    with psycopg.connect(conninfo_of(pg_db.url), autocommit=True) as connection:
        yield connection.pgconn


def _results(pgconn: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    results: list[pq.abc.PGresult] = []
    while True:
        pgconn.consume_input()
        if pgconn.is_busy():
            continue
        result = pgconn.get_result()
        if result is None:
            return results
        results.append(result)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or pq.__impl__ not in ("binary", "c"),
    reason="the GIL-held sends need /proc and psycopg's C or binary implementation",
)
def test_on_this_machine_the_sends_hold_the_gil() -> None:
    assert pq_held.HELD


def test_a_query_sent_holding_the_gil_answers_as_psycopgs(pgconn: pq.abc.PGconn) -> None:
    pq_held.send_query(pgconn, b"SELECT 41 + 1, 'a''b'")
    (result,) = _results(pgconn)
    assert result.status == pq.ExecStatus.TUPLES_OK
    assert (result.get_value(0, 0), result.get_value(0, 1)) == (b"42", b"a'b")


def test_a_prepared_statement_sent_holding_the_gil_takes_text_and_null_parameters(
    pgconn: pq.abc.PGconn,
) -> None:
    pgconn.send_prepare(b"held_1", b"SELECT $1::int * 2, $2::text IS NULL, $3::text")
    assert [r.status for r in _results(pgconn)] == [pq.ExecStatus.COMMAND_OK]
    pq_held.send_query_prepared(pgconn, b"held_1", [b"21", None, "é".encode()])
    (result,) = _results(pgconn)
    assert [result.get_value(0, i) for i in range(3)] == [b"42", b"t", "é".encode()]
    pgconn.send_prepare(b"held_0", b"SELECT 7")
    _results(pgconn)
    pq_held.send_query_prepared(pgconn, b"held_0", [])
    (result,) = _results(pgconn)
    assert result.get_value(0, 0) == b"7"


def test_a_send_that_fails_raises_psycopgs_operational_error(pgconn: pq.abc.PGconn) -> None:
    pq_held.send_query(pgconn, b"SELECT 1")
    with pytest.raises(psycopg.OperationalError, match="another command is already in progress"):
        pq_held.send_query(pgconn, b"SELECT 2")  # one query at a time outside pipeline mode
    _results(pgconn)
    pgconn.finish()
    with pytest.raises(psycopg.OperationalError, match="closed"):
        pq_held.send_query_prepared(pgconn, b"held_2", [])
