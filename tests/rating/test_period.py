"""Rating a whole period: usage per phase under each phase's version, in-arrears fees and
included quantities prorated by each phase's share, and the minimum commitment true-up."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.kit.clock import utc
from tallybook.kit.invariant import InvariantViolation
from tallybook.rating import (
    BillingPeriod,
    LineKind,
    RatingPhase,
    rate_subscription_period,
    usage_requests,
)
from tests.rating.builders import price, terms

NOVEMBER = BillingPeriod.whole(utc(2026, 11, 1), utc(2026, 12, 1))
MID = utc(2026, 11, 16)  # exactly half of November

BASIC = terms(
    price("price_fee", amount_minor=1000, timing="in_arrears", key="fee", name="Basic fee"),
    price(
        "price_tok_b",
        meter_id="mtr_tokens",
        model="per_unit",
        unit_price="0.001",
        included_quantity="1000",
        key="tokens",
        name="Tokens",
    ),
    version_id="pv_basic",
    name="Basic",
)
PRO = terms(
    price("price_fee_p", amount_minor=3000, timing="in_arrears", key="fee", name="Pro fee"),
    price(
        "price_tok_p",
        meter_id="mtr_tokens",
        model="per_unit",
        unit_price="0.0005",
        included_quantity="4000",
        key="tokens",
        name="Tokens",
    ),
    version_id="pv_pro",
    name="Pro",
)


def lines_of(period: BillingPeriod, phases: list[RatingPhase], usage: dict, **kw: int) -> list:  # type: ignore[type-arg]
    rated = rate_subscription_period(period, phases, usage, **kw)
    return [(line.kind, line.plan_version_id, line.amount_minor) for line in rated.lines]


def test_one_phase_is_the_whole_period() -> None:
    phases = [RatingPhase("ph1", NOVEMBER.start, None, BASIC)]
    assert lines_of(NOVEMBER, phases, {("ph1", "price_tok_b"): Decimal(3000)}) == [
        (LineKind.FEE_ARREARS, "pv_basic", 1000),
        (LineKind.USAGE, "pv_basic", 200),  # 2,000 over the 1,000 included × 0.001
    ]


def test_a_change_mid_period_rates_each_side_under_its_own_version() -> None:
    phases = [
        RatingPhase("ph1", utc(2026, 10, 1), MID, BASIC),
        RatingPhase("ph2", MID, None, PRO),
    ]
    usage = {("ph1", "price_tok_b"): Decimal(3000), ("ph2", "price_tok_p"): Decimal(3000)}
    assert lines_of(NOVEMBER, phases, usage) == [
        (LineKind.FEE_ARREARS, "pv_basic", 500),  # half of 10.00
        (LineKind.USAGE, "pv_basic", 250),  # 3,000 − 500 included (half of 1,000) × 0.001
        (LineKind.FEE_ARREARS, "pv_pro", 1500),  # half of 30.00
        (LineKind.USAGE, "pv_pro", 50),  # 3,000 − 2,000 included (half of 4,000) × 0.0005
    ]


def test_the_included_quantity_used_is_in_the_breakdown() -> None:
    phases = [RatingPhase("ph1", utc(2026, 11, 11), None, BASIC)]
    period = replace(NOVEMBER, start=utc(2026, 11, 11))  # a first period from the 11th
    rated = rate_subscription_period(period, phases, {("ph1", "price_tok_b"): Decimal(1000)})
    usage = next(line for line in rated.lines if line.kind == LineKind.USAGE)
    assert usage.breakdown["included_applied"] == Decimal("666.666666666667")  # 20/30 of 1,000
    assert usage.breakdown["billable_quantity"] == Decimal("333.333333333333")
    assert usage.amount_minor == 33  # 0.333… → 33 cents
    assert usage.breakdown["proration"]["seconds"] == 20 * 86400


def test_a_cap_is_prorated_with_the_phase() -> None:
    capped = terms(
        price(
            "price_cap",
            meter_id="mtr_tokens",
            model="per_unit",
            unit_price="1",
            max_charge_minor=10000,
        )
    )
    phases = [RatingPhase("ph1", MID, None, capped)]
    rated = rate_subscription_period(NOVEMBER, phases, {("ph1", "price_cap"): Decimal(500)})
    [line] = rated.lines
    assert line.amount_minor == 5000  # half the period: half the 100.00 cap
    assert line.breakdown["capped"] is True


@pytest.mark.parametrize(
    ("tokens", "advance_charged", "true_up"),
    [
        (0, 0, 4000),  # nothing used: 50.00 minimum − the 10.00 fee
        (20000, 0, 2100),  # 10.00 fee + 19.00 usage (19,000 over the included 1,000)
        (100000, 0, None),  # 99.00 usage + 10.00 fee: above the minimum
        (0, 4000, None),  # 40.00 charged in advance counts too
    ],
)
def test_minimum_commitment_true_up(tokens: int, advance_charged: int, true_up: int | None) -> None:
    committed = replace(BASIC, minimum_commitment_minor=5000)
    phases = [RatingPhase("ph1", NOVEMBER.start, None, committed)]
    rated = rate_subscription_period(
        NOVEMBER,
        phases,
        {("ph1", "price_tok_b"): Decimal(tokens)},
        advance_charged_minor=advance_charged,
    )
    ups = [line for line in rated.lines if line.kind == LineKind.MINIMUM_TRUE_UP]
    if true_up in (None, 0):
        assert ups == []
    else:
        assert [line.amount_minor for line in ups] == [true_up]
        assert rated.total_minor + advance_charged == 5000


def test_the_minimum_is_prorated_per_phase() -> None:
    phases = [
        RatingPhase("ph1", NOVEMBER.start, MID, replace(BASIC, minimum_commitment_minor=2000)),
        RatingPhase("ph2", MID, None, replace(PRO, minimum_commitment_minor=10000)),
    ]
    usage = {("ph1", "price_tok_b"): Decimal(0), ("ph2", "price_tok_p"): Decimal(0)}
    rated = rate_subscription_period(NOVEMBER, phases, usage)
    true_up = rated.lines[-1]
    # 10.00 + 50.00 committed; 5.00 + 15.00 of fees charged.
    assert (true_up.kind, true_up.amount_minor) == (LineKind.MINIMUM_TRUE_UP, 4000)
    assert true_up.breakdown["commitment_minor"] == 6000


def test_a_trial_period_is_never_billed() -> None:
    phases = [RatingPhase("ph1", NOVEMBER.start, None, BASIC)]
    trial = replace(NOVEMBER, trial=True)
    assert rate_subscription_period(trial, phases, {}).lines == ()
    assert usage_requests(trial, phases) == []


def test_usage_requests_name_every_quantity_needed() -> None:
    phases = [
        RatingPhase("ph1", utc(2026, 10, 1), MID, BASIC),
        RatingPhase("ph2", MID, None, PRO),
        RatingPhase("ph0", utc(2026, 9, 1), utc(2026, 10, 1), BASIC),  # before the period
    ]
    requests = usage_requests(NOVEMBER, phases)
    assert [(r.key, r.meter_id, r.start, r.end) for r in requests] == [
        (("ph1", "price_tok_b"), "mtr_tokens", NOVEMBER.start, MID),
        (("ph2", "price_tok_p"), "mtr_tokens", MID, NOVEMBER.end),
    ]


def test_missing_usage_is_a_programmer_error_never_a_zero() -> None:
    phases = [RatingPhase("ph1", NOVEMBER.start, None, BASIC)]
    with pytest.raises(InvariantViolation):
        rate_subscription_period(NOVEMBER, phases, {})


@settings(max_examples=150)
@given(
    st.integers(min_value=1, max_value=30 * 86400 - 1),
    st.integers(min_value=0, max_value=10**7),
    st.integers(min_value=0, max_value=10**7),
)
def test_in_arrears_fee_split_by_a_change_adds_up(cut: int, before: int, after: int) -> None:
    """Two phases of one version: their arrears fees add up to the whole fee (± a cent)."""
    from datetime import timedelta

    at = NOVEMBER.start + timedelta(seconds=cut)
    phases = [
        RatingPhase("ph1", NOVEMBER.start, at, BASIC),
        RatingPhase("ph2", at, None, BASIC),
    ]
    usage = {("ph1", "price_tok_b"): Decimal(before), ("ph2", "price_tok_b"): Decimal(after)}
    rated = rate_subscription_period(NOVEMBER, phases, usage)
    fees = [line.amount_minor for line in rated.lines if line.kind == LineKind.FEE_ARREARS]
    assert abs(sum(fees) - 1000) <= 1
    included = sum(
        (line.breakdown["included_applied"] for line in rated.lines if line.kind == LineKind.USAGE),
        start=Decimal(0),
    )
    assert abs(included - 1000) <= Decimal("0.000000000001")
