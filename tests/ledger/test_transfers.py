"""Transfers: balanced legs move balances; a client id is the idempotency key; limits hold;
a state failure stays failed under its id; batches apply each transfer on its own."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from tallybook.db import Database
from tallybook.kit.clock import TestClock
from tallybook.kit.ids import new_id
from tallybook.ledger import service as ledger
from tallybook.ledger.rejections import Rejection
from tallybook.ledger.values import (
    AccountKind,
    AccountSpec,
    Leg,
    TransferKind,
    TransferRequest,
    TransferStatus,
)
from tests.ledger.conftest import Books, journal_snapshot, move


def test_a_transfer_moves_both_balances_and_is_returned_with_its_legs(books: Books) -> None:
    result = books.one(move("t-1", books.funding, books.wallet, 1500, metadata={"note": "hi"}))
    assert result.status is TransferStatus.CREATED
    assert result.transfer is not None
    assert result.transfer.kind is TransferKind.STANDARD
    assert [(e.account_id, e.direction, e.amount_minor) for e in result.transfer.entries] == [
        (books.funding.id, "debit", 1500),
        (books.wallet.id, "credit", 1500),
    ]
    assert books.balance_values(books.funding) == (1500, 0, 0, 0)
    assert books.balance_values(books.wallet) == (0, 1500, 0, 0)
    with books.db.read() as tx:
        stored = ledger.get_transfer(tx, "t-1")
        assert ledger.balance(tx, books.wallet.id).posted.amount_minor == 1500
        assert ledger.balance(tx, books.funding.id).posted.amount_minor == 1500
    assert stored.metadata == {"note": "hi"}
    assert [e.amount_minor for e in stored.entries] == [1500, 1500]


def test_multi_leg_and_multi_currency_transfers_balance_per_currency(db: Database) -> None:
    with db.transaction() as tx:
        usd_cash = ledger.open_account(tx, AccountSpec.system("cash", "USD", AccountKind.ASSET))
        eur_cash = ledger.open_account(tx, AccountSpec.system("cash", "EUR", AccountKind.ASSET))
        usd_fx = ledger.open_account(tx, AccountSpec.system("fx", "USD", AccountKind.EQUITY))
        eur_fx = ledger.open_account(tx, AccountSpec.system("fx", "EUR", AccountKind.EQUITY))
        result = ledger.create_transfer(
            tx,
            TransferRequest(
                id="fx-1",
                legs=[
                    Leg(usd_cash.id, "credit", 1100, "USD"),
                    Leg(usd_fx.id, "debit", 1100, "USD"),
                    Leg(eur_fx.id, "credit", 1000, "EUR"),
                    Leg(eur_cash.id, "debit", 1000, "eur"),
                ],
                reason_code="fx.convert",
            ),
        )
    assert result.status is TransferStatus.CREATED
    with db.read() as tx:
        assert ledger.balance(tx, eur_cash.id).posted.format() == "10.00 EUR"
        assert ledger.check_invariants(tx).ok


class TestIdempotency:
    def test_the_same_id_and_content_returns_the_original_and_writes_once(
        self, books: Books, clock: TestClock
    ) -> None:
        first = books.one(move("same", books.funding, books.wallet, 100))
        before = journal_snapshot(books.db)
        clock.advance(minutes=5)  # "now" moved on: an omitted effective_at still matches
        again = books.one(move("same", books.funding, books.wallet, 100))
        assert again.status is TransferStatus.EXISTS
        assert first.transfer is not None and again.transfer is not None
        assert again.transfer.created_at == first.transfer.created_at
        assert [replace(e, id=None) for e in again.transfer.entries] == list(first.transfer.entries)
        assert journal_snapshot(books.db) == before

    def test_different_content_is_a_conflict_naming_the_field(self, books: Books) -> None:
        books.one(move("same", books.funding, books.wallet, 100, reason_code="a"))
        before = journal_snapshot(books.db)
        cases = [
            (
                move("same", books.funding, books.wallet, 101, reason_code="a"),
                "legs[0].amount_minor",
            ),
            (
                move("same", books.funding, books.other_wallet, 100, reason_code="a"),
                "legs[1].account_id",
            ),
            (move("same", books.funding, books.wallet, 100, reason_code="b"), "reason_code"),
            (
                move(
                    "same", books.funding, books.wallet, 100, reason_code="a", metadata={"k": "v"}
                ),
                "metadata",
            ),
            (move("same", books.funding, books.wallet, 100, reason_code="a", pending=True), "kind"),
        ]
        for request, param in cases:
            result = books.one(request)
            assert result.status is TransferStatus.FAILED
            assert result.code is not None and result.code.value.startswith(
                "exists_with_different_"
            )
            assert result.param == param, (result.code, result.param)
        assert journal_snapshot(books.db) == before

    def test_a_state_failure_stays_failed_under_its_id(self, books: Books) -> None:
        overspend = move("spend-1", books.wallet, books.revenue, 500)
        first = books.one(overspend)
        assert first.code is Rejection.EXCEEDS_CREDITS
        assert first.recorded_failure
        books.fund(books.wallet, 10_000)  # now there would be enough
        retried = books.one(overspend)
        assert retried.status is TransferStatus.FAILED
        assert retried.code is Rejection.EXCEEDS_CREDITS
        assert retried.replayed
        assert books.available(books.wallet) == 10_000
        # A new id is how a caller tries again.
        assert books.one(move("spend-2", books.wallet, books.revenue, 500)).ok

    def test_a_failed_id_reused_with_different_content_names_the_field(self, books: Books) -> None:
        books.one(move("spend-1", books.wallet, books.revenue, 500))
        result = books.one(move("spend-1", books.wallet, books.revenue, 400))
        assert result.code is Rejection.EXISTS_WITH_DIFFERENT_LEGS
        assert result.param == "legs[0].amount_minor"

    def test_duplicates_inside_one_batch(self, books: Books) -> None:
        books.fund(books.wallet, 1000)
        results = books.run(
            move("d", books.wallet, books.revenue, 100),
            move("d", books.wallet, books.revenue, 100),
            move("d", books.wallet, books.revenue, 200),
        )
        assert [r.status for r in results] == ["created", "exists", "failed"]
        assert results[2].code is Rejection.EXISTS_WITH_DIFFERENT_LEGS
        assert books.available(books.wallet) == 900


class TestLimits:
    def test_a_wallet_can_spend_to_zero_and_not_below(self, books: Books) -> None:
        books.fund(books.wallet, 1000)
        assert books.one(move("a", books.wallet, books.revenue, 600)).ok
        assert books.one(move("b", books.wallet, books.revenue, 400)).ok
        failed = books.one(move("c", books.wallet, books.revenue, 1))
        assert failed.code is Rejection.EXCEEDS_CREDITS
        assert failed.param == "legs[0].account_id"
        assert books.available(books.wallet) == 0

    def test_the_mirror_limit(self, db: Database) -> None:
        with db.transaction() as tx:
            capped = ledger.open_account(
                tx,
                AccountSpec(
                    "receivable", "USD", AccountKind.ASSET, credits_must_not_exceed_debits=True
                ),
            )
            other = ledger.open_account(tx, AccountSpec.system("other", "USD", AccountKind.ASSET))
            results = ledger.create_transfers(
                tx,
                [
                    # Crediting the capped account before anything is debited to it is refused.
                    move("r1", other, capped, 100),
                    move("r2", capped, other, 300),
                    move("r3", other, capped, 300),
                ],
            )
        assert [r.code for r in results] == [Rejection.EXCEEDS_DEBITS, None, None]

    def test_in_a_batch_transfer_5_may_fail_while_6_succeeds(self, books: Books) -> None:
        books.fund(books.wallet, 1000)
        results = books.run(
            *[move(f"b-{n}", books.wallet, books.revenue, 300) for n in range(1, 5)],
            move("b-5", books.wallet, books.revenue, 200),
            move("b-6", books.wallet, books.revenue, 100),
        )
        assert [r.status for r in results] == [
            "created",
            "created",
            "created",
            "failed",
            "failed",
            "created",
        ]
        assert books.available(books.wallet) == 0


def test_effective_at_may_be_backdated_but_not_in_the_future(
    books: Books, clock: TestClock
) -> None:
    past = clock.now() - timedelta(days=3)
    assert books.one(move("past", books.funding, books.wallet, 100, effective_at=past)).ok
    future = books.one(
        move(
            "future",
            books.funding,
            books.wallet,
            100,
            effective_at=clock.now() + timedelta(seconds=1),
        )
    )
    assert future.code is Rejection.EFFECTIVE_AT_IN_FUTURE


def test_an_unknown_customer_cannot_own_an_account(db: Database) -> None:
    from tallybook.kit.errors import InvalidRequest

    with db.transaction() as tx, pytest.raises(InvalidRequest) as error:
        ledger.open_account(tx, AccountSpec.customer_credit("cus_" + "0" * 26, "USD"))
    assert error.value.code == "account_owner_not_found"


def test_ids_and_reason_codes_keep_a_safe_alphabet(books: Books) -> None:
    for bad_id in ("", "x" * 65, "with space", "~expire:x", "ünïcode"):
        result = books.one(move(bad_id, books.funding, books.wallet, 1))
        assert result.code is Rejection.TRANSFER_ID_INVALID, bad_id
    result = books.one(
        move(new_id("ok")[-20:], books.funding, books.wallet, 1, reason_code="Bad Code")
    )
    assert result.code is Rejection.REASON_CODE_INVALID
