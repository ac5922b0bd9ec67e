"""PostgreSQL: a batch of plain transfers reads its balances and asks for their row locks at
once, decides on what it read while the lock waits, and writes behind the lock; the write
checks, under the locks, that the balances still allow every transfer decided, or writes
nothing and the batch decides again under the locks. Here another transaction holds the rows
when the batch reads them and commits a change while the batch's lock waits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tallybook.db import Database, Tx
from tallybook.ledger import service as ledger
from tallybook.ledger.rejections import Rejection
from tallybook.ledger.service import engine, state
from tallybook.ledger.values import TransferStatus
from tests.ledger.conftest import Books, move, open_books


@pytest.fixture
def books(pg_db: Database) -> Books:
    return open_books(pg_db)


Meanwhile = Callable[[Callable[[Tx], Any]], None]


@pytest.fixture
def meanwhile(books: Books, monkeypatch: pytest.MonkeyPatch) -> Iterator[Meanwhile]:
    """``meanwhile(work)``: ``work`` runs in another transaction that is open (holding what it
    locked) when the next batch reads its balances, and commits once the batch has read them,
    while the batch's lock waits for it."""
    holding, release, committed = threading.Event(), threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    account_states = state.account_states

    def after_the_read(*args: Any, **kwargs: Any) -> Any:
        other = threads and threading.current_thread() is threads[0]
        if kwargs.get("unlocked") and holding.is_set() and not other and not release.is_set():
            release.set()
            assert committed.wait(30)
        return account_states(*args, **kwargs)

    def start(work: Callable[[Tx], Any]) -> None:
        def run() -> None:
            with books.db.transaction(actor="test") as tx:
                work(tx)
                holding.set()
                release.wait(30)
            committed.set()

        threads.append(threading.Thread(target=run))
        threads[0].start()
        assert holding.wait(30)

    monkeypatch.setattr(state, "account_states", after_the_read)
    # Short batches lock first; these small ones stand for the long ones that read first.
    monkeypatch.setattr(engine, "READ_FIRST_OPS_MIN", 1)
    yield start
    release.set()
    for thread in threads:
        thread.join(30)
    assert committed.is_set(), "the other transaction never committed"


def test_balances_spent_meanwhile_send_the_batch_to_decide_again(
    books: Books, meanwhile: Meanwhile
) -> None:
    books.fund(books.wallet, 100)
    meanwhile(lambda tx: ledger.create_transfer(tx, move("other", books.wallet, books.revenue, 50)))
    [result] = books.run(move("late", books.wallet, books.revenue, 60))
    assert result.status is TransferStatus.FAILED
    assert result.code is Rejection.EXCEEDS_CREDITS
    assert books.available(books.wallet) == 50
    assert books.balance_values(books.wallet) == (50, 100, 0, 0)
    with books.db.read() as tx:
        assert ledger.check_invariants(tx).ok


def test_balances_grown_meanwhile_keep_the_decision_and_add_to_them(
    books: Books, meanwhile: Meanwhile
) -> None:
    """The write adds its increments to the balances as they are under the locks: setting the
    values it computed from the read would lose the other transaction's credit."""
    books.fund(books.wallet, 100)
    meanwhile(lambda tx: ledger.create_transfer(tx, move("more", books.funding, books.wallet, 30)))
    results = books.run(
        move("a", books.wallet, books.revenue, 60), move("b", books.wallet, books.other_wallet, 40)
    )
    assert [r.status for r in results] == [TransferStatus.CREATED, TransferStatus.CREATED]
    assert books.balance_values(books.wallet) == (100, 130, 0, 0)
    assert books.available(books.other_wallet) == 40
    with books.db.read() as tx:
        assert ledger.check_invariants(tx).ok


def test_the_room_needed_is_the_deepest_point_of_the_batch_not_its_end(
    books: Books, meanwhile: Meanwhile
) -> None:
    """Read at 100: spend 100, then receive 100, then spend 50. The batch ends at 50, but its
    first transfer needs all 100; with 40 spent meanwhile it must not pass."""
    books.fund(books.wallet, 100)
    books.fund(books.other_wallet, 100)
    meanwhile(lambda tx: ledger.create_transfer(tx, move("other", books.wallet, books.revenue, 40)))
    results = books.run(
        move("out", books.wallet, books.revenue, 100),
        move("in", books.other_wallet, books.wallet, 100),
        move("out-again", books.wallet, books.revenue, 50),
    )
    # Decided again under the locks, at 60: the first spend fails, the rest pass.
    assert [r.status for r in results] == [
        TransferStatus.FAILED,
        TransferStatus.CREATED,
        TransferStatus.CREATED,
    ]
    assert books.available(books.wallet) == 60 + 100 - 50
    with books.db.read() as tx:
        assert ledger.check_invariants(tx).ok


def test_an_account_closed_meanwhile_refuses_the_batch(books: Books, meanwhile: Meanwhile) -> None:
    books.fund(books.wallet, 100)
    meanwhile(lambda tx: ledger.close_account(tx, books.other_wallet.id))
    [result] = books.run(move("to-closed", books.wallet, books.other_wallet, 10))
    assert result.code is Rejection.ACCOUNT_CLOSED
    assert books.available(books.wallet) == 100


def test_a_repeat_committed_meanwhile_is_answered_as_existing(
    books: Books, meanwhile: Meanwhile
) -> None:
    """The same id committed by another request between the read and the locks: the write's
    guard, whose snapshot follows the locks, sees it; the batch answers ``exists``."""
    books.fund(books.wallet, 100)
    transfer = move("twice", books.wallet, books.revenue, 10)
    meanwhile(lambda tx: ledger.create_transfer(tx, transfer))
    [result] = books.run(transfer)
    assert result.status is TransferStatus.EXISTS
    assert books.available(books.wallet) == 90


def test_a_long_batch_reads_first_and_answers_as_in_order(books: Books) -> None:
    """A batch of ``READ_FIRST_OPS_MIN`` or more reads first; one whose wallet runs dry midway
    decides again under the locks and answers exactly as transfers applied in order."""
    assert engine.READ_FIRST_OPS_MIN <= 20
    books.fund(books.wallet, 100)
    spends = [move(f"spend-{n}", books.wallet, books.revenue, 7) for n in range(20)]
    results = books.run(*spends)
    assert [r.status for r in results] == [TransferStatus.CREATED] * 14 + [
        TransferStatus.FAILED
    ] * 6
    assert {r.code for r in results[14:]} == {Rejection.EXCEEDS_CREDITS}
    assert books.available(books.wallet) == 100 - 14 * 7
    more = [move(f"more-{n}", books.funding, books.other_wallet, 5) for n in range(20)]
    assert all(r.status is TransferStatus.CREATED for r in books.run(*more))
    assert books.balance_values(books.other_wallet) == (0, 100, 0, 0)
    with books.db.read() as tx:
        assert ledger.check_invariants(tx).ok
