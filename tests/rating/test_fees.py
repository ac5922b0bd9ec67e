"""Flat fees and proration: shares of a period, credits for unused prepaid time, and the
properties that keep them honest (splits add up; credits never exceed charges)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.kit.clock import utc
from tallybook.rating import (
    BillingPeriod,
    LineKind,
    PrepaidCharge,
    advance_fee_lines,
    fee_share_line,
    proration_charge_lines,
    proration_credit_line,
)
from tests.rating.builders import price, terms

NOVEMBER = BillingPeriod.whole(utc(2026, 11, 1), utc(2026, 12, 1))  # 30 days


def fee_terms(amount_minor: int, *, name: str = "Pro", timing: str = "in_advance") -> object:
    return terms(price(amount_minor=amount_minor, timing=timing), name=name)


class TestAdvanceFees:
    def test_a_whole_period_is_the_whole_fee(self) -> None:
        [line] = advance_fee_lines(fee_terms(2000), NOVEMBER)  # type: ignore[arg-type]
        assert (line.kind, line.amount_minor) == (LineKind.FEE_ADVANCE, 2000)
        assert "proration" not in line.breakdown

    def test_a_first_period_after_the_anchor_day_is_billed_in_part(self) -> None:
        # Anchor on the 1st, start on Nov 21 09:00: 9 days 15 hours of 30 days.
        period = BillingPeriod(utc(2026, 11, 21, 9), NOVEMBER.end, NOVEMBER.start, NOVEMBER.end)
        [line] = advance_fee_lines(fee_terms(3000), period)  # type: ignore[arg-type]
        assert line.amount_minor == 962  # 3000 × 831600 / 2592000 = 962.5 → even (962)
        assert line.breakdown["proration"]["seconds"] == 831_600
        assert line.breakdown["proration"]["period_seconds"] == 2_592_000

    def test_trial_periods_bill_nothing(self) -> None:
        trial = replace(NOVEMBER, trial=True)
        assert advance_fee_lines(fee_terms(2000), trial) == []  # type: ignore[arg-type]

    def test_in_arrears_fees_are_not_billed_in_advance(self) -> None:
        assert advance_fee_lines(fee_terms(2000, timing="in_arrears"), NOVEMBER) == []  # type: ignore[arg-type]


class TestCredits:
    charge = PrepaidCharge(
        charge_id="pch_1",
        amount_minor=2000,
        credited_minor=0,
        currency="USD",
        service_start=NOVEMBER.start,
        service_end=NOVEMBER.end,
        description="Pro: Base fee",
    )

    @pytest.mark.parametrize(
        ("at", "credit"),
        [
            (utc(2026, 11, 1), 2000),  # first second: everything back
            (utc(2026, 11, 16), 1000),  # the middle
            (utc(2026, 11, 30, 23, 59, 59), 0),  # last second: 2000/2592000 → 0.0008 cents
            (utc(2026, 12, 1), None),  # after the end: nothing to credit
        ],
    )
    def test_credit_for_the_unused_part(self, at: datetime, credit: int | None) -> None:
        line = proration_credit_line(self.charge, at)
        if credit is None or credit == 0:
            assert line is None
        else:
            assert line is not None
            assert (line.kind, line.amount_minor) == (LineKind.PRORATION_CREDIT, -credit)
            assert line.breakdown["charge_id"] == "pch_1"

    def test_a_credit_never_exceeds_what_is_left_on_the_charge(self) -> None:
        partly = replace(self.charge, credited_minor=1900)
        line = proration_credit_line(partly, utc(2026, 11, 16))
        assert line is not None and line.amount_minor == -100
        assert line.breakdown["capped"] is True

    def test_a_charge_credited_once_pays_for_nothing_after(self) -> None:
        credited = replace(self.charge, credited_minor=1000, credited_from=utc(2026, 11, 16))
        assert proration_credit_line(credited, utc(2026, 11, 20)) is None
        # Crediting from before that instant can only cover the time still paid for.
        line = proration_credit_line(credited, utc(2026, 11, 11))
        assert line is not None and line.amount_minor == -333  # 5 of 30 days

    def test_remaining_part_of_a_new_fee(self) -> None:
        [line] = proration_charge_lines(fee_terms(6000), NOVEMBER, utc(2026, 11, 21))  # type: ignore[arg-type]
        assert (line.kind, line.amount_minor) == (LineKind.PRORATION_CHARGE, 2000)
        assert proration_charge_lines(fee_terms(6000), NOVEMBER, NOVEMBER.end) == []  # type: ignore[arg-type]


# Properties ---------------------------------------------------------------------------------

starts = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)).map(
    lambda d: d.replace(microsecond=0, tzinfo=utc(2000, 1, 1).tzinfo)
)


@st.composite
def period_and_cuts(draw: st.DrawFn, cuts_max: int = 6) -> tuple[BillingPeriod, list[datetime]]:
    start = draw(starts)
    length = draw(st.sampled_from([86_400, 7 * 86_400, 28 * 86_400, 31 * 86_400, 366 * 86_400]))
    offsets = sorted(draw(st.sets(st.integers(1, length - 1), max_size=cuts_max)))
    return (
        BillingPeriod.whole(start, start + timedelta(seconds=length)),
        [start + timedelta(seconds=o) for o in offsets],
    )


@settings(max_examples=300)
@given(period_and_cuts(), st.integers(min_value=0, max_value=10**9))
def test_shares_over_any_split_add_up_to_the_whole_fee(
    split: tuple[BillingPeriod, list[datetime]], fee_minor: int
) -> None:
    period, cuts = split
    version = fee_terms(fee_minor)
    edges = [period.start, *cuts, period.end]
    pieces = [
        fee_share_line(
            version,  # type: ignore[arg-type]
            version.prices[0],  # type: ignore[attr-defined]
            period,
            a,
            b,
            kind=LineKind.PRORATION_CHARGE,
        ).amount_minor
        for a, b in zip(edges, edges[1:], strict=False)
    ]
    # Each piece is rounded once (at most half a cent off), so n pieces are within n/2.
    assert abs(sum(pieces) - fee_minor) * 2 <= len(pieces)


@settings(max_examples=300)
@given(
    period_and_cuts(cuts_max=8),
    st.lists(st.integers(min_value=0, max_value=10**7), min_size=9, max_size=9),
)
def test_chained_changes_never_pay_back_more_than_was_paid(
    split: tuple[BillingPeriod, list[datetime]], fees_minor: list[int]
) -> None:
    """Upgrade, downgrade, upgrade… in one period, each change crediting what is unused and
    charging the rest of the next fee: the customer pays each fee for the time it was in
    force (within the roundings), and no charge is ever credited beyond its amount."""
    period, cuts = split
    first = fee_terms(fees_minor[0])
    [opening] = advance_fee_lines(first, period)  # type: ignore[arg-type]
    live = [PrepaidCharge("c0", opening.amount_minor, 0, "USD", period.start, period.end, "fee 0")]
    settled: list[PrepaidCharge] = []
    paid = opening.amount_minor
    lines = 1
    for index, at in enumerate(cuts, start=1):
        still_live = []
        for charge in live:
            credit = proration_credit_line(charge, at)
            if credit is not None:
                paid += credit.amount_minor
                lines += 1
                charge = replace(
                    charge,
                    credited_minor=charge.credited_minor - credit.amount_minor,
                    credited_from=credit.service_start,
                )
            assert 0 <= charge.credited_minor <= charge.amount_minor
            (settled if charge.credited_from else still_live).append(charge)
        for line in proration_charge_lines(fee_terms(fees_minor[index]), period, at):  # type: ignore[arg-type]
            paid += line.amount_minor
            lines += 1
            still_live.append(
                PrepaidCharge(f"c{index}", line.amount_minor, 0, "USD", at, period.end, "fee")
            )
        live = still_live
    edges = [period.start, *cuts, period.end]
    pairs = list(zip(edges, edges[1:], strict=False))
    whole = (period.end - period.start) // timedelta(seconds=1)
    pairs = [
        ((a - period.start) // timedelta(seconds=1), (b - period.start) // timedelta(seconds=1))
        for a, b in pairs
    ]
    fair = sum(
        (Fraction(fees_minor[i]) * Fraction(b - a, whole) for i, (a, b) in enumerate(pairs)),
        start=Fraction(0),
    )
    assert paid >= 0
    assert abs(paid - fair) <= Fraction(lines, 2)
