"""The journal is append-only at the database level, and ``ledger check`` finds planted
breaches (exiting non-zero with a readable report)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tallybook.cli.main import app
from tallybook.db import Database
from tallybook.ledger import repository_pg
from tallybook.ledger import service as ledger
from tests.fixtures.databases import database_url_of
from tests.ledger.conftest import Books, move, open_books


def _prepared(books: Books) -> None:
    books.fund(books.wallet, 1000)
    books.one(move("spend", books.wallet, books.revenue, 100))
    books.one(move("hold", books.wallet, books.revenue, 100, pending=True))
    books.one(move("overspend", books.wallet, books.revenue, 10_000))  # a recorded failure


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_transfers SET reason_code = 'edited' WHERE id = 'spend'",
        "DELETE FROM ledger_transfers WHERE id = 'hold'",
        "UPDATE ledger_entries SET amount_minor = 1",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_transfer_failures SET code = 'ok'",
        "DELETE FROM ledger_transfer_failures",
    ],
)
def test_the_database_refuses_edits_to_the_journal(books: Books, statement: str) -> None:
    _prepared(books)
    with pytest.raises(sa.exc.DBAPIError) as error, books.db.engine.begin() as conn:
        conn.execute(sa.text(statement))
    assert "append-only" in str(error.value)


def test_the_database_refuses_a_balance_past_its_limit(books: Books) -> None:
    """The pair of the domain's limit check: a CHECK constraint on the balance row."""
    _prepared(books)
    with pytest.raises(sa.exc.IntegrityError), books.db.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE ledger_balances SET debits_posted = 5000 WHERE account_id = :a"),
            {"a": books.wallet.id},
        )


def test_a_clean_ledger_passes(books: Books) -> None:
    _prepared(books)
    with books.db.read() as tx:
        report = ledger.check_invariants(tx)
    assert report.ok, report.breaches
    assert report.counts["transfers"] == 3


def _plant(db: Database, statement: str, **params: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_check_finds_planted_breaches(books: Books) -> None:
    _prepared(books)
    # A balance row that no longer matches its entries.
    _plant(
        books.db,
        "UPDATE ledger_balances SET credits_posted = credits_posted + 7 WHERE account_id = :a",
        a=books.wallet.id,
    )
    # A limited account pushed past its limit (the row's copied flags cleared to get by the
    # database constraint).
    _plant(
        books.db,
        "UPDATE ledger_balances SET debits_must_not_exceed_credits = :f, "
        "debits_posted = debits_posted + 5000 WHERE account_id = :a",
        a=books.other_wallet.id,
        f=False,
    )
    # An extra entry: the transfer no longer balances.
    with books.db.transaction() as tx:
        spend = ledger.get_transfer(tx, "spend").entries[0]
    _plant(
        books.db,
        "INSERT INTO ledger_entries (transfer_id, account_id, shard, currency, direction, phase, "
        "amount_minor, effective_at, created_at) SELECT transfer_id, account_id, shard, currency, "
        "direction, phase, 1, effective_at, created_at FROM ledger_entries WHERE id = :e",
        e=spend.id,
    )
    # An open hold dropped from the index.
    _plant(books.db, "DELETE FROM ledger_open_holds")
    with books.db.read() as tx:
        report = ledger.check_invariants(tx)
    kinds = sorted({breach.kind for breach in report.breaches})
    assert kinds == [
        "balance_mismatch",
        "flags_mismatch",
        "hold_index",
        "limit_breach",
        "unbalanced_transfer",
    ]
    subjects = {breach.subject for breach in report.breaches if breach.kind == "balance_mismatch"}
    assert f"{books.wallet.id}#0" in subjects


def test_the_cli_exits_non_zero_with_a_readable_report(books: Books) -> None:
    _prepared(books)
    runner = CliRunner()
    url = database_url_of(books.db)
    clean = runner.invoke(app, ["--database-url", url, "ledger", "check"])
    assert clean.exit_code == 0, clean.output
    assert "ledger check passed" in clean.output
    _plant(
        books.db,
        "UPDATE ledger_balances SET credits_posted = credits_posted + 7 WHERE account_id = :a",
        a=books.wallet.id,
    )
    broken = runner.invoke(app, ["--database-url", url, "ledger", "check"])
    assert broken.exit_code == 1
    assert "balance_mismatch" in broken.output
    assert "credits_posted stored 1007, entries sum to 1000" in broken.output


def test_the_write_guard_probes_ids_by_primary_key_in_a_generic_plan(pg_db: Database) -> None:
    """psycopg prepares the write statements, so PostgreSQL may plan them generically. The
    guard's ``id = ANY(…)`` form got a sequential scan of the whole transfers table in a generic
    plan built on stale statistics (batches of 24 ran at half speed); the lateral form probes
    the primary key per id."""
    books = open_books(pg_db)
    books.run(*[move(f"g-{n}", books.funding, books.wallet, 1) for n in range(300)])
    statement = repository_pg._statement((True, True, False, False, False, False, False, False))
    guard = statement.split(",\nt AS", 1)[0].removeprefix("WITH ")
    with pg_db.transaction() as tx:
        connection = tx.session.connection()
        connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        connection.exec_driver_sql(
            "PREPARE tb_guard (text[]) AS WITH "
            + guard.replace("%(ids)s", "$1")
            + " SELECT ok FROM guard"
        )
        plan = "\n".join(
            row[0]
            for row in connection.exec_driver_sql("EXPLAIN EXECUTE tb_guard('{g-1,g-2,nope}')")
        )
        connection.exec_driver_sql("DEALLOCATE tb_guard")
    assert "pk_ledger_transfers" in plan, plan
    assert "Seq Scan on ledger_transfers" not in plan, plan
