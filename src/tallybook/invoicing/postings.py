"""Invoicing's ledger postings (ADR 0002): accounts and transfers, with deterministic ids.

| event | transfer id | legs |
| --- | --- | --- |
| finalize | ``invoice:<id>:finalize`` | Dr ``accounts_receivable`` total (or Cr ``customer_balance`` a negative total); Cr ``revenue_fees``/``revenue_usage`` net per account (Dr when negative); Dr ``discounts`` |
| balance applied | ``invoice:<id>:balance`` | Dr ``customer_balance``, Cr ``accounts_receivable`` |
| void | ``invoice:<id>:void:<n>`` | the reversal of the invoice's n-th transfer |
| credit note | ``credit_note:<id>`` | Dr revenue per account, Cr ``accounts_receivable`` (what is owed), Cr ``customer_balance`` (the rest) |
| write-off | ``invoice:<id>:write_off`` | Dr ``bad_debt``, Cr ``accounts_receivable`` |

Revenue is credited **net per revenue account** of the invoice's lines rather than one leg per
line (a transfer has at most 16 legs; the lines themselves are on the invoice, which the
transfer's metadata names): ``fee_*`` and proration lines to ``revenue_fees``; usage, minimum
true-ups and adjustments to ``revenue_usage``. Recorded as a deviation in ADR 0002.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from tallybook.db import Tx
from tallybook.kit.money import Money
from tallybook.kit.pagination import PageRequest
from tallybook.ledger import chart
from tallybook.ledger import service as ledger
from tallybook.ledger.values import AccountSpec, Leg, TransferRequest

TRANSFER_ID_LENGTH_MAX: Final = 64
AR: Final = chart.ACCOUNTS_RECEIVABLE
BALANCE: Final = chart.CUSTOMER_BALANCE
REVENUE_FEES: Final = chart.REVENUE_FEES
REVENUE_USAGE: Final = chart.REVENUE_USAGE
DISCOUNTS: Final = chart.DISCOUNTS
BAD_DEBT: Final = chart.BAD_DEBT

_FEE_KINDS: Final = frozenset(
    {"fee_advance", "fee_arrears", "proration_charge", "proration_credit"}
)

#: Account ids opened in a unit of work, so a batch opens each account once. Not kept across
#: units of work: an account opened by a transaction that rolled back does not exist.
_opened: weakref.WeakKeyDictionary[Tx, dict[tuple[str, str, str | None], str]] = (
    weakref.WeakKeyDictionary()
)


#: Customer accounts known not to exist in this unit of work (nothing to read from them).
_absent: weakref.WeakKeyDictionary[Tx, set[tuple[str, str, str | None]]] = (
    weakref.WeakKeyDictionary()
)


def prime(tx: Tx, known: dict[tuple[str, str, str | None], str]) -> None:
    """Remember accounts found by a bulk read (``bulk.known_accounts``) for this unit of work."""
    _opened.setdefault(tx, {}).update(known)


def mark_absent(tx: Tx, code: str, currency: str, customer_id: str) -> None:
    """After a bulk read: the account does not exist unless it was found (or opened)."""
    if (code, currency, customer_id) not in _opened.setdefault(tx, {}):
        _absent.setdefault(tx, set()).add((code, currency, customer_id))


def transfer_id(readable: str) -> str:
    """``readable`` when the ledger accepts it (64 characters), else a deterministic digest
    (``h:`` + 32 hex): the same cause always gives the same id (grants does the same)."""
    if len(readable) <= TRANSFER_ID_LENGTH_MAX:
        return readable
    return "h:" + hashlib.blake2b(readable.encode(), digest_size=16).hexdigest()


def revenue_code(kind: str) -> str:
    return REVENUE_FEES if kind in _FEE_KINDS else REVENUE_USAGE


def _spec(code: str, currency: str, customer_id: str | None) -> AccountSpec:
    if code not in (AR, BALANCE, REVENUE_FEES, REVENUE_USAGE, DISCOUNTS, BAD_DEBT):
        raise ValueError(f"unknown invoicing account {code}")
    return chart.spec(code, currency, customer_id=customer_id)


def account_id(tx: Tx, code: str, currency: str, customer_id: str | None = None) -> str:
    """The ledger account's id, opened on first use (get-or-create)."""
    identity = (code, currency, customer_id)
    opened = _opened.setdefault(tx, {})
    found = opened.get(identity)
    if found is None:
        found = opened[identity] = ledger.open_account(tx, _spec(code, currency, customer_id)).id
        _absent.get(tx, set()).discard(identity)
    return found


