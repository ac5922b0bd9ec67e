"""Bad input: each case gets its named code and the ledger writes nothing (not a transfer, not
an entry, not a failure, not a balance change). Also: when a request is wrong in several ways,
the code with the highest precedence wins, as listed in ``Rejection``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from tallybook.kit.money import AMOUNT_MINOR_MAX
from tallybook.ledger.rejections import Kind, Rejection
from tallybook.ledger.values import (
    LedgerOp,
    Leg,
    PostPending,
    ReverseTransfer,
    TransferRequest,
    VoidPending,
)
from tests.ledger.conftest import Books, journal_snapshot, move

MISSING_ACCOUNT = "acc_" + "0" * 26

Case = Callable[[Books], LedgerOp]

CASES: dict[str, tuple[Case, Rejection, str | None]] = {
    "unknown account": (
        lambda b: move("x", MISSING_ACCOUNT, b.wallet, 100),
        Rejection.ACCOUNT_NOT_FOUND,
        "legs[0].account_id",
    ),
    "malformed account id": (
        lambda b: move("x", "nope", b.wallet, 100),
        Rejection.ACCOUNT_ID_INVALID,
        "legs[0].account_id",
    ),
    "currency mismatch": (
        lambda b: move("x", b.funding, b.wallet, 100, currency="EUR"),
        Rejection.CURRENCY_MISMATCH,
        "legs[0].currency",
    ),
    "unknown currency": (
        lambda b: move("x", b.funding, b.wallet, 100, currency="XXX"),
        Rejection.CURRENCY_INVALID,
        "legs[0].currency",
    ),
    "unbalanced legs": (
        lambda b: TransferRequest(
            "x",
            [Leg(b.funding.id, "debit", 100, "USD"), Leg(b.wallet.id, "credit", 99, "USD")],
            "test",
        ),
        Rejection.LEGS_UNBALANCED,
        "legs",
    ),
    "one leg": (
        lambda b: TransferRequest("x", [Leg(b.funding.id, "debit", 100, "USD")], "test"),
        Rejection.LEGS_COUNT_INVALID,
        "legs",
    ),
    "same account twice": (
        lambda b: TransferRequest(
            "x",
            [Leg(b.funding.id, "debit", 100, "USD"), Leg(b.funding.id, "credit", 100, "USD")],
            "test",
        ),
        Rejection.LEGS_DUPLICATE_ACCOUNT,
        "legs[1].account_id",
    ),
    "zero amount": (
        lambda b: move("x", b.funding, b.wallet, 0),
        Rejection.AMOUNT_NOT_POSITIVE,
        "legs[0].amount_minor",
    ),
    "negative amount": (
        lambda b: move("x", b.funding, b.wallet, -5),
        Rejection.AMOUNT_NOT_POSITIVE,
        "legs[0].amount_minor",
    ),
    "amount past the storage limit": (
        lambda b: move("x", b.funding, b.wallet, AMOUNT_MINOR_MAX + 1),
        Rejection.AMOUNT_TOO_LARGE,
        "legs[0].amount_minor",
    ),
    "fractional amount": (
        lambda b: move("x", b.funding, b.wallet, 1.5),  # type: ignore[arg-type]
        Rejection.AMOUNT_INVALID,
        "legs[0].amount_minor",
    ),
    "bad direction": (
        lambda b: TransferRequest(
            "x",
            [Leg(b.funding.id, "up", 100, "USD"), Leg(b.wallet.id, "credit", 100, "USD")],
            "test",
        ),
        Rejection.DIRECTION_INVALID,
        "legs[0].direction",
    ),
    "naive effective_at": (
        lambda b: move("x", b.funding, b.wallet, 1, effective_at=datetime(2026, 1, 1)),
        Rejection.EFFECTIVE_AT_INVALID,
        "effective_at",
    ),
    "timeout on a plain transfer": (
        lambda b: move("x", b.funding, b.wallet, 1, timeout_seconds=60),
        Rejection.TIMEOUT_INVALID,
        "timeout_seconds",
    ),
    "bad metadata": (
        lambda b: move("x", b.funding, b.wallet, 1, metadata={"k": 1}),
        Rejection.METADATA_INVALID,
        "metadata.k",
    ),
    "reused id with different content": (
        lambda b: move("held", b.wallet, b.revenue, 999, pending=True),
        Rejection.EXISTS_WITH_DIFFERENT_LEGS,
        "legs[0].amount_minor",
    ),
    "posting more than a hold": (
        lambda b: PostPending("x", "held", amount_minor=501),
        Rejection.PENDING_AMOUNT_EXCEEDED,
        "amount_minor",
    ),
    "posting an unknown hold": (
        lambda b: PostPending("x", "no-such-hold"),
        Rejection.PENDING_TRANSFER_NOT_FOUND,
        "pending_id",
    ),
    "posting a transfer that is not a hold": (
        lambda b: PostPending("x", "plain"),
        Rejection.PENDING_TRANSFER_NOT_PENDING,
        "pending_id",
    ),
    "posting a voided hold": (
        lambda b: PostPending("x", "to-void"),
        Rejection.PENDING_TRANSFER_ALREADY_VOIDED,
        "pending_id",
    ),
    "voiding a voided hold": (
        lambda b: VoidPending("x", "to-void"),
        Rejection.PENDING_TRANSFER_ALREADY_VOIDED,
        "pending_id",
    ),
    "reversing a hold": (
        lambda b: ReverseTransfer("x", "held", "oops"),
        Rejection.TRANSFER_NOT_REVERSIBLE,
        "transfer_id",
    ),
    "reversing more than was moved": (
        lambda b: ReverseTransfer("x", "plain", "oops", amount_minor=301),
        Rejection.REVERSAL_AMOUNT_EXCEEDED,
        "amount_minor",
    ),
}


def _prepare(books: Books) -> None:
    books.fund(books.wallet, 1000)
    results = books.run(
        move("held", books.wallet, books.revenue, 500, pending=True),
        move("plain", books.wallet, books.revenue, 300),
        move("to-void", books.wallet, books.revenue, 100, pending=True),
        VoidPending("voided", "to-void"),
    )
    assert all(r.ok for r in results), results


@pytest.mark.parametrize("name", list(CASES))
def test_refused_with_its_code_and_nothing_written(books: Books, name: str) -> None:
    build, code, param = CASES[name]
    _prepare(books)
    before = journal_snapshot(books.db)
    result = books.one(build(books))
    assert result.code is code
    assert result.param == param
    assert not code.transient
    assert journal_snapshot(books.db) == before


def test_input_codes_are_400s_and_state_codes_409s() -> None:
    assert Rejection.ACCOUNT_NOT_FOUND.error("x").status == 400
    assert Rejection.PENDING_TRANSFER_ALREADY_VOIDED.error("x").status == 409
    assert Rejection.EXISTS_WITH_DIFFERENT_LEGS.error("x").error_type == "idempotency_error"
    assert {code for code in Rejection if code.kind is Kind.TRANSIENT} == {
        Rejection.BALANCE_OVERFLOW,
        Rejection.EXCEEDS_CREDITS,
        Rejection.EXCEEDS_DEBITS,
    }


class TestPrecedence:
    """A request wrong in several ways reports the earliest code in ``Rejection``."""

    def test_idempotency_comes_before_everything_but_the_id(self, books: Books) -> None:
        books.fund(books.wallet, 100)
        books.one(move("p", books.funding, books.wallet, 10))
        # Same id, now with a zero amount and an unknown account: the id conflict wins.
        result = books.one(move("p", MISSING_ACCOUNT, books.wallet, 0))
        assert result.code is Rejection.EXISTS_WITH_DIFFERENT_LEGS

    def test_shape_before_state(self, books: Books) -> None:
        result = books.one(move("q", MISSING_ACCOUNT, books.wallet, 0))
        assert result.code is Rejection.AMOUNT_NOT_POSITIVE

    def test_earlier_rung_beats_earlier_leg(self, books: Books) -> None:
        request = TransferRequest(
            "r",
            [Leg(books.funding.id, "debit", 0, "USD"), Leg("bad", "credit", 0, "USD")],
            "test",
        )
        result = books.one(request)
        assert (result.code, result.param) == (Rejection.ACCOUNT_ID_INVALID, "legs[1].account_id")

    def test_unknown_account_before_limits(self, books: Books) -> None:
        result = books.one(move("s", books.wallet, MISSING_ACCOUNT, 10**9))
        assert result.code is Rejection.ACCOUNT_NOT_FOUND
