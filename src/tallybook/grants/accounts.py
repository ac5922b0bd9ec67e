"""The ledger accounts grants post to, exactly as ADR 0002 names them (opened on first use;
``ledger.open_account`` is get-or-create)."""

from __future__ import annotations

from tallybook.db import Tx
from tallybook.grants.domain import ACCOUNTS_RECEIVABLE, GrantKind, wallet_code
from tallybook.ledger import chart
from tallybook.ledger import service as ledger
from tallybook.ledger.values import Account


def wallet(tx: Tx, *, kind: GrantKind, customer_id: str, asset: str, grant_id: str) -> Account:
    """One wallet per grant: a liability that can't go negative (holds count against it)."""
    return ledger.open_account(
        tx, chart.spec(wallet_code(kind), asset, customer_id=customer_id, reference=grant_id)
    )


def accounts_receivable(tx: Tx, customer_id: str, currency: str) -> Account:
    return ledger.open_account(
        tx, chart.spec(chart.ACCOUNTS_RECEIVABLE, currency, customer_id=customer_id)
    )


def system(tx: Tx, code: str, asset: str) -> Account:
    """A system account of ADR 0002's chart (kind and sharding from ``ledger.chart``)."""
    return ledger.open_account(tx, chart.spec(code, asset))


def counterpart(tx: Tx, code: str, *, customer_id: str, asset: str) -> Account:
    """Funding or return account by code (``accounts_receivable`` is the customer's)."""
    if code == ACCOUNTS_RECEIVABLE:
        return accounts_receivable(tx, customer_id, asset)
    return system(tx, code, asset)
