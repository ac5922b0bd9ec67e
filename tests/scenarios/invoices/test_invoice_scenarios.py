"""Whole invoices as tables: usage, plan changes, minimums, late events, thresholds, payments
and credit notes → every finalized invoice's lines and totals to the cent, and the ledger
balances after. Read ``harness.py`` for the script language. One rounding per line,
half-even.

Columns: invoice number · kind · line kind · plan/price · amount; then a total row per invoice
(total, amount due, status when not open); then ledger balances (net on each account's normal
side: what customers owe, revenue earned…).
"""

from __future__ import annotations

from typing import Any

import pytest

from tallybook.db import Database
from tests.scenarios.invoices.harness import InvoiceScenario, expected_rows, play


def fee(amount_minor: int, key: str = "fee", timing: str = "in_advance") -> dict[str, Any]:
    return {"type": "flat", "key": key, "name": key, "amount_minor": amount_minor, "timing": timing}


def metered(meter: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"type": "usage", "key": key, "name": key, "meter": meter, **fields}


TIERS = [
    {"up_to": 1000, "unit_price": "0.01"},
    {"up_to": 5000, "unit_price": "0.008", "flat_fee_minor": 500},
    {"up_to": None, "unit_price": "0.005"},
]
BASIC = {
    "interval": "month",
    "prices": [
        fee(1000),
        metered("tokens", "tokens", model="per_unit", unit_price="0.001", included_quantity=1000),
    ],
}
PRO = {
    "interval": "month",
    "prices": [
        fee(3000),
        metered("tokens", "tokens", model="per_unit", unit_price="0.0005", included_quantity=4000),
    ],
}
TIERED = {
    "interval": "month",
    "prices": [fee(2000), metered("tokens", "tokens", model="graduated", tiers=TIERS)],
}

