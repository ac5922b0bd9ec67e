"""Corrections are reversing transfers linked to the original (never edits); linked batches
apply all of their transfers or none."""

from __future__ import annotations

from tallybook.kit.pagination import PageRequest
from tallybook.ledger import service as ledger
from tallybook.ledger.rejections import Rejection
from tallybook.ledger.values import PostPending, ReverseTransfer, TransferKind, TransferStatus
from tests.ledger.conftest import Books, journal_snapshot, move


class TestReversals:
    def test_a_full_reversal_mirrors_the_legs_and_links_to_the_original(self, books: Books) -> None:
        books.fund(books.wallet, 1000)
        books.one(move("spend", books.wallet, books.revenue, 400))
        reversal = books.one(ReverseTransfer("refund", "spend", "refund"))
        assert reversal.transfer is not None
        assert reversal.transfer.kind is TransferKind.REVERSAL
        assert reversal.transfer.reverses_id == "spend"
        assert [(e.account_id, e.direction) for e in reversal.transfer.entries] == [
            (books.wallet.id, "credit"),
            (books.revenue.id, "debit"),
        ]
        assert books.available(books.wallet) == 1000
        with books.db.read() as tx:
            assert ledger.get_transfer(tx, "spend").reversed_by_ids == ("refund",)

    def test_reversing_twice_is_refused(self, books: Books) -> None:
        books.fund(books.wallet, 1000)
        books.one(move("spend", books.wallet, books.revenue, 400))
        books.one(ReverseTransfer("refund", "spend", "refund"))
        before = journal_snapshot(books.db)
        again = books.one(ReverseTransfer("refund-2", "spend", "refund"))
        assert again.code is Rejection.TRANSFER_ALREADY_REVERSED
        assert journal_snapshot(books.db) == before

    def test_partial_reversals_add_up_to_at_most_the_original(self, books: Books) -> None:
        books.fund(books.wallet, 1000)
        books.one(move("spend", books.wallet, books.revenue, 400))
        assert books.one(ReverseTransfer("r1", "spend", "refund", amount_minor=150)).ok
        too_much = books.one(ReverseTransfer("r2", "spend", "refund", amount_minor=251))
        assert too_much.code is Rejection.REVERSAL_AMOUNT_EXCEEDED
        rest = books.one(ReverseTransfer("r3", "spend", "refund"))
        assert rest.transfer is not None
        assert [e.amount_minor for e in rest.transfer.entries] == [250, 250]
        assert books.available(books.wallet) == 1000
        assert books.one(ReverseTransfer("r4", "spend", "refund")).code is (
            Rejection.TRANSFER_ALREADY_REVERSED
        )

    def test_a_reversal_respects_limits(self, books: Books) -> None:
        """Clawing back a top-up that was already spent would take the wallet negative."""
        books.fund(books.wallet, 500)
        with books.db.read() as tx:
            top_up = ledger.entries(tx, books.wallet.id, PageRequest()).data[0].transfer_id
        books.one(move("spend", books.wallet, books.revenue, 400))
        result = books.one(ReverseTransfer("claw", top_up, "chargeback"))
        assert result.code is Rejection.EXCEEDS_CREDITS

    def test_reversal_of_a_posted_hold_and_not_of_the_hold(self, books: Books) -> None:
        books.fund(books.wallet, 1000)
        books.one(move("hold", books.wallet, books.revenue, 300, pending=True))
        books.one(PostPending("post", "hold", amount_minor=200))
        assert books.one(ReverseTransfer("r-hold", "hold", "x")).code is (
            Rejection.TRANSFER_NOT_REVERSIBLE
        )
        reversal = books.one(ReverseTransfer("r-post", "post", "x"))
        assert reversal.transfer is not None
        assert [e.amount_minor for e in reversal.transfer.entries] == [200, 200]
        assert books.available(books.wallet) == 1000


class TestLinkedBatches:
    def test_all_succeed_together(self, books: Books) -> None:
        books.fund(books.wallet, 1000)
        results = books.run(
            move("l1", books.wallet, books.revenue, 300),
            move("l2", books.wallet, books.other_wallet, 300),
            linked=True,
        )
        assert [r.status for r in results] == ["created", "created"]
        assert results[0].transfer is not None and results[0].transfer.batch_id is not None
        assert results[0].transfer.batch_id == results[1].transfer.batch_id  # type: ignore[union-attr]

    def test_a_failing_member_fails_them_all(self, books: Books) -> None:
        books.fund(books.wallet, 1000)
        before = journal_snapshot(books.db)
        results = books.run(
            move("l1", books.wallet, books.revenue, 300),
            move("l2", books.wallet, books.other_wallet, 900),  # not enough left
            move("l3", books.wallet, books.revenue, 10),
            linked=True,
        )
        assert [r.code for r in results] == [
            Rejection.LINKED_EVENT_FAILED,
            Rejection.EXCEEDS_CREDITS,
            Rejection.LINKED_EVENT_FAILED,
        ]
        after = journal_snapshot(books.db)
        # Only the failing member's recorded failure was written; no balance moved.
        assert after["balances"] == before["balances"]
        assert after["counts"]["ledger_transfers"] == before["counts"]["ledger_transfers"]
        assert after["counts"]["ledger_transfer_failures"] == 1
        # The others' ids are not burnt: they can go in a new batch.
        retry = books.run(
            move("l1", books.wallet, books.revenue, 300),
            move("l3", books.wallet, books.revenue, 10),
            linked=True,
        )
        assert all(r.status is TransferStatus.CREATED for r in retry)

    def test_an_input_error_fails_the_batch_and_records_nothing(self, books: Books) -> None:
        books.fund(books.wallet, 1000)
        before = journal_snapshot(books.db)
        results = books.run(
            move("l1", books.wallet, books.revenue, 300),
            move("l2", books.wallet, books.revenue, 0),
            linked=True,
        )
        assert [r.code for r in results] == [
            Rejection.LINKED_EVENT_FAILED,
            Rejection.AMOUNT_NOT_POSITIVE,
        ]
        assert journal_snapshot(books.db) == before

    def test_a_retried_linked_batch_answers_exists(self, books: Books) -> None:
        books.fund(books.wallet, 1000)
        batch = [
            move("l1", books.wallet, books.revenue, 300),
            move("l2", books.wallet, books.revenue, 300),
        ]
        books.run(*batch, linked=True)
        again = books.run(*batch, linked=True)
        assert [r.status for r in again] == ["exists", "exists"]
        assert books.available(books.wallet) == 400

    def test_a_duplicate_of_an_undone_member_is_not_reported_as_existing(
        self, books: Books
    ) -> None:
        """A linked batch that sends one id twice and then fails: the first copy is undone, so
        the second must not answer ``exists`` (nothing with that id was stored)."""
        books.fund(books.wallet, 1000)
        twice = move("l1", books.wallet, books.revenue, 300)
        results = books.run(
            twice,
            twice,
            move("l2", books.wallet, books.other_wallet, 900),  # not enough left
            linked=True,
        )
        assert [r.code for r in results] == [
            Rejection.LINKED_EVENT_FAILED,
            Rejection.LINKED_EVENT_FAILED,
            Rejection.EXCEEDS_CREDITS,
        ]
        assert all(r.transfer is None for r in results)
        with books.db.read() as tx:
            assert ledger.transfers_by_id(tx, ["l1"]) == {}
