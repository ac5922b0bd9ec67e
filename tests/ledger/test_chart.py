"""The chart of accounts is one table: whichever domain opens an account first, the others
get the same account back (the demo once failed because the ledger demo opened
``promotion_expense`` with one balance row and grants expected sixteen)."""

from __future__ import annotations

import pytest

from tallybook.db import Database
from tallybook.grants import accounts as grant_accounts
from tallybook.invoicing import postings as invoice_postings
from tallybook.ledger import chart
from tallybook.ledger import service as ledger
from tallybook.payments.service import postings as payment_postings


def test_system_accounts_agree_across_domains(db: Database) -> None:
    with db.transaction() as tx:
        promotions = ledger.open_account(tx, chart.spec(chart.PROMOTION_EXPENSE, "USD"))
        revenue = ledger.open_account(tx, chart.spec(chart.REVENUE_USAGE, "USD"))
        clearing = ledger.open_account(tx, chart.spec(chart.STRIPE_CLEARING, "USD"))
        assert grant_accounts.system(tx, chart.PROMOTION_EXPENSE, "USD").id == promotions.id
        assert grant_accounts.system(tx, chart.REVENUE_USAGE, "USD").id == revenue.id
        assert invoice_postings.account_id(tx, chart.REVENUE_USAGE, "USD") == revenue.id
        assert payment_postings.account_id(tx, chart.STRIPE_CLEARING, "USD") == clearing.id


def test_chart_names_the_mistake() -> None:
    with pytest.raises(ValueError, match="not in the chart"):
        chart.spec("petty_cash", "USD")
    with pytest.raises(ValueError, match="customer_id is required"):
        chart.spec(chart.ACCOUNTS_RECEIVABLE, "USD")
    with pytest.raises(ValueError, match="system account"):
        chart.spec(chart.BANK, "USD", customer_id="cus_1")