SCENARIOS = [
    InvoiceScenario(
        "two months of graduated usage: an opening invoice, then one per period end",
        {"Tiered": TIERED},
        """
        2027-01-01  subscribe Tiered
        2027-01-10  usage tokens 1001
        2027-02-10  usage tokens 5001
        2027-03-01 02:00  until
        """,
        """
        TB-2027-000001  opening  fee_advance  Tiered/fee     20.00
        TB-2027-000001  total    20.00        due 20.00
        TB-2027-000002  cycle    usage        Tiered/tokens  15.01
        TB-2027-000002  cycle    fee_advance  Tiered/fee     20.00
        TB-2027-000002  total    35.01        due 35.01
        TB-2027-000003  cycle    usage        Tiered/tokens  47.00
        TB-2027-000003  cycle    fee_advance  Tiered/fee     20.00
        TB-2027-000003  total    67.00        due 67.00
        ledger  accounts_receivable  122.01
        ledger  revenue_fees  60.00
        ledger  revenue_usage  62.01
        """,
    ),
    InvoiceScenario(
        "an upgrade mid-month: each phase rated on its version, prorations on the next invoice",
        {"Basic": BASIC, "Pro": PRO},
        """
        2026-11-01  subscribe Basic
        2026-11-10  usage tokens 3000
        2026-11-16  change Pro prorate_now
        2026-11-20  usage tokens 3000
        2026-12-01 02:00  until
        """,
        """
        TB-2026-000001  opening  fee_advance       Basic/fee     10.00
        TB-2026-000001  total    10.00             due 10.00
        TB-2026-000002  cycle    usage             Basic/tokens  2.50
        TB-2026-000002  cycle    usage             Pro/tokens    0.50
        TB-2026-000002  cycle    proration_credit  Basic/fee     -5.00
        TB-2026-000002  cycle    proration_charge  Pro/fee       15.00
        TB-2026-000002  cycle    fee_advance       Pro/fee       30.00
        TB-2026-000002  total    43.00             due 43.00
        ledger  accounts_receivable  53.00
        ledger  revenue_fees  50.00
        ledger  revenue_usage  3.00
        """,
    ),
    InvoiceScenario(
        "a minimum commitment trues up the period and late usage adjusts it on the next invoice",
        {"Committed": {**TIERED, "minimum_commitment_minor": 5000}},
        """
        2027-01-01  subscribe Committed
        2027-01-10  usage tokens 1000
        2027-02-10  usage tokens 2000 at=2027-01-25
        2027-03-01 02:00  until
        """,
        """
        TB-2027-000001  opening  fee_advance      Committed/fee     20.00
        TB-2027-000001  total    20.00            due 20.00
        TB-2027-000002  cycle    usage            Committed/tokens  10.00
        TB-2027-000002  cycle    minimum_true_up  commitment        20.00
        TB-2027-000002  cycle    fee_advance      Committed/fee     20.00
        TB-2027-000002  total    50.00            due 50.00
        TB-2027-000003  cycle    usage            Committed/tokens  0.00
        TB-2027-000003  cycle    minimum_true_up  commitment        30.00
        TB-2027-000003  cycle    adjustment       Committed/tokens  21.00
        TB-2027-000003  cycle    adjustment       commitment        -20.00
        TB-2027-000003  cycle    fee_advance      Committed/fee     20.00
        TB-2027-000003  total    51.00            due 51.00
        ledger  accounts_receivable  121.00
        ledger  revenue_fees  60.00
        ledger  revenue_usage  61.00
        """,
    ),
    InvoiceScenario(
        "threshold billing: an interim invoice at $20 of usage, the period end bills the rest",
        {"Tiered": {**TIERED, "billing_threshold_minor": 2000}},
        """
        2027-01-01  subscribe Tiered
        2027-01-05  usage tokens 1500    # 19.00 accrued: below the threshold
        2027-01-05  threshold
        2027-01-08  usage tokens 1000    # 2,500: 10.00 + 12.00 + 5.00 = 27.00
        2027-01-08  threshold
        2027-01-20  usage tokens 3000    # 5,500: 49.50, less 27.00 billed
        2027-01-20  threshold
        2027-02-01 02:00  until
        """,
        """
        TB-2027-000001  opening    fee_advance  Tiered/fee     20.00
        TB-2027-000001  total      20.00        due 20.00
        TB-2027-000002  threshold  usage        Tiered/tokens  27.00
        TB-2027-000002  total      27.00        due 27.00
        TB-2027-000003  threshold  usage        Tiered/tokens  22.50
        TB-2027-000003  total      22.50        due 22.50
        TB-2027-000004  cycle      fee_advance  Tiered/fee     20.00
        TB-2027-000004  total      20.00        due 20.00
        ledger  accounts_receivable  89.50
        ledger  revenue_fees  40.00
        ledger  revenue_usage  49.50
        """,
    ),
    InvoiceScenario(
        "a downgrade credit larger than the charges is carried to the balance, then used",
        {"Basic": BASIC, "Pro": PRO},
        """
        2026-11-01  subscribe Pro
        2026-11-02  pay TB-2026-000001
        2026-11-02  change Basic prorate_now invoice_now
        2026-12-01 02:00  until
        """,
        """
        TB-2026-000001  opening  fee_advance       Pro/fee      30.00
        TB-2026-000001  total    30.00             due 30.00  paid
        TB-2026-000002  update   proration_credit  Pro/fee      -29.00
        TB-2026-000002  update   proration_charge  Basic/fee    9.67
        TB-2026-000002  total    -19.33            due 0.00  paid
        TB-2026-000003  cycle    usage             Pro/tokens   0.00
        TB-2026-000003  cycle    usage             Basic/tokens  0.00
        TB-2026-000003  cycle    fee_advance       Basic/fee    10.00
        TB-2026-000003  credits  -10.00            # from the customer balance
        TB-2026-000003  total    10.00             due 0.00  paid
        ledger  customer_balance  9.33
        ledger  revenue_fees  20.67
        """,
    ),
    InvoiceScenario(
        "credit notes: per line on a paid invoice (to the balance), in full on an open one",
        {"Tiered": TIERED},
        """
        2027-01-01  subscribe Tiered
        2027-01-10  usage tokens 500
        2027-02-01 02:00  until
        2027-02-02  pay TB-2027-000002
        2027-02-02  credit_note TB-2027-000002 1=2.00
        2027-02-03  credit_note TB-2027-000001
        2027-03-01 02:00  until
        """,
        """
        TB-2027-000001  opening  fee_advance  Tiered/fee     20.00
        TB-2027-000001  total    20.00        due 20.00  paid
        TB-2027-000002  cycle    usage        Tiered/tokens  5.00
        TB-2027-000002  cycle    fee_advance  Tiered/fee     20.00
        TB-2027-000002  total    25.00        due 25.00  paid
        TB-2027-000003  cycle    usage        Tiered/tokens  0.00
        TB-2027-000003  cycle    fee_advance  Tiered/fee     20.00
        TB-2027-000003  credits  -2.00        # the credit note's 2.00 on the balance
        TB-2027-000003  total    20.00        due 18.00
        ledger  accounts_receivable  18.00
        ledger  revenue_fees  40.00
        ledger  revenue_usage  3.00
        """,
    ),
    InvoiceScenario(
        "usage credits before the tiers, a 10% promotion off the subtotal, then a monetary grant;"
        " a code redeemed during a period discounts the whole period (the fee billed before too)",
        {"Tiered": TIERED},
        """
        2027-01-01  subscribe Tiered
        2027-01-01  grant 1500 tokens
        2027-01-01  grant 10.00
        2027-01-01  promotion TENOFF percent 10 forever
        2027-01-10  usage tokens 3000    # 1,500 credited: 10.00 + 500 × 0.008 + 5.00 = 19.00
        2027-02-10  usage tokens 800     # the credits are spent: 8.00
        2027-03-01 02:00  until
        """,
        """
        TB-2027-000001  opening  fee_advance  Tiered/fee     20.00
        TB-2027-000001  total    20.00        due 20.00
        TB-2027-000002  cycle    usage        Tiered/tokens  19.00  credited 1500
        TB-2027-000002  cycle    fee_advance  Tiered/fee     20.00
        TB-2027-000002  discount  -5.90   # 10% of 39.00, and of the 20.00 billed before the code
        TB-2027-000002  credits   -10.00
        TB-2027-000002  total    33.10        due 23.10
        TB-2027-000003  cycle    usage        Tiered/tokens  8.00
        TB-2027-000003  cycle    fee_advance  Tiered/fee     20.00
        TB-2027-000003  discount  -2.80
        TB-2027-000003  total    25.20        due 25.20
        ledger  accounts_receivable  68.30
        ledger  revenue_fees  60.00
        ledger  revenue_usage  27.00
        ledger  discounts  8.70
        ledger  promotion_expense  10.00
        """,
    ),
    InvoiceScenario(
        "a once-only amount off and a small grant on a period trued up to its minimum",
        {"Committed": {**TIERED, "minimum_commitment_minor": 5000}},
        """
        2027-01-01  subscribe Committed
        2027-01-01  promotion FIVEOFF amount 5.00 once
        2027-01-01  grant 3.00
        2027-01-10  usage tokens 500     # 5.00; 20.00 in advance: 25.00 short of 50.00
        2027-02-10  usage tokens 6000    # 10.00 + 32.00 + 5.00 + 5.00 = 52.00: no true-up
        2027-03-01 02:00  until
        """,
        """
        TB-2027-000001  opening  fee_advance      Committed/fee     20.00
        TB-2027-000001  total    20.00            due 20.00
        TB-2027-000002  cycle    usage            Committed/tokens  5.00
        TB-2027-000002  cycle    minimum_true_up  commitment        25.00
        TB-2027-000002  cycle    fee_advance      Committed/fee     20.00
        TB-2027-000002  discount  -5.00
        TB-2027-000002  credits   -3.00
        TB-2027-000002  total    45.00            due 42.00
        TB-2027-000003  cycle    usage            Committed/tokens  52.00
        TB-2027-000003  cycle    fee_advance      Committed/fee     20.00
        TB-2027-000003  total    72.00            due 72.00
        ledger  accounts_receivable  134.00
        ledger  revenue_fees  60.00
        ledger  revenue_usage  82.00
        ledger  discounts  5.00
        ledger  promotion_expense  3.00
        """,
    ),
    InvoiceScenario(
        "threshold billing with usage credits and a promotion: interim + final = one invoice",
        {"Tiered": {**TIERED, "billing_threshold_minor": 2000}},
        """
        2027-01-01  subscribe Tiered
        2027-01-01  promotion TENOFF percent 10 forever
        2027-01-01  grant 500 tokens
        2027-01-05  usage tokens 1500    # 500 credited: 10.00 billable, below the threshold
        2027-01-05  threshold
        2027-01-08  usage tokens 2000    # 3,000 billable: 10.00 + 16.00 + 5.00 = 31.00
        2027-01-08  threshold
        2027-01-20  usage tokens 3000    # 6,000 billable: 52.00, less 31.00 billed
        2027-02-01 02:00  until
        """,
        """
        TB-2027-000001  opening    fee_advance  Tiered/fee     20.00
        TB-2027-000001  total      20.00        due 20.00
        TB-2027-000002  threshold  usage        Tiered/tokens  31.00  credited 500
        TB-2027-000002  discount   -5.10   # 10% of 31.00 and of the period's 20.00 fee
        TB-2027-000002  total      25.90        due 25.90
        TB-2027-000003  cycle      usage        Tiered/tokens  21.00
        TB-2027-000003  cycle      fee_advance  Tiered/fee     20.00
        TB-2027-000003  discount   -4.10   # 10% of 92.00 for the period, less 5.10
        TB-2027-000003  total      36.90        due 36.90
        ledger  accounts_receivable  82.80   # undivided: 20.00 + 52.00 + 20.00 − 9.20
        ledger  revenue_fees  40.00
        ledger  revenue_usage  52.00
        ledger  discounts  9.20
        """,
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_invoice_scenario(db: Database, scenario: InvoiceScenario) -> None:
    actual = play(db, scenario)
    expected = expected_rows(scenario.expected)
    assert actual == expected, "\n" + "\n".join("  ".join(row) for row in actual)
