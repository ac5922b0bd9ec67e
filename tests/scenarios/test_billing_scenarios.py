"""Billing scenarios as tables: dates, plan, usage, change → the lines each invoice carries, to
the cent. Read ``harness.py`` for the script language. Amounts are rounded once per line,
half-even (so 962.5 cents is 9.62 and 1500.8 is 15.01).

Columns: invoice date · kind · plan/price · service window · amount.
"""

from __future__ import annotations

from typing import Any

import pytest

from tallybook.db import Database
from tests.fixtures.catalog_factories import flat_price, usage_price
from tests.scenarios.harness import Scenario, format_table, parse_table, play


def plan(interval: str = "month", *prices: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"interval": interval, "prices": list(prices), **fields}


def fee(amount_minor: int, timing: str = "in_advance", key: str = "fee") -> dict[str, Any]:
    return flat_price(amount_minor, timing=timing, key=key, name=key)


def metered(meter: str, key: str, **fields: Any) -> dict[str, Any]:
    price = usage_price("", key=key, name=key, **fields)
    price.pop("meter_id")
    price["meter"] = meter
    return price


PRO20 = {"Pro": plan("month", fee(2000))}
BASIC_PRO = {"Basic": plan("month", fee(1000)), "Pro": plan("month", fee(3000))}
TIERS = [
    {"up_to": 1000, "unit_price": "0.01"},
    {"up_to": 5000, "unit_price": "0.008", "flat_fee_minor": 500},
    {"up_to": None, "unit_price": "0.005"},
]

