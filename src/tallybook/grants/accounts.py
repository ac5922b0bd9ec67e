"""The ledger accounts grants post to, exactly as ADR 0002 names them (opened on first use;
``ledger.open_account`` is get-or-create)."""

from __future__ import annotations

from tallybook.db import Tx
from tallybook.grants.domain import (
    ACCOUNTS_RECEIVABLE,
    CREDIT_BREAKAGE,
    HOT_ACCOUNT_SHARDS,
    PROMOTION_EXPENSE,
    REVENUE_USAGE,
    USAGE_CREDIT_CONSUMED,
    USAGE_CREDIT_ISSUANCE,
    GrantKind,
    wallet_code,
)
from tallybook.ledger import service as ledger
from tallybook.ledger.values import Account, AccountKind, AccountSpec


def wallet(tx: Tx, *, kind: GrantKind, customer_id: str, asset: str, grant_id: str) -> Account:
    """One wallet per grant: a liability that can't go negative (holds count against it)."""
    return ledger.open_account(
        tx,
        AccountSpec(
            code=wallet_code(kind),
            currency=asset,
            kind=AccountKind.LIABILITY,
            customer_id=customer_id,
            reference=grant_id,
            debits_must_not_exceed_credits=True,
        ),
    )


def accounts_receivable(tx: Tx, customer_id: str, currency: str) -> Account:
    return ledger.open_account(
        tx,
        AccountSpec(
            code=ACCOUNTS_RECEIVABLE,
            currency=currency,
            kind=AccountKind.ASSET,
            customer_id=customer_id,
        ),
    )


def system(tx: Tx, code: str, asset: str) -> Account:
    """The system accounts of ADR 0002's chart, with their kind and sharding."""
    kinds = {
        PROMOTION_EXPENSE: (AccountKind.EXPENSE, HOT_ACCOUNT_SHARDS),
        REVENUE_USAGE: (AccountKind.REVENUE, HOT_ACCOUNT_SHARDS),
        CREDIT_BREAKAGE: (AccountKind.REVENUE, 1),
        USAGE_CREDIT_ISSUANCE: (AccountKind.EQUITY, 1),
        USAGE_CREDIT_CONSUMED: (AccountKind.EXPENSE, 1),
    }
    kind, shards = kinds[code]
    return ledger.open_account(tx, AccountSpec.system(code, asset, kind, balance_shards=shards))


def counterpart(tx: Tx, code: str, *, customer_id: str, asset: str) -> Account:
    """Funding or return account by code (``accounts_receivable`` is the customer's)."""
    if code == ACCOUNTS_RECEIVABLE:
        return accounts_receivable(tx, customer_id, asset)
    return system(tx, code, asset)
