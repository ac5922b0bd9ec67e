"""The chart of accounts (ADR 0002): one place that says what each account code is.

Every domain that posts to the ledger opens its accounts through :func:`spec`, so an account
opened first by one domain (say ``promotion_expense`` by the ledger demo) has exactly the kind,
limits and sharding another domain expects when it opens it later. ``open_account`` is
get-or-create and refuses a second spec that differs, so a divergent private table would fail
at run time; this module makes that impossible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tallybook.ledger.values import AccountKind, AccountSpec

#: Balance rows of a hot system account touched by most transfers.
HOT_SHARDS: Final = 16

ACCOUNTS_RECEIVABLE: Final = "accounts_receivable"
CUSTOMER_BALANCE: Final = "customer_balance"
CREDIT_GRANT: Final = "credit_grant"
USAGE_CREDIT_GRANT: Final = "usage_credit_grant"
REVENUE_FEES: Final = "revenue_fees"
REVENUE_USAGE: Final = "revenue_usage"
DISCOUNTS: Final = "discounts"
PROMOTION_EXPENSE: Final = "promotion_expense"
CREDIT_BREAKAGE: Final = "credit_breakage"
USAGE_CREDIT_ISSUANCE: Final = "usage_credit_issuance"
USAGE_CREDIT_CONSUMED: Final = "usage_credit_consumed"
BAD_DEBT: Final = "bad_debt"
STRIPE_CLEARING: Final = "stripe_clearing"
MANUAL_CLEARING: Final = "manual_clearing"
BANK: Final = "bank"
DISPUTE_LOSSES: Final = "dispute_losses"
PAYMENT_FEES: Final = "payment_fees"


@dataclass(frozen=True, slots=True)
class ChartEntry:
    kind: AccountKind
    #: True for accounts owned by a customer; False for system accounts.
    per_customer: bool
    debits_must_not_exceed_credits: bool = False
    balance_shards: int = 1


CHART: Final[dict[str, ChartEntry]] = {
    ACCOUNTS_RECEIVABLE: ChartEntry(AccountKind.ASSET, per_customer=True),
    CUSTOMER_BALANCE: ChartEntry(
        AccountKind.LIABILITY, per_customer=True, debits_must_not_exceed_credits=True
    ),
    CREDIT_GRANT: ChartEntry(
        AccountKind.LIABILITY, per_customer=True, debits_must_not_exceed_credits=True
    ),
    USAGE_CREDIT_GRANT: ChartEntry(
        AccountKind.LIABILITY, per_customer=True, debits_must_not_exceed_credits=True
    ),
    REVENUE_FEES: ChartEntry(AccountKind.REVENUE, per_customer=False, balance_shards=HOT_SHARDS),
    REVENUE_USAGE: ChartEntry(AccountKind.REVENUE, per_customer=False, balance_shards=HOT_SHARDS),
    DISCOUNTS: ChartEntry(AccountKind.EXPENSE, per_customer=False, balance_shards=HOT_SHARDS),
    PROMOTION_EXPENSE: ChartEntry(
        AccountKind.EXPENSE, per_customer=False, balance_shards=HOT_SHARDS
    ),
    CREDIT_BREAKAGE: ChartEntry(AccountKind.REVENUE, per_customer=False),
    USAGE_CREDIT_ISSUANCE: ChartEntry(AccountKind.EQUITY, per_customer=False),
    USAGE_CREDIT_CONSUMED: ChartEntry(AccountKind.EXPENSE, per_customer=False),
    BAD_DEBT: ChartEntry(AccountKind.EXPENSE, per_customer=False),
    STRIPE_CLEARING: ChartEntry(AccountKind.ASSET, per_customer=False, balance_shards=HOT_SHARDS),
    MANUAL_CLEARING: ChartEntry(AccountKind.ASSET, per_customer=False),
    BANK: ChartEntry(AccountKind.ASSET, per_customer=False),
    DISPUTE_LOSSES: ChartEntry(AccountKind.EXPENSE, per_customer=False),
    PAYMENT_FEES: ChartEntry(AccountKind.EXPENSE, per_customer=False),
}


def spec(
    code: str, currency: str, *, customer_id: str | None = None, reference: str = ""
) -> AccountSpec:
    """The :class:`AccountSpec` of a chart account; names the mistake when called wrongly."""
    entry = CHART.get(code)
    if entry is None:
        raise ValueError(f"{code!r} is not in the chart of accounts (ledger/chart.py)")
    if entry.per_customer and customer_id is None:
        raise ValueError(f"{code!r} is a customer account: customer_id is required")
    if not entry.per_customer and customer_id is not None:
        raise ValueError(f"{code!r} is a system account: it takes no customer_id")
    return AccountSpec(
        code=code,
        currency=currency,
        kind=entry.kind,
        customer_id=customer_id,
        reference=reference,
        debits_must_not_exceed_credits=entry.debits_must_not_exceed_credits,
        balance_shards=entry.balance_shards,
    )
