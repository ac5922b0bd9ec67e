"""Holds (pending transfers): balances show them apart from posted amounts, limits count them,
and each is resolved once: posted (in full or in part), voided, or expired after its timeout."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tallybook.db import Database
from tallybook.jobs.registry import JobContext
from tallybook.kit.clock import TestClock
from tallybook.ledger import service as ledger
from tallybook.ledger.rejections import Rejection
from tallybook.ledger.values import (
    HoldStatus,
    PostPending,
    TransferKind,
    VoidPending,
    expiry_transfer_id,
)
from tests.ledger.conftest import Books, journal_snapshot, move


def test_a_hold_is_pending_and_counts_against_the_limit(books: Books) -> None:
    books.fund(books.wallet, 1000)
    hold = books.one(move("hold", books.wallet, books.revenue, 700, pending=True))
    assert hold.transfer is not None and hold.transfer.hold_status is HoldStatus.PENDING
    assert books.balance_values(books.wallet) == (0, 1000, 700, 0)
    with books.db.read() as tx:
        wallet = ledger.balance(tx, books.wallet.id)
    assert (wallet.posted.amount_minor, wallet.pending.amount_minor) == (1000, -700)
    assert wallet.available.amount_minor == 300
    refused = books.one(move("too-much", books.wallet, books.revenue, 301))
    assert refused.code is Rejection.EXCEEDS_CREDITS
    assert books.one(move("fits", books.wallet, books.revenue, 300)).ok


def test_post_in_full(books: Books) -> None:
    books.fund(books.wallet, 1000)
    books.one(move("hold", books.wallet, books.revenue, 700, pending=True))
    posted = books.one(PostPending("post", "hold"))
    assert posted.ok and posted.transfer is not None
    assert posted.transfer.kind is TransferKind.POST_PENDING
    assert books.balance_values(books.wallet) == (700, 1000, 0, 0)
    assert books.balance_values(books.revenue) == (0, 700, 0, 0)
    with books.db.read() as tx:
        hold = ledger.get_transfer(tx, "hold")
    assert (hold.hold_status, hold.resolved_by_id) == (HoldStatus.POSTED, "post")


def test_post_less_than_held_releases_the_rest(books: Books) -> None:
    books.fund(books.wallet, 1000)
    books.one(move("hold", books.wallet, books.revenue, 700, pending=True))
    assert books.one(PostPending("post", "hold", amount_minor=250)).ok
    assert books.balance_values(books.wallet) == (250, 1000, 0, 0)
    assert books.available(books.wallet) == 750


def test_void_releases_everything(books: Books) -> None:
    books.fund(books.wallet, 1000)
    books.one(move("hold", books.wallet, books.revenue, 700, pending=True))
    assert books.one(VoidPending("void", "hold", reason_code="cancelled")).ok
    assert books.balance_values(books.wallet) == (0, 1000, 0, 0)
    assert books.balance_values(books.revenue) == (0, 0, 0, 0)


def test_a_hold_is_resolved_once(books: Books) -> None:
    books.fund(books.wallet, 1000)
    books.one(move("hold", books.wallet, books.revenue, 700, pending=True))
    assert books.one(PostPending("post", "hold")).ok
    before = journal_snapshot(books.db)
    assert (
        books.one(PostPending("post-2", "hold")).code is Rejection.PENDING_TRANSFER_ALREADY_POSTED
    )
    assert books.one(VoidPending("void", "hold")).code is Rejection.PENDING_TRANSFER_ALREADY_POSTED
    # The first post, retried, is its idempotent replay.
    assert books.one(PostPending("post", "hold")).status == "exists"
    assert journal_snapshot(books.db) == before


def test_partial_post_needs_a_two_leg_hold(books: Books) -> None:
    from tallybook.ledger.values import Leg, TransferRequest

    books.fund(books.wallet, 1000)
    split = TransferRequest(
        "split",
        [
            Leg(books.wallet.id, "debit", 700, "USD"),
            Leg(books.revenue.id, "credit", 500, "USD"),
            Leg(books.funding.id, "credit", 200, "USD"),
        ],
        "usage",
        pending=True,
    )
    assert books.one(split).ok
    refused = books.one(PostPending("post", "split", amount_minor=100))
    assert refused.code is Rejection.PENDING_AMOUNT_NEEDS_TWO_LEGS
    assert books.one(PostPending("post", "split")).ok
    assert books.balance_values(books.funding)[1] == 200


def test_hold_and_resolution_in_one_batch(books: Books) -> None:
    books.fund(books.wallet, 1000)
    results = books.run(
        move("hold", books.wallet, books.revenue, 700, pending=True),
        PostPending("post", "hold", amount_minor=100),
        VoidPending("void", "hold"),
    )
    assert [r.code for r in results] == [None, None, Rejection.PENDING_TRANSFER_ALREADY_POSTED]
    assert books.balance_values(books.wallet) == (100, 1000, 0, 0)
    with books.db.read() as tx:
        assert ledger.check_invariants(tx).ok


class TestExpiry:
    def test_a_timed_out_hold_cannot_be_posted_and_the_job_expires_it(
        self, books: Books, clock: TestClock
    ) -> None:
        books.fund(books.wallet, 1000)
        books.one(move("hold", books.wallet, books.revenue, 700, pending=True, timeout_seconds=60))
        clock.advance(seconds=59)
        with books.db.transaction() as tx:
            assert ledger.expire_due_holds(tx) == []
        clock.advance(seconds=1)
        before = journal_snapshot(books.db)
        assert books.one(PostPending("late", "hold")).code is Rejection.PENDING_TRANSFER_EXPIRED
        assert journal_snapshot(books.db) == before
        report = ledger.run_expire_holds(books.db, JobContext(owner="test"))
        assert report == {"expired": 1}
        assert books.balance_values(books.wallet) == (0, 1000, 0, 0)
        with books.db.read() as tx:
            hold = ledger.get_transfer(tx, "hold")
            expiry = ledger.get_transfer(tx, expiry_transfer_id("hold"))
        assert hold.hold_status is HoldStatus.EXPIRED
        assert expiry.kind is TransferKind.EXPIRE_PENDING

    def test_expiry_is_idempotent(self, books: Books, clock: TestClock) -> None:
        books.fund(books.wallet, 1000)
        books.run(
            *[
                move(f"hold-{n}", books.wallet, books.revenue, 10, pending=True, timeout_seconds=5)
                for n in range(3)
            ],
            move("forever", books.wallet, books.revenue, 10, pending=True),
        )
        clock.advance(minutes=1)
        with books.db.transaction() as tx:
            assert len(ledger.expire_due_holds(tx)) == 3
        with books.db.transaction() as tx:
            assert ledger.expire_due_holds(tx) == []
        assert ledger.run_expire_holds(books.db, JobContext(owner="test")) == {"expired": 0}
        assert books.balance_values(books.wallet) == (0, 1000, 10, 0)

    def test_a_hold_without_timeout_never_expires(self, books: Books, clock: TestClock) -> None:
        books.fund(books.wallet, 100)
        books.one(move("hold", books.wallet, books.revenue, 10, pending=True))
        clock.advance(timedelta(days=400))
        with books.db.transaction() as tx:
            assert ledger.expire_due_holds(tx) == []
        assert books.one(PostPending("post", "hold")).ok


def test_void_is_allowed_on_a_closed_account_but_closing_waits_for_holds(db: Database) -> None:
    from tallybook.kit.errors import Conflict
    from tests.ledger.conftest import open_books

    books = open_books(db)
    books.fund(books.wallet, 100)
    books.one(move("hold", books.wallet, books.revenue, 10, pending=True))
    with db.transaction() as tx, pytest.raises(Conflict) as error:
        ledger.close_account(tx, books.wallet.id)
    assert error.value.code == "account_has_pending"
    assert books.one(VoidPending("void", "hold")).ok
    with db.transaction() as tx:
        closed = ledger.close_account(tx, books.wallet.id)
        assert closed.closed_at is not None
        assert ledger.close_account(tx, books.wallet.id).closed_at == closed.closed_at
    refused = books.one(move("after", books.funding, books.wallet, 5))
    assert (refused.code, refused.param) == (Rejection.ACCOUNT_CLOSED, "legs[1].account_id")