@dataclass(frozen=True, slots=True)
class FinalizePosting:
    invoice_id: str
    customer_id: str
    currency: str
    #: Net amount per revenue account code (positive: revenue credited).
    revenue_minor: Mapping[str, int]
    discount_minor: int
    total_minor: int
    balance_applied_minor: int


def revenue_by_account(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    """(kind, amount) of the lines → net per revenue account."""
    result: dict[str, int] = {}
    for kind, amount in lines:
        code = revenue_code(kind)
        result[code] = result.get(code, 0) + amount
    return result


def finalize_transfers(tx: Tx, posting: FinalizePosting) -> list[TransferRequest]:
    currency, customer = posting.currency, posting.customer_id
    legs: list[Leg] = []
    if posting.total_minor > 0:
        legs.append(
            Leg.debit(account_id(tx, AR, currency, customer), Money(posting.total_minor, currency))
        )
    elif posting.total_minor < 0:
        legs.append(
            Leg.credit(
                account_id(tx, BALANCE, currency, customer), Money(-posting.total_minor, currency)
            )
        )
    for code in sorted(posting.revenue_minor):
        amount = posting.revenue_minor[code]
        if amount > 0:
            legs.append(Leg.credit(account_id(tx, code, currency), Money(amount, currency)))
        elif amount < 0:
            legs.append(Leg.debit(account_id(tx, code, currency), Money(-amount, currency)))
    if posting.discount_minor > 0:
        legs.append(
            Leg.debit(account_id(tx, DISCOUNTS, currency), Money(posting.discount_minor, currency))
        )
    elif posting.discount_minor < 0:  # discount given back (see domain._discounts)
        legs.append(
            Leg.credit(
                account_id(tx, DISCOUNTS, currency), Money(-posting.discount_minor, currency)
            )
        )
    transfers = []
    metadata = {"invoice_id": posting.invoice_id}
    if legs:
        transfers.append(
            TransferRequest(
                id=f"invoice:{posting.invoice_id}:finalize",
                legs=legs,
                reason_code="invoice.finalize",
                metadata=metadata,
            )
        )
    if posting.balance_applied_minor > 0:
        applied = Money(posting.balance_applied_minor, currency)
        transfers.append(
            TransferRequest(
                id=f"invoice:{posting.invoice_id}:balance",
                legs=[
                    Leg.debit(account_id(tx, BALANCE, currency, customer), applied),
                    Leg.credit(account_id(tx, AR, currency, customer), applied),
                ],
                reason_code="invoice.balance_applied",
                metadata=metadata,
            )
        )
    return transfers


def balance_available_minor(tx: Tx, customer_id: str, currency: str) -> int:
    """What the customer's balance holds (money we owe them), without opening the account."""
    cached = _opened.get(tx, {}).get((BALANCE, currency, customer_id))
    if cached is None and (BALANCE, currency, customer_id) in _absent.get(tx, set()):
        return 0
    if cached is None:
        page = ledger.list_accounts(
            tx, PageRequest(limit=1), customer_id=customer_id, code=BALANCE, currency=currency
        )
        if not page.data:
            return 0
        cached = page.data[0].id
    return ledger.balance(tx, cached).available.amount_minor