SCENARIOS = [
    # Intervals and anchors ---------------------------------------------------------------
    Scenario(
        "monthly, anchor on the 1st",
        PRO20,
        """
        2028-01-01  subscribe Pro
        2028-04-01  until
        """,
        """
        2028-01-01  fee_advance  Pro/fee  2028-01-01 → 2028-02-01  20.00
        2028-02-01  fee_advance  Pro/fee  2028-02-01 → 2028-03-01  20.00
        2028-03-01  fee_advance  Pro/fee  2028-03-01 → 2028-04-01  20.00
        2028-04-01  fee_advance  Pro/fee  2028-04-01 → 2028-05-01  20.00
        """,
    ),
    Scenario(
        "monthly, anchor on the 15th",
        PRO20,
        """
        2028-01-15  subscribe Pro
        2028-03-15  until
        """,
        """
        2028-01-15  fee_advance  Pro/fee  2028-01-15 → 2028-02-15  20.00
        2028-02-15  fee_advance  Pro/fee  2028-02-15 → 2028-03-15  20.00
        2028-03-15  fee_advance  Pro/fee  2028-03-15 → 2028-04-15  20.00
        """,
    ),
    Scenario(
        "monthly, anchor on the 29th, February of a leap year",
        PRO20,
        """
        2028-01-29  subscribe Pro
        2028-03-29  until
        """,
        """
        2028-01-29  fee_advance  Pro/fee  2028-01-29 → 2028-02-29  20.00
        2028-02-29  fee_advance  Pro/fee  2028-02-29 → 2028-03-29  20.00
        2028-03-29  fee_advance  Pro/fee  2028-03-29 → 2028-04-29  20.00
        """,
    ),
    Scenario(
        "monthly, anchor on the 29th, February of a common year",
        PRO20,
        """
        2027-01-29  subscribe Pro
        2027-03-29  until
        """,
        """
        2027-01-29  fee_advance  Pro/fee  2027-01-29 → 2027-02-28  20.00
        2027-02-28  fee_advance  Pro/fee  2027-02-28 → 2027-03-29  20.00
        2027-03-29  fee_advance  Pro/fee  2027-03-29 → 2027-04-29  20.00
        """,
    ),
    Scenario(
        "monthly, anchor on the 30th, through a leap February and back",
        PRO20,
        """
        2028-01-30  subscribe Pro
        2028-04-30  until
        """,
        """
        2028-01-30  fee_advance  Pro/fee  2028-01-30 → 2028-02-29  20.00
        2028-02-29  fee_advance  Pro/fee  2028-02-29 → 2028-03-30  20.00
        2028-03-30  fee_advance  Pro/fee  2028-03-30 → 2028-04-30  20.00
        2028-04-30  fee_advance  Pro/fee  2028-04-30 → 2028-05-30  20.00
        """,
    ),
    Scenario(
        "monthly, anchor on the 31st, leap year: the last day of short months",
        PRO20,
        """
        2028-01-31  subscribe Pro
        2028-05-31  until
        """,
        """
        2028-01-31  fee_advance  Pro/fee  2028-01-31 → 2028-02-29  20.00
        2028-02-29  fee_advance  Pro/fee  2028-02-29 → 2028-03-31  20.00
        2028-03-31  fee_advance  Pro/fee  2028-03-31 → 2028-04-30  20.00
        2028-04-30  fee_advance  Pro/fee  2028-04-30 → 2028-05-31  20.00
        2028-05-31  fee_advance  Pro/fee  2028-05-31 → 2028-06-30  20.00
        """,
    ),
    Scenario(
        "monthly, anchor on the 31st, common year, with a fee in arrears",
        {"Pro": plan("month", fee(2000), fee(500, "in_arrears", key="support"))},
        """
        2027-01-31  subscribe Pro
        2027-03-31  until
        """,
        """
        2027-01-31  fee_advance  Pro/fee      2027-01-31 → 2027-02-28  20.00
        2027-02-28  fee_arrears  Pro/support  2027-01-31 → 2027-02-28  5.00
        2027-02-28  fee_advance  Pro/fee      2027-02-28 → 2027-03-31  20.00
        2027-03-31  fee_arrears  Pro/support  2027-02-28 → 2027-03-31  5.00
        2027-03-31  fee_advance  Pro/fee      2027-03-31 → 2027-04-30  20.00
        """,
    ),
    Scenario(
        "started mid-month with the anchor on the 1st: a prorated first period",
        {"Pro": plan("month", fee(2000), fee(500, "in_arrears", key="support"))},
        """
        # 19 of February's 28 days
        2027-02-10  subscribe Pro anchor=2027-03-01
        2027-03-01  until
        """,
        """
        2027-02-10  fee_advance  Pro/fee      2027-02-10 → 2027-03-01  13.57
        2027-03-01  fee_arrears  Pro/support  2027-02-10 → 2027-03-01  3.39
        2027-03-01  fee_advance  Pro/fee      2027-03-01 → 2027-04-01  20.00
        """,
    ),
    Scenario(
        "yearly, anchor on a leap day",
        {"Annual": plan("year", fee(12000))},
        """
        2028-02-29  subscribe Annual
        2032-03-01  until
        """,
        """
        2028-02-29  fee_advance  Annual/fee  2028-02-29 → 2029-02-28  120.00
        2029-02-28  fee_advance  Annual/fee  2029-02-28 → 2030-02-28  120.00
        2030-02-28  fee_advance  Annual/fee  2030-02-28 → 2031-02-28  120.00
        2031-02-28  fee_advance  Annual/fee  2031-02-28 → 2032-02-29  120.00
        2032-02-29  fee_advance  Annual/fee  2032-02-29 → 2033-02-28  120.00
        """,
    ),
    Scenario(
        "weekly, across a month end",
        {"Weekly": plan("week", fee(700))},
        """
        2027-02-26  subscribe Weekly
        2027-03-12  until
        """,
        """
        2027-02-26  fee_advance  Weekly/fee  2027-02-26 → 2027-03-05  7.00
        2027-03-05  fee_advance  Weekly/fee  2027-03-05 → 2027-03-12  7.00
        2027-03-12  fee_advance  Weekly/fee  2027-03-12 → 2027-03-19  7.00
        """,
    ),
    # Price models around every tier boundary ---------------------------------------------
    Scenario(
        "each usage model at 1,000 / 1,001 / 5,000 / 5,001 / 0 units",
        {
            "Metered": plan(
                "month",
                metered("tokens", "graduated", model="graduated", tiers=TIERS),
                metered("calls", "volume", model="volume", tiers=TIERS),
                metered(
                    "storage",
                    "package",
                    model="package",
                    package_size=1000,
                    package_price="2.00",
                ),
                metered(
                    "events",
                    "per_unit",
                    unit_price="0.002",
                    included_quantity=1000,
                    max_charge_minor=800,
                ),
            )
        },
        """
        2026-11-01  subscribe Metered
        2026-11-15  usage tokens 1000
        2026-11-15  usage calls 1000
        2026-11-15  usage storage 1000
        2026-11-15  usage events 1000
        2026-12-15  usage tokens 1001
        2026-12-15  usage calls 1001
        2026-12-15  usage storage 1001
        2026-12-15  usage events 1001
        2027-01-15  usage tokens 5000
        2027-01-15  usage calls 5000
        2027-01-15  usage storage 5000
        2027-01-15  usage events 5000
        2027-02-15  usage tokens 5001
        2027-02-15  usage calls 5001
        2027-02-15  usage storage 5001
        2027-02-15  usage events 5001
        2027-04-01  until
        """,
        """
        # 1,000: the last unit of tier 1, one package, all included
        2026-12-01  usage  Metered/graduated  2026-11-01 → 2026-12-01  10.00
        2026-12-01  usage  Metered/volume     2026-11-01 → 2026-12-01  10.00
        2026-12-01  usage  Metered/package    2026-11-01 → 2026-12-01  2.00
        2026-12-01  usage  Metered/per_unit   2026-11-01 → 2026-12-01  0.00
        # 1,001: tier 2 entered (its 5.00 flat fee), a second package, 0.2 cents
        2027-01-01  usage  Metered/graduated  2026-12-01 → 2027-01-01  15.01
        2027-01-01  usage  Metered/volume     2026-12-01 → 2027-01-01  13.01
        2027-01-01  usage  Metered/package    2026-12-01 → 2027-01-01  4.00
        2027-01-01  usage  Metered/per_unit   2026-12-01 → 2027-01-01  0.00
        # 5,000: the top of tier 2; the 8.00 cap reached exactly
        2027-02-01  usage  Metered/graduated  2027-01-01 → 2027-02-01  47.00
        2027-02-01  usage  Metered/volume     2027-01-01 → 2027-02-01  45.00
        2027-02-01  usage  Metered/package    2027-01-01 → 2027-02-01  10.00
        2027-02-01  usage  Metered/per_unit   2027-01-01 → 2027-02-01  8.00
        # 5,001: tier 3 (47.005 and 25.005 round half to even), capped at 8.00
        2027-03-01  usage  Metered/graduated  2027-02-01 → 2027-03-01  47.00
        2027-03-01  usage  Metered/volume     2027-02-01 → 2027-03-01  25.00
        2027-03-01  usage  Metered/package    2027-02-01 → 2027-03-01  12.00
        2027-03-01  usage  Metered/per_unit   2027-02-01 → 2027-03-01  8.00
        # nothing used
        2027-04-01  usage  Metered/graduated  2027-03-01 → 2027-04-01  0.00
        2027-04-01  usage  Metered/volume     2027-03-01 → 2027-04-01  0.00
        2027-04-01  usage  Metered/package    2027-03-01 → 2027-04-01  0.00
        2027-04-01  usage  Metered/per_unit   2027-03-01 → 2027-04-01  0.00
        """,
    ),
    Scenario(
        "a minimum commitment is trued up when usage falls short",
        {
            "Committed": plan(
                "month",
                metered("tokens", "tokens", unit_price="0.01"),
                minimum_commitment_minor=5000,
            )
        },
        """
        2026-11-01  subscribe Committed
        2026-11-20  usage tokens 1000
        2026-12-20  usage tokens 6000
        2027-01-01  until
        """,
        """
        2026-12-01  usage            Committed/tokens  2026-11-01 → 2026-12-01  10.00
        2026-12-01  minimum_true_up  commitment        2026-11-01 → 2026-12-01  40.00
        2027-01-01  usage            Committed/tokens  2026-12-01 → 2027-01-01  60.00
        """,
    ),
    # Upgrades: first second, middle, last second (March: 31 days) ------------------------
    Scenario(
        "upgrade at the first second of a period",
        BASIC_PRO,
        """
        2027-02-01           subscribe Basic
        2027-03-01 00:00:00  change Pro
        2027-04-01           until
        """,
        """
        2027-02-01  fee_advance       Basic/fee  2027-02-01 → 2027-03-01  10.00
        2027-03-01  fee_advance       Basic/fee  2027-03-01 → 2027-04-01  10.00
        2027-04-01  proration_credit  Basic/fee  2027-03-01 → 2027-04-01  -10.00
        2027-04-01  proration_charge  Pro/fee    2027-03-01 → 2027-04-01  30.00
        2027-04-01  fee_advance       Pro/fee    2027-04-01 → 2027-05-01  30.00
        """,
    ),
    Scenario(
        "upgrade in the middle of a period",
        BASIC_PRO,
        """
        2027-02-01           subscribe Basic
        2027-03-16 12:00:00  change Pro
        2027-04-01           until
        """,
        """
        2027-02-01  fee_advance       Basic/fee  2027-02-01 → 2027-03-01        10.00
        2027-03-01  fee_advance       Basic/fee  2027-03-01 → 2027-04-01        10.00
        2027-04-01  proration_credit  Basic/fee  2027-03-16 12:00 → 2027-04-01  -5.00
        2027-04-01  proration_charge  Pro/fee    2027-03-16 12:00 → 2027-04-01  15.00
        2027-04-01  fee_advance       Pro/fee    2027-04-01 → 2027-05-01        30.00
        """,
    ),
    Scenario(
        "upgrade at the last second of a period: one second rounds to nothing",
        BASIC_PRO,
        """
        2027-02-01           subscribe Basic
        2027-03-31 23:59:59  change Pro
        2027-04-01           until
        """,
        """
        2027-02-01  fee_advance  Basic/fee  2027-02-01 → 2027-03-01  10.00
        2027-03-01  fee_advance  Basic/fee  2027-03-01 → 2027-04-01  10.00
        2027-04-01  fee_advance  Pro/fee    2027-04-01 → 2027-05-01  30.00
        """,
    ),
    # Downgrades ------------------------------------------------------------------------
    Scenario(
        "downgrade at the last second waits for the period end (the default policy)",
        BASIC_PRO,
        """
        2027-02-01           subscribe Pro
        2027-03-31 23:59:59  change Basic
        2027-05-01           until
        """,
        """
        2027-02-01  fee_advance  Pro/fee    2027-02-01 → 2027-03-01  30.00
        2027-03-01  fee_advance  Pro/fee    2027-03-01 → 2027-04-01  30.00
        2027-04-01  fee_advance  Basic/fee  2027-04-01 → 2027-05-01  10.00
        2027-05-01  fee_advance  Basic/fee  2027-05-01 → 2027-06-01  10.00
        """,
    ),
    Scenario(
        "downgrade at the first second, prorated now",
        BASIC_PRO,
        """
        2027-02-01           subscribe Pro
        2027-03-01 00:00:00  change Basic prorate_now
        2027-04-01           until
        """,
        """
        2027-02-01  fee_advance       Pro/fee    2027-02-01 → 2027-03-01  30.00
        2027-03-01  fee_advance       Pro/fee    2027-03-01 → 2027-04-01  30.00
        2027-04-01  proration_credit  Pro/fee    2027-03-01 → 2027-04-01  -30.00
        2027-04-01  proration_charge  Basic/fee  2027-03-01 → 2027-04-01  10.00
        2027-04-01  fee_advance       Basic/fee  2027-04-01 → 2027-05-01  10.00
        """,
    ),
    Scenario(
        "downgrade in the middle, prorated now",
        BASIC_PRO,
        """
        2027-02-01           subscribe Pro
        2027-03-16 12:00:00  change Basic prorate_now
        2027-04-01           until
        """,
        """
        2027-02-01  fee_advance       Pro/fee    2027-02-01 → 2027-03-01        30.00
        2027-03-01  fee_advance       Pro/fee    2027-03-01 → 2027-04-01        30.00
        2027-04-01  proration_credit  Pro/fee    2027-03-16 12:00 → 2027-04-01  -15.00
        2027-04-01  proration_charge  Basic/fee  2027-03-16 12:00 → 2027-04-01  5.00
        2027-04-01  fee_advance       Basic/fee  2027-04-01 → 2027-05-01        10.00
        """,
    ),
    Scenario(
        "upgrade, downgrade, upgrade in one period: each plan paid for its time only",
        BASIC_PRO,
        """
        2027-02-01  subscribe Basic
        # February has 28 days: Basic 7, Pro 7, Basic 7, Pro 7
        2027-02-08  change Pro
        2027-02-15  change Basic prorate_now
        2027-02-22  change Pro
        2027-03-01  until
        """,
        """
        2027-02-01  fee_advance       Basic/fee  2027-02-01 → 2027-03-01  10.00
        2027-03-01  proration_credit  Basic/fee  2027-02-08 → 2027-03-01  -7.50
        2027-03-01  proration_charge  Pro/fee    2027-02-08 → 2027-03-01  22.50
        2027-03-01  proration_credit  Pro/fee    2027-02-15 → 2027-03-01  -15.00
        2027-03-01  proration_charge  Basic/fee  2027-02-15 → 2027-03-01  5.00
        2027-03-01  proration_credit  Basic/fee  2027-02-22 → 2027-03-01  -2.50
        2027-03-01  proration_charge  Pro/fee    2027-02-22 → 2027-03-01  7.50
        2027-03-01  fee_advance       Pro/fee    2027-03-01 → 2027-04-01  30.00
        """,
    ),
    # Cancellations ---------------------------------------------------------------------
    Scenario(
        "cancel now at the first second of a period, crediting the unused part",
        BASIC_PRO,
        """
        2027-02-01           subscribe Pro
        2027-03-01 00:00:00  cancel now credit
        2027-06-01           until
        """,
        """
        2027-02-01  fee_advance       Pro/fee  2027-02-01 → 2027-03-01  30.00
        2027-03-01  fee_advance       Pro/fee  2027-03-01 → 2027-04-01  30.00
        2027-03-01  proration_credit  Pro/fee  2027-03-01 → 2027-04-01  -30.00
        """,
    ),
    Scenario(
        "cancel now in the middle, crediting the unused part",
        BASIC_PRO,
        """
        2027-02-01           subscribe Pro
        2027-03-16 12:00:00  cancel now credit
        2027-06-01           until
        """,
        """
        2027-02-01           fee_advance       Pro/fee  2027-02-01 → 2027-03-01        30.00
        2027-03-01           fee_advance       Pro/fee  2027-03-01 → 2027-04-01        30.00
        2027-03-16 12:00     proration_credit  Pro/fee  2027-03-16 12:00 → 2027-04-01  -15.00
        """,
    ),
    Scenario(
        "cancel now at the last second: nothing left worth a cent",
        BASIC_PRO,
        """
        2027-02-01           subscribe Pro
        2027-03-31 23:59:59  cancel now credit
        2027-06-01           until
        """,
        """
        2027-02-01  fee_advance  Pro/fee  2027-02-01 → 2027-03-01  30.00
        2027-03-01  fee_advance  Pro/fee  2027-03-01 → 2027-04-01  30.00
        """,
    ),
    Scenario(
        "cancel now without credit (the plan's default)",
        BASIC_PRO,
        """
        2027-02-01           subscribe Pro
        2027-02-15           cancel now
        2027-06-01           until
        """,
        """
        2027-02-01  fee_advance  Pro/fee  2027-02-01 → 2027-03-01  30.00
        """,
    ),
    Scenario(
        "cancel at period end, revoked, then cancelled again: ends at the boundary",
        {"Pro": plan("month", fee(3000), fee(500, "in_arrears", key="support"))},
        """
        2027-02-01  subscribe Pro
        2027-02-10  cancel period_end
        2027-02-11  resume
        2027-03-20  cancel period_end
        2027-06-01  until
        """,
        """
        2027-02-01  fee_advance  Pro/fee      2027-02-01 → 2027-03-01  30.00
        2027-03-01  fee_arrears  Pro/support  2027-02-01 → 2027-03-01  5.00
        2027-03-01  fee_advance  Pro/fee      2027-03-01 → 2027-04-01  30.00
        2027-04-01  fee_arrears  Pro/support  2027-03-01 → 2027-04-01  5.00
        """,
    ),
    # Trials, usage across a change, intervals ----------------------------------------------
    Scenario(
        "trial converts: usage in the trial is free, the first period starts at its end",
        {"Pro": plan("month", fee(2000), metered("tokens", "tokens", unit_price="0.01"))},
        """
        2027-03-01 12:00  subscribe Pro trial=14
        2027-03-05        usage tokens 500
        2027-03-20        usage tokens 300
        2027-05-01        until
        """,
        """
        2027-03-15 12:00  fee_advance  Pro/fee     2027-03-15 12:00 → 2027-04-15 12:00  20.00
        2027-04-15 12:00  usage        Pro/tokens  2027-03-15 12:00 → 2027-04-15 12:00  3.00
        2027-04-15 12:00  fee_advance  Pro/fee     2027-04-15 12:00 → 2027-05-15 12:00  20.00
        """,
    ),
    Scenario(
        "trial ends without converting: nothing billed",
        PRO20,
        """
        2027-03-01  subscribe Pro trial=14 trial_end=cancel
        2027-05-01  until
        """,
        """
        """,
    ),
    Scenario(
        "usage before a change rated on the old version, after it on the new; included "
        "quantities and in-arrears fees prorated",
        {
            "Basic": plan(
                "month",
                fee(1000, "in_arrears"),
                metered("tokens", "tokens", unit_price="0.001", included_quantity=1000),
            ),
            "Pro": plan(
                "month",
                fee(3000, "in_arrears"),
                metered("tokens", "tokens", unit_price="0.0005", included_quantity=4000),
            ),
        },
        """
        2026-11-01  subscribe Basic
        2026-11-10  usage tokens 3000
        2026-11-16  change Pro
        2026-11-20  usage tokens 3000
        2026-12-01  until
        """,
        """
        # half the month each: Basic's 1,000 included → 500, Pro's 4,000 → 2,000
        2026-12-01  fee_arrears  Basic/fee     2026-11-01 → 2026-11-16  5.00
        2026-12-01  usage        Basic/tokens  2026-11-01 → 2026-11-16  2.50
        2026-12-01  fee_arrears  Pro/fee       2026-11-16 → 2026-12-01  15.00
        2026-12-01  usage        Pro/tokens    2026-11-16 → 2026-12-01  0.50
        """,
    ),
    Scenario(
        "monthly to yearly in the middle: a new period starts at once",
        {"Basic": plan("month", fee(1000)), "Annual": plan("year", fee(10000))},
        """
        2027-03-01           subscribe Basic
        2027-03-16 12:00:00  change Annual prorate_now
        2028-03-17           until
        """,
        """
        2027-03-01        fee_advance       Basic/fee   2027-03-01 → 2027-04-01              10.00
        2027-03-16 12:00  proration_credit  Basic/fee   2027-03-16 12:00 → 2027-04-01        -5.00
        2027-03-16 12:00  fee_advance       Annual/fee  2027-03-16 12:00 → 2028-03-16 12:00  100.00
        2028-03-16 12:00  fee_advance       Annual/fee  2028-03-16 12:00 → 2029-03-16 12:00  100.00
        """,
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_scenario(db: Database, scenario: Scenario) -> None:
    actual = play(db, scenario)
    expected = parse_table(scenario.expected)
    assert actual == expected, (
        f"\n{scenario.name}\nexpected:\n{format_table(expected)}\nactual:\n{format_table(actual)}"
    )
