"""The rejection codes are a contract: each has a kind, each is documented under the Ledger
heading of docs/errors.md with that kind, and idempotency covers every field of a request."""

from __future__ import annotations

import re
from pathlib import Path

from tallybook.ledger.domain import request_content
from tallybook.ledger.rejections import (
    EXISTS_WITH_DIFFERENT,
    PRECEDENCE,
    AccountCode,
    Kind,
    LedgerCode,
    Rejection,
)
from tallybook.ledger.values import PostPending, ReverseTransfer, TransferRequest

ERRORS_DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def _ledger_section() -> str:
    text = ERRORS_DOC.read_text()
    start = text.index("\n## Ledger\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_every_code_is_documented_with_its_kind() -> None:
    section = _ledger_section()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", section, flags=re.MULTILINE))
    for code in Rejection:
        assert code.value in rows, f"{code} is not documented"
        assert rows[code.value].startswith(code.kind.value), (code, rows[code.value])
    for enum in (AccountCode, LedgerCode):
        for other in enum:
            assert other.value in rows, f"{other} is not documented"


def test_transient_codes_are_exactly_the_balance_ones() -> None:
    assert [c for c in Rejection if c.kind is Kind.TRANSIENT] == [
        Rejection.BALANCE_OVERFLOW,
        Rejection.EXCEEDS_CREDITS,
        Rejection.EXCEEDS_DEBITS,
    ]


def test_idempotency_compares_every_field_of_every_request() -> None:
    requests = [
        TransferRequest("a", [], "r"),
        PostPending("a", "h"),
        ReverseTransfer("a", "t", "r"),
    ]
    for request in requests:
        assert set(request_content(request)) == set(EXISTS_WITH_DIFFERENT) | {"kind"}


def test_precedence_puts_the_id_then_idempotency_first() -> None:
    order = sorted(Rejection, key=PRECEDENCE.__getitem__)
    assert order[0] is Rejection.TRANSFER_ID_INVALID
    assert all(code.kind is Kind.IDEMPOTENCY for code in order[1 : 1 + len(EXISTS_WITH_DIFFERENT)])
    assert order[-1] is Rejection.LINKED_EVENT_FAILED
