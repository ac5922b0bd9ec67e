"""The usage price models, around every tier boundary, and their properties.

Tables read: quantity → amount in cents. Tiers (for graduated and volume)::

    tier 1: (0, 1000]      0.01 per unit
    tier 2: (1000, 5000]   0.008 per unit, + 5.00 flat when reached
    tier 3: (5000, ∞)      0.005 per unit
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.catalog.pricing import PackageRounding, Tier
from tallybook.kit.clock import utc
from tallybook.rating import BillingPeriod, usage_line
from tallybook.rating.arithmetic import round_line
from tallybook.rating.usage import graduated, package, volume
from tests.rating.builders import price, terms, tiers

MONTH = BillingPeriod.whole(utc(2026, 11, 1), utc(2026, 12, 1))
TIERS = tiers((1000, "0.01"), (5000, "0.008", 500), (None, "0.005"))


def rate(quantity: str | int, **price_fields: object) -> int:
    usage = price(meter_id="mtr_1", **price_fields)
    line = usage_line(terms(usage), usage, MONTH, (MONTH.start, MONTH.end), Decimal(quantity))
    return line.amount_minor


@pytest.mark.parametrize(
    ("quantity", "graduated_cents", "volume_cents"),
    [
        ("0", 0, 0),
        ("1", 1, 1),
        ("999", 999, 999),
        ("1000", 1000, 1000),  # the bound is inside tier 1
        ("1000.5", 1500, 1300),  # 10 + 0.004 + 5.00 / 8.004 + 5.00 (half-even: 1300.4 → 1300)
        ("1001", 1501, 1301),  # 15.008 / 13.008
        ("4999", 4699, 4499),
        ("5000", 4700, 4500),
        ("5001", 4700, 2500),  # 47.005 → 4700 (tie → even); 25.005 → 2500
        ("10000", 7200, 5000),
    ],
)
def test_graduated_and_volume_around_every_boundary(
    quantity: str, graduated_cents: int, volume_cents: int
) -> None:
    assert rate(quantity, model="graduated", tiers=TIERS) == graduated_cents
    assert rate(quantity, model="volume", tiers=TIERS) == volume_cents


@pytest.mark.parametrize(
    ("quantity", "up_cents", "down_cents"),
    [
        ("0", 0, 0),
        ("1", 200, 0),
        ("999", 200, 0),
        ("1000", 200, 200),
        ("1000.000000000001", 400, 200),
        ("1001", 400, 200),
        ("1999", 400, 200),
        ("2000", 400, 400),
        ("2001", 600, 400),
    ],
)
def test_package_partial_blocks_round_up_or_down(
    quantity: str, up_cents: int, down_cents: int
) -> None:
    fields = {"model": "package", "package_size": "1000", "package_price": "2.00"}
    assert rate(quantity, package_rounding="up", **fields) == up_cents
    assert rate(quantity, package_rounding="down", **fields) == down_cents


@pytest.mark.parametrize(
    ("tokens", "cents"),
    [
        ("1", 0),
        ("2000", 0),  # 0.005 → half a cent → even (0)
        ("6000", 2),  # 0.015 → 1.5 cents → even (2)
        ("1000000", 250),
        ("3000000", 750),
        ("123456789", 30864),  # 308.6419725
        ("123456789012.123456789012", 30864197),  # 308,641.97253… needs 40 digits exactly
    ],
)
def test_tiny_unit_prices_are_exact_and_rounded_once(tokens: str, cents: int) -> None:
    assert rate(tokens, model="per_unit", unit_price="0.0000025") == cents


@pytest.mark.parametrize(
    ("quantity", "cents"), [("0", 0), ("100", 0), ("100.5", 0), ("101", 1), ("150", 50)]
)
def test_included_quantity_is_free(quantity: str, cents: int) -> None:
    # 100.5: half a unit over → half a cent → rounds to even (0).
    assert rate(quantity, model="per_unit", unit_price="0.01", included_quantity="100") == cents


def test_included_quantity_comes_off_before_the_tiers() -> None:
    # 1,500 used, 1,000 included → 500 billable, all in tier 1.
    assert rate("1500", model="graduated", tiers=TIERS, included_quantity="1000") == 500


@pytest.mark.parametrize(("quantity", "cents"), [("400", 400), ("500", 500), ("600", 500)])
def test_maximum_charge_caps_the_line(quantity: str, cents: int) -> None:
    assert rate(quantity, model="per_unit", unit_price="0.01", max_charge_minor=500) == cents


def test_negative_usage_is_billed_as_none() -> None:
    assert rate("-50", model="per_unit", unit_price="0.01") == 0


def test_the_breakdown_explains_the_tiers() -> None:
    usage = price(meter_id="mtr_1", model="graduated", tiers=TIERS)
    line = usage_line(terms(usage), usage, MONTH, (MONTH.start, MONTH.end), Decimal(6000))
    applied = line.breakdown["tiers"]
    assert [(t["quantity"], t["unit_price"], t["flat_fee_minor"]) for t in applied] == [
        (Decimal(1000), Decimal("0.01"), 0),
        (Decimal(4000), Decimal("0.008"), 500),
        (Decimal(1000), Decimal("0.005"), 0),
    ]
    assert line.breakdown["exact_amount"] == Decimal("52.000")
    assert "half-even" in line.breakdown["rounding"]
    assert line.amount_minor == 5200


# Properties ---------------------------------------------------------------------------------

prices_ = st.decimals(min_value=0, max_value=5, places=4)
fees = st.integers(min_value=0, max_value=2000)


@st.composite
def tier_lists(draw: st.DrawFn) -> tuple[Tier, ...]:
    count = draw(st.integers(min_value=1, max_value=5))
    bounds = sorted(draw(st.sets(st.integers(1, 400), min_size=count - 1, max_size=count - 1)))
    uppers: list[Decimal | None] = [Decimal(b) for b in bounds] + [None]
    return tuple(Tier(up_to, draw(prices_), draw(fees)) for up_to in uppers)


def unit_by_unit(tiers_: tuple[Tier, ...], quantity: int) -> Decimal:
    """Reference for graduated pricing: price every unit by the tier it falls in."""
    total = Decimal(0)
    touched: set[int] = set()
    for unit in range(1, quantity + 1):
        lower = Decimal(0)
        for index, tier in enumerate(tiers_):
            if tier.up_to is None or unit <= tier.up_to:
                assert unit > lower
                total += tier.unit_price
                touched.add(index)
                break
            lower = tier.up_to
    flat = sum((Decimal(tiers_[i].flat_fee_minor) / 100 for i in touched), start=Decimal(0))
    return total + flat


@settings(max_examples=150)
@given(tier_lists(), st.integers(min_value=0, max_value=600))
def test_graduated_equals_the_sum_over_tiers(tiers_: tuple[Tier, ...], quantity: int) -> None:
    assert graduated(tiers_, Decimal(quantity), "USD").amount == unit_by_unit(tiers_, quantity)


@settings(max_examples=150)
@given(tier_lists(), st.decimals(min_value=0, max_value=800, places=3), st.decimals(0, 5, places=3))
def test_graduated_is_monotone(tiers_: tuple[Tier, ...], quantity: Decimal, more: Decimal) -> None:
    low = graduated(tiers_, quantity, "USD").amount
    high = graduated(tiers_, quantity + more, "USD").amount
    assert high >= low


def _boundaries_do_not_drop(tiers_: tuple[Tier, ...]) -> bool:
    """Whether a volume price never drops when a quantity crosses into the next tier."""
    for before, after in zip(tiers_, tiers_[1:], strict=False):
        assert before.up_to is not None
        top_of_before = before.up_to * before.unit_price + Decimal(before.flat_fee_minor) / 100
        start_of_after = before.up_to * after.unit_price + Decimal(after.flat_fee_minor) / 100
        if start_of_after < top_of_before:
            return False
    return True


@settings(max_examples=200)
@given(tier_lists(), st.decimals(min_value=0, max_value=800, places=3), st.decimals(0, 5, places=3))
def test_volume_is_monotone_within_a_tier_and_wherever_the_tiers_are(
    tiers_: tuple[Tier, ...], quantity: Decimal, more: Decimal
) -> None:
    low, high = volume(tiers_, quantity, "USD"), volume(tiers_, quantity + more, "USD")
    if quantity > 0 and low.tiers[0].index == high.tiers[0].index:
        assert high.amount >= low.amount
    if _boundaries_do_not_drop(tiers_):
        assert high.amount >= low.amount


@given(
    st.decimals(min_value="0.001", max_value=1000, places=3),
    st.decimals(min_value=0, max_value=50, places=2),
    st.decimals(min_value=0, max_value=100000, places=3),
)
def test_package_rounding_brackets_the_exact_share(
    size: Decimal, unit: Decimal, quantity: Decimal
) -> None:
    up = package(size, unit, PackageRounding.UP, quantity)
    down = package(size, unit, PackageRounding.DOWN, quantity)
    exact = Fraction(quantity) / Fraction(size)
    assert down.packages is not None and up.packages is not None
    assert down.packages <= exact <= up.packages
    assert up.packages - down.packages in (0, 1)
    assert up.amount == up.packages * unit


@settings(max_examples=200)
@given(
    st.fractions(min_value=-(10**9), max_value=10**9, max_denominator=10**14),
    st.sampled_from(["USD", "JPY", "BHD", "CLF"]),
)
def test_rounding_a_fraction_is_exact_half_even(value: Fraction, currency: str) -> None:
    exponent = {"USD": 2, "JPY": 0, "BHD": 3, "CLF": 4}[currency]
    scaled = value * 10**exponent
    floor = scaled.numerator // scaled.denominator
    remainder = scaled - floor
    if remainder > Fraction(1, 2) or (remainder == Fraction(1, 2) and floor % 2 == 1):
        expected = floor + 1
    else:
        expected = floor
    assert round_line(value, currency) == expected


@settings(max_examples=100)
@given(
    st.decimals(min_value=0, max_value=10**12, places=12),
    st.decimals(min_value=0, max_value=1, places=12),
)
def test_per_unit_is_rounded_once_from_the_exact_product(
    quantity: Decimal, unit_price: Decimal
) -> None:
    usage = price(meter_id="mtr_1", model="per_unit", unit_price=unit_price)
    line = usage_line(terms(usage), usage, MONTH, (MONTH.start, MONTH.end), quantity)
    assert line.amount_minor == round_line(Fraction(quantity) * Fraction(unit_price), "USD")
