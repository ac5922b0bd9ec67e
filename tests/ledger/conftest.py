"""Ledger test helpers: a small set of books (a funding account, customer wallets, a sharded
revenue account), shorthand for transfers, and a snapshot of everything the ledger stores so a
test can assert that a refused request wrote nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from tallybook.customers import service as customers
from tallybook.db import Database, Tx
from tallybook.kit.ids import new_id
from tallybook.kit.money import Money
from tallybook.ledger import service as ledger
from tallybook.ledger.repository import (
    ACCOUNTS,
    BALANCES,
    ENTRIES,
    FAILURES,
    OPEN_HOLDS,
    TRANSFERS,
)
from tallybook.ledger.values import (
    Account,
    AccountKind,
    AccountSpec,
    LedgerOp,
    Leg,
    TransferRequest,
    TransferResult,
)


def usd(amount_minor: int) -> Money:
    return Money(amount_minor, "USD")


def new_customer(tx: Tx, currency: str = "USD") -> str:
    customer = customers.create(
        tx, customers.CustomerInput(external_id=new_id("ext"), currency=currency)
    )
    return customer.id


def move(
    transfer_id: str,
    source: Account | str,
    target: Account | str,
    amount_minor: int,
    *,
    currency: str = "USD",
    reason_code: str = "test",
    **fields: Any,
) -> TransferRequest:
    """A one-debit, one-credit transfer from ``source`` to ``target``."""
    source_id = source if isinstance(source, str) else source.id
    target_id = target if isinstance(target, str) else target.id
    return TransferRequest(
        id=transfer_id,
        legs=[
            Leg(source_id, "debit", amount_minor, currency),
            Leg(target_id, "credit", amount_minor, currency),
        ],
        reason_code=reason_code,
        **fields,
    )


@dataclass
class Books:
    """A funding account (unlimited asset), two customer wallets that can't go negative, and a
    revenue account sharded four ways."""

    db: Database
    funding: Account
    wallet: Account
    other_wallet: Account
    revenue: Account
    customer_id: str

    def run(self, *ops: LedgerOp, linked: bool = False) -> list[TransferResult]:
        with self.db.transaction(actor="test") as tx:
            if linked:
                return ledger.create_linked_batch(tx, list(ops))
            return ledger.create_transfers(tx, list(ops))

    def one(self, op: LedgerOp) -> TransferResult:
        return self.run(op)[0]

    def fund(self, account: Account, amount_minor: int) -> TransferResult:
        return self.one(move(new_id("fund"), self.funding, account, amount_minor))

    def available(self, account: Account) -> int:
        with self.db.read() as tx:
            return ledger.balance(tx, account.id).available.amount_minor

    def balance_values(self, account: Account) -> tuple[int, int, int, int]:
        with self.db.read() as tx:
            b = ledger.balance(tx, account.id)
        return (
            b.debits_posted.amount_minor,
            b.credits_posted.amount_minor,
            b.debits_pending.amount_minor,
            b.credits_pending.amount_minor,
        )


def open_books(db: Database) -> Books:
    with db.transaction(actor="test") as tx:
        customer_id = new_customer(tx)
        other_customer = new_customer(tx)
        funding = ledger.open_account(tx, AccountSpec.system("funding", "USD", AccountKind.ASSET))
        wallet = ledger.open_account(tx, AccountSpec.customer_credit(customer_id, "USD"))
        other = ledger.open_account(tx, AccountSpec.customer_credit(other_customer, "USD"))
        revenue = ledger.open_account(
            tx, AccountSpec.system("revenue_usage", "USD", AccountKind.REVENUE, balance_shards=4)
        )
    return Books(db, funding, wallet, other, revenue, customer_id)


@pytest.fixture
def books(db: Database) -> Books:
    return open_books(db)


def journal_snapshot(db: Database) -> dict[str, Any]:
    """Everything the ledger has written: row counts and the balance totals."""
    with db.read() as tx:
        conn = tx.session.connection()
        counts = {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (ACCOUNTS, TRANSFERS, ENTRIES, FAILURES, OPEN_HOLDS)
        }
        balances = sorted(tuple(row) for row in conn.execute(select(BALANCES)))
    return {"counts": counts, "balances": balances}
