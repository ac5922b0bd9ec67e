"""Unit assets: usage credits in the ledger, exact and never mixed with money."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallybook.kit.assets import minor_to_quantity, quantity_to_minor, unit_asset_for_meter_key
from tallybook.kit.errors import InvalidRequest
from tallybook.kit.money import CurrencyMismatch, Money, normalize_currency


def test_codes() -> None:
    assert unit_asset_for_meter_key("gpu_seconds") == "U_GPU_SECONDS"
    assert normalize_currency("u_tokens", allow_units=True) == "U_TOKENS"
    with pytest.raises(InvalidRequest):
        normalize_currency("U_TOKENS")  # customers and plans take currencies only


def test_money_of_units_formats_and_refuses_mixing() -> None:
    credits = Money(1_500_000, "U_TOKENS")
    assert credits.format() == "1.500000 U_TOKENS"
    with pytest.raises(CurrencyMismatch):
        credits + Money(1, "USD")


def test_finer_than_a_micro_unit_is_refused() -> None:
    with pytest.raises(InvalidRequest) as err:
        quantity_to_minor(Decimal("0.0000001"), param="quantity")
    assert err.value.param == "quantity"


@given(st.decimals(min_value=0, max_value=10**12, places=6))
def test_round_trip(quantity: Decimal) -> None:
    assert minor_to_quantity(quantity_to_minor(quantity)) == quantity
