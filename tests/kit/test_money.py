"""Money arithmetic and the one rounding rule, checked by example and by property."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallybook.kit.errors import InvalidRequest
from tallybook.kit.money import (
    AMOUNT_MINOR_MAX,
    CurrencyMismatch,
    Money,
    round_to_minor,
    sum_money,
)

amounts = st.integers(min_value=-(10**15), max_value=10**15)
currencies = st.sampled_from(["USD", "EUR", "JPY", "BHD", "GBP"])
weights = st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=12).filter(
    lambda ws: sum(ws) > 0
)


class TestConstruction:
    def test_rejects_float(self) -> None:
        with pytest.raises(InvalidRequest) as err:
            Money(1.5, "USD")  # type: ignore[arg-type]
        assert err.value.code == "amount_invalid"

    def test_rejects_bool(self) -> None:
        with pytest.raises(InvalidRequest):
            Money(True, "USD")

    def test_rejects_unknown_currency(self) -> None:
        with pytest.raises(InvalidRequest) as err:
            Money(1, "XXQ")
        assert err.value.code == "currency_invalid"
        assert err.value.param == "currency"

    def test_normalizes_currency_case(self) -> None:
        assert Money(5, "usd").currency == "USD"

    def test_rejects_amount_past_storage_limit(self) -> None:
        with pytest.raises(InvalidRequest) as err:
            Money(AMOUNT_MINOR_MAX + 1, "USD")
        assert err.value.code == "amount_too_large"

    def test_from_major_refuses_float(self) -> None:
        with pytest.raises(TypeError):
            Money.from_major(0.1, "USD")  # type: ignore[arg-type]


class TestRounding:
    @pytest.mark.parametrize(
        ("major", "currency", "minor"),
        [
            ("0.125", "USD", 12),  # tie goes to even
            ("0.135", "USD", 14),  # tie goes to even
            ("0.1251", "USD", 13),
            ("-0.125", "USD", -12),
            ("12.5", "JPY", 12),
            ("13.5", "JPY", 14),
            ("1.0005", "BHD", 1000),
            ("0.0000025", "USD", 0),
            ("1234567.891", "EUR", 123456789),
        ],
    )
    def test_half_even_to_minor_unit(self, major: str, currency: str, minor: int) -> None:
        assert round_to_minor(Decimal(major), currency) == minor

    def test_format(self) -> None:
        assert Money(1234, "USD").format() == "12.34 USD"
        assert Money(-5, "EUR").format() == "-0.05 EUR"
        assert Money(1200, "JPY").format() == "1200 JPY"
        assert Money(1, "BHD").format() == "0.001 BHD"


class TestArithmetic:
    def test_mixing_currencies_is_an_error(self) -> None:
        with pytest.raises(CurrencyMismatch):
            Money(1, "USD") + Money(1, "EUR")
        with pytest.raises(CurrencyMismatch):
            _ = Money(1, "USD") < Money(1, "EUR")

    @given(amounts, amounts, currencies)
    def test_addition_is_exact_and_commutative(self, a: int, b: int, currency: str) -> None:
        left = Money(a, currency) + Money(b, currency)
        assert left == Money(b, currency) + Money(a, currency)
        assert left.amount_minor == a + b

    @given(amounts, amounts, currencies)
    def test_subtraction_inverts_addition(self, a: int, b: int, currency: str) -> None:
        assert (Money(a, currency) + Money(b, currency)) - Money(b, currency) == Money(a, currency)

    @given(amounts, currencies)
    def test_major_round_trip(self, a: int, currency: str) -> None:
        money = Money(a, currency)
        assert Money.from_major(money.to_major(), currency) == money

    @given(amounts, weights, currencies)
    def test_allocate_sums_back_exactly(self, a: int, ws: list[int], currency: str) -> None:
        parts = Money(a, currency).allocate(ws)
        assert sum_money(parts, currency) == Money(a, currency)
        total_weight = sum(ws)
        for part, weight in zip(parts, ws, strict=True):
            exact = Decimal(a) * weight / total_weight
            assert abs(Decimal(part.amount_minor) - exact) < 1

    @given(
        st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=6),
        currencies,
    )
    def test_rounding_error_is_at_most_half_a_minor_unit(
        self, major: Decimal, currency: str
    ) -> None:
        minor = round_to_minor(major, currency)
        exponent = {"JPY": 0, "BHD": 3}.get(currency, 2)
        assert abs(Decimal(minor) - major.scaleb(exponent)) <= Decimal("0.5")

    @given(st.decimals(min_value=Decimal(0), max_value=Decimal(1), places=8), amounts, currencies)
    def test_scale_rounds_once(self, factor: Decimal, a: int, currency: str) -> None:
        scaled = Money(a, currency).scale(factor)
        assert scaled.amount_minor == round_to_minor(
            Money(a, currency).to_major() * factor, currency
        )


class TestRoundingPrecision:
    """Regression: scaling in the default 28-digit context rounded once before the rule did."""

    def test_more_than_28_significant_digits_round_once(self) -> None:
        assert round_to_minor(Decimal("0.12500000000000000000000000001"), "USD") == 13

    def test_tiny_unit_price_times_huge_quantity(self) -> None:
        amount = Decimal("0.0000025") * Decimal("123456789012345678901.5")
        assert round_to_minor(amount, "USD") == 30864197253086420

    def test_scale_by_a_long_factor_is_exact_before_rounding(self) -> None:
        factor = Decimal("0.5000000000000000000000000000001")
        assert Money(5, "USD").scale(factor).amount_minor == 3  # 2.5000…0005 → 3, not 2
