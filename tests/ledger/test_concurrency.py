"""Concurrency on PostgreSQL with real parallel connections: no lost updates, no limit breached
by racing transfers, no deadlock whatever order legs come in, a hot sharded account that sums
right, one outcome per transfer id and per hold."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

from tallybook.db import Database
from tallybook.ledger import service as ledger
from tallybook.ledger.rejections import Rejection
from tallybook.ledger.values import (
    AccountKind,
    AccountSpec,
    Leg,
    PostPending,
    TransferRequest,
    TransferResult,
    TransferStatus,
    VoidPending,
)
from tests.ledger.conftest import Books, move, open_books

SPENDERS = 16


def _in_parallel(workers: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(n)`` on ``workers`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(workers)
    results: list[Any] = [None] * workers
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait()
            results[n] = work(n)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    if errors:
        raise errors[0]
    return results


def test_sixteen_connections_spending_one_wallet(pg_db: Database) -> None:
    """16 connections race to spend one wallet (and credit one hot revenue account). The wallet
    never goes below zero and what was spent is exactly the sum of the successes."""
    books = open_books(pg_db)
    funded = 5_000
    books.fund(books.wallet, funded)
    rng = random.Random(7)
    plans = [[rng.randint(10, 90) for _ in range(12)] for _ in range(SPENDERS)]

    def spend(n: int) -> list[tuple[int, TransferResult]]:
        outcomes = []
        for k, amount in enumerate(plans[n]):
            request = move(f"spend-{n}-{k}", books.wallet, books.revenue, amount)
            with pg_db.transaction(actor=f"spender-{n}") as tx:
                outcomes.append((amount, ledger.create_transfer(tx, request)))
        return outcomes

    outcomes = [o for worker in _in_parallel(SPENDERS, spend) for o in worker]
    succeeded = sum(amount for amount, r in outcomes if r.status is TransferStatus.CREATED)
    failed = [r for _, r in outcomes if r.status is TransferStatus.FAILED]
    assert sum(sum(p) for p in plans) > funded, "the plan must overspend for the test to mean much"
    assert failed and all(r.code is Rejection.EXCEEDS_CREDITS for r in failed)
    with pg_db.read() as tx:
        wallet = ledger.balance(tx, books.wallet.id)
        revenue = ledger.balance(tx, books.revenue.id)
        report = ledger.check_invariants(tx)
    assert wallet.available.amount_minor >= 0
    assert wallet.debits_posted.amount_minor == succeeded
    assert revenue.posted.amount_minor == succeeded
    assert report.ok, report.breaches


def test_opposite_lock_orders_do_not_deadlock(pg_db: Database) -> None:
    """Batches touch the same accounts with their legs (and their transfers) in opposite
    orders. Locks are taken in account order in one statement, so none waits in a cycle; a
    deadlock would surface here as an error from PostgreSQL's deadlock detector."""
    with pg_db.transaction() as tx:
        accounts = [
            ledger.open_account(tx, AccountSpec.system(f"pool_{n}", "USD", AccountKind.ASSET))
            for n in range(4)
        ]
    a, b, c, d = (account.id for account in accounts)
    rounds = 30

    def legs(debit: str, credit: str, amount: int) -> list[Leg]:
        return [Leg(debit, "debit", amount, "USD"), Leg(credit, "credit", amount, "USD")]

    def worker(n: int) -> int:
        forward = n % 2 == 0
        for k in range(rounds):
            if forward:
                batch = [
                    TransferRequest(f"w{n}-{k}-1", legs(a, b, 1), "x"),
                    TransferRequest(f"w{n}-{k}-2", legs(c, d, 1), "x"),
                ]
            else:  # the same pairs, reversed in every way
                batch = [
                    TransferRequest(f"w{n}-{k}-1", list(reversed(legs(d, c, 1))), "x"),
                    TransferRequest(f"w{n}-{k}-2", list(reversed(legs(b, a, 1))), "x"),
                ]
            with pg_db.transaction() as tx:
                results = ledger.create_transfers(tx, batch)
            assert all(r.status is TransferStatus.CREATED for r in results)
        return rounds

    _in_parallel(8, worker)
    with pg_db.read() as tx:
        # Four workers moved a→b and c→d, four moved d→c and b→a: each pair nets to zero.
        totals = [ledger.balance(tx, account.id) for account in accounts]
        report = ledger.check_invariants(tx)
    assert [t.debits_posted.amount_minor for t in totals] == [rounds * 4] * 4
    assert [t.posted.amount_minor for t in totals] == [0, 0, 0, 0]
    assert report.ok, report.breaches


