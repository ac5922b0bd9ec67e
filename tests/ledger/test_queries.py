"""Reads: balances now and as of any past instant (with backdated entries and ``known_at``),
an account's entries with cursor pagination, accounts get-or-create and listing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tallybook.db import Database
from tallybook.kit.clock import TestClock
from tallybook.kit.errors import IdempotencyError, InvalidRequest, NotFound
from tallybook.kit.pagination import PageRequest
from tallybook.ledger import service as ledger
from tallybook.ledger.values import AccountKind, AccountSpec, PostPending
from tests.ledger.conftest import Books, move, new_customer


class TestAsOf:
    def test_balance_as_of_past_instants(self, books: Books, clock: TestClock) -> None:
        start = clock.now()
        books.fund(books.wallet, 1000)
        clock.advance(hours=1)
        books.one(move("s1", books.wallet, books.revenue, 100))
        clock.advance(hours=1)
        books.one(move("h1", books.wallet, books.revenue, 50, pending=True))
        clock.advance(hours=1)
        books.one(PostPending("p1", "h1"))
        with books.db.read() as tx:

            def at(hours: float) -> tuple[int, int]:
                b = ledger.balance(tx, books.wallet.id, start + timedelta(hours=hours))
                return b.posted.amount_minor, b.pending.amount_minor

            assert at(-1) == (0, 0)
            assert at(0) == (1000, 0)
            assert at(1.5) == (900, 0)
            assert at(2.5) == (900, -50)
            assert at(3) == (850, 0)
            now = ledger.balance(tx, books.wallet.id)
            assert ledger.balance(tx, books.wallet.id, clock.now()).posted == now.posted

    def test_backdated_entries_count_at_their_effective_time_unless_known_at_says_otherwise(
        self, books: Books, clock: TestClock
    ) -> None:
        statement_at = clock.now()
        books.fund(books.wallet, 1000)
        clock.advance(days=2)
        issued_at = clock.now()
        clock.advance(days=1)
        # A late correction, effective before the statement date.
        backdated = statement_at - timedelta(hours=1)
        books.one(move("late", books.wallet, books.revenue, 200, effective_at=backdated))
        with books.db.read() as tx:
            restated = ledger.balance(tx, books.wallet.id, statement_at)
            as_issued = ledger.balance(tx, books.wallet.id, statement_at, known_at=issued_at)
        assert restated.posted.amount_minor == 800
        assert as_issued.posted.amount_minor == 1000

    def test_as_of_in_the_future_is_refused(self, books: Books, clock: TestClock) -> None:
        with books.db.read() as tx, pytest.raises(InvalidRequest) as error:
            ledger.balance(tx, books.wallet.id, clock.now() + timedelta(seconds=1))
        assert error.value.code == "as_of_in_future"


def test_entries_are_paginated_newest_first(books: Books) -> None:
    books.fund(books.wallet, 1000)
    for n in range(5):
        books.one(move(f"s{n}", books.wallet, books.revenue, 10 + n))
    with books.db.read() as tx:
        first = ledger.entries(tx, books.wallet.id, PageRequest(limit=4))
        assert first.has_more
        assert [e.amount_minor for e in first.data] == [14, 13, 12, 11]
        last_id = first.data[-1].id
        assert last_id is not None
        second = ledger.entries(
            tx,
            books.wallet.id,
            PageRequest(limit=4, starting_after=ledger.entry_public_id(last_id)),
        )
        assert not second.has_more
        assert [e.amount_minor for e in second.data] == [10, 1000]
        back = ledger.entries(
            tx,
            books.wallet.id,
            PageRequest(limit=2, ending_before=ledger.entry_public_id(last_id)),
        )
        assert [e.amount_minor for e in back.data] == [13, 12]
        with pytest.raises(InvalidRequest):
            ledger.entries(tx, books.wallet.id, PageRequest(starting_after="cus_123"))


class TestAccounts:
    def test_open_account_is_get_or_create(self, db: Database) -> None:
        with db.transaction() as tx:
            customer = new_customer(tx)
            first = ledger.open_account(tx, AccountSpec.customer_credit(customer, "USD"))
            again = ledger.open_account(tx, AccountSpec.customer_credit(customer, "usd"))
            grant = ledger.open_account(
                tx, AccountSpec.customer_credit(customer, "USD", reference="grt_1")
            )
            euros = ledger.open_account(tx, AccountSpec.customer_credit(customer, "EUR"))
            system = ledger.open_account(
                tx, AccountSpec.system("customer_credit", "USD", "liability")
            )
        assert first.id == again.id
        assert len({first.id, grant.id, euros.id, system.id}) == 4

    def test_opening_with_different_attributes_names_them(self, db: Database) -> None:
        with db.transaction() as tx:
            ledger.open_account(tx, AccountSpec.system("clearing", "USD", AccountKind.ASSET))
        for spec, code in (
            (AccountSpec.system("clearing", "USD", AccountKind.LIABILITY), "kind"),
            (
                AccountSpec.system("clearing", "USD", AccountKind.ASSET, balance_shards=2),
                "balance_shards",
            ),
        ):
            with db.transaction() as tx, pytest.raises(IdempotencyError) as error:
                ledger.open_account(tx, spec)
            assert error.value.code == f"account_exists_with_different_{code}"

    @pytest.mark.parametrize(
        ("spec", "code"),
        [
            (AccountSpec("Bad Code", "USD", "asset"), "account_code_invalid"),
            (AccountSpec("ok", "USD", "cash"), "account_kind_invalid"),
            (AccountSpec("ok", "XYZ", "asset"), "currency_invalid"),
            (AccountSpec("ok", "USD", "asset", customer_id="bob"), "account_owner_invalid"),
            (
                AccountSpec(
                    "ok",
                    "USD",
                    "asset",
                    debits_must_not_exceed_credits=True,
                    credits_must_not_exceed_debits=True,
                ),
                "account_limits_exclusive",
            ),
            (AccountSpec("ok", "USD", "asset", balance_shards=65), "account_shards_invalid"),
            (
                AccountSpec(
                    "ok", "USD", "asset", balance_shards=2, debits_must_not_exceed_credits=True
                ),
                "account_sharded_with_limits",
            ),
        ],
    )
    def test_bad_specs(self, db: Database, spec: AccountSpec, code: str) -> None:
        with db.transaction() as tx, pytest.raises(InvalidRequest) as error:
            ledger.open_account(tx, spec)
        assert error.value.code == code

    def test_list_and_get(self, books: Books) -> None:
        with books.db.read() as tx:
            mine = ledger.list_accounts(tx, PageRequest(), customer_id=books.customer_id)
            assert [a.id for a in mine.data] == [books.wallet.id]
            everything = ledger.list_accounts(tx, PageRequest(limit=100))
            assert len(everything.data) == 4
            assert ledger.get_account(tx, books.revenue.id).balance_shards == 4
            with pytest.raises(NotFound):
                ledger.get_account(tx, "acc_nope")

    def test_sharded_accounts_cannot_be_closed(self, books: Books) -> None:
        from tallybook.kit.errors import Conflict

        with books.db.transaction() as tx, pytest.raises(Conflict) as error:
            ledger.close_account(tx, books.revenue.id)
        assert error.value.code == "account_sharded_cannot_close"