def test_a_hot_sharded_account_sums_right_and_spreads_writers(pg_db: Database) -> None:
    books = open_books(pg_db)
    wallets = []
    with pg_db.transaction() as tx:
        from tests.ledger.conftest import new_customer

        for _ in range(8):
            wallets.append(
                ledger.open_account(tx, AccountSpec.customer_credit(new_customer(tx), "USD"))
            )
    for wallet in wallets:
        books.fund(wallet, 10_000)

    def burn(n: int) -> int:
        total = 0
        for k in range(25):
            with pg_db.transaction() as tx:
                result = ledger.create_transfer(
                    tx, move(f"burn-{n}-{k}", wallets[n], books.revenue, 1 + k)
                )
            assert result.ok, result
            total += 1 + k
        return total

    spent = sum(_in_parallel(8, burn))
    with pg_db.read() as tx:
        revenue = ledger.balance(tx, books.revenue.id)
        shards = (
            tx.session.connection()
            .exec_driver_sql(
                "SELECT shard, credits_posted FROM ledger_balances WHERE account_id = %(a)s",
                {"a": books.revenue.id},
            )
            .all()
        )
        report = ledger.check_invariants(tx)
    assert revenue.posted.amount_minor == spent
    assert sum(row[1] for row in shards) == spent
    assert len([row for row in shards if row[1] > 0]) > 1
    assert report.ok, report.breaches


def test_the_same_id_sent_concurrently_is_created_once(pg_db: Database) -> None:
    books = open_books(pg_db)
    books.fund(books.wallet, 1000)
    request = move("once", books.wallet, books.revenue, 100)

    def send(_: int) -> TransferStatus:
        with pg_db.transaction() as tx:
            return ledger.create_transfer(tx, request).status

    statuses = _in_parallel(8, send)
    assert sorted(statuses) == ["created"] + ["exists"] * 7
    assert books.available(books.wallet) == 900


def test_a_hold_posted_and_voided_at_once_is_resolved_once(pg_db: Database) -> None:
    books = open_books(pg_db)
    books.fund(books.wallet, 1000)
    books.one(move("hold", books.wallet, books.revenue, 400, pending=True))

    def resolve(n: int) -> TransferResult:
        op = PostPending(f"post-{n}", "hold") if n % 2 else VoidPending(f"void-{n}", "hold")
        with pg_db.transaction() as tx:
            return ledger.create_transfer(tx, op)

    results = _in_parallel(8, resolve)
    assert sum(1 for r in results if r.ok) == 1
    assert {r.code for r in results if not r.ok} <= {
        Rejection.PENDING_TRANSFER_ALREADY_POSTED,
        Rejection.PENDING_TRANSFER_ALREADY_VOIDED,
    }
    with pg_db.read() as tx:
        assert ledger.check_invariants(tx).ok


def test_a_transfer_waiting_on_a_closing_account_sees_it_closed(pg_db: Database) -> None:
    """The close holds its locks (uncommitted) while a transfer to the account waits for them.
    When the close commits, the waiting transfer must see the account closed, not the stale
    row it would have read before the wait."""
    books: Books = open_books(pg_db)
    books.fund(books.wallet, 1000)
    closing = threading.Event()

    def act(n: int) -> Any:
        if n == 0:
            with pg_db.transaction() as tx:
                ledger.close_account(tx, books.wallet.id)
                closing.set()
                # Give the other connection time to block on our locks before we commit.
                threading.Event().wait(0.5)
            return None
        closing.wait(timeout=30)
        with pg_db.transaction() as tx:
            return ledger.create_transfer(tx, move("late", books.wallet, books.revenue, 1))

    _, late = _in_parallel(2, act)
    assert late.code is Rejection.ACCOUNT_CLOSED
    assert books.available(books.wallet) == 1000
