"""Unit assets: usage credits counted in units of a meter, kept in the ledger like money.

A usage grant of 1.5 million tokens is a ledger wallet in the asset ``U_TOKENS``. Unit assets
have a fixed exponent of 6: amounts are integer micro-units (1 token = 1,000,000), so the
ledger's integer arithmetic, limits and invariants apply unchanged. Money and unit assets never
mix: a leg or a sum of two different assets is refused like two currencies.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

from tallybook.kit.errors import CommonCode, InvalidRequest

UNIT_ASSET_PREFIX: Final = "U_"
UNIT_ASSET_EXPONENT: Final = 6
UNIT_ASSET_PATTERN: Final = re.compile(r"^U_[A-Z][A-Z0-9_]{0,99}$")
#: Longest asset code: "U_" + a 100-character meter key.
ASSET_CODE_LENGTH_MAX: Final = 102
_MICRO: Final = Decimal(10) ** UNIT_ASSET_EXPONENT


def is_unit_asset(code: str) -> bool:
    return bool(UNIT_ASSET_PATTERN.match(code))


def unit_asset_for_meter_key(meter_key: str) -> str:
    """``tokens`` → ``U_TOKENS``."""
    code = UNIT_ASSET_PREFIX + meter_key.upper()
    if not is_unit_asset(code):
        raise ValueError(f"meter key {meter_key!r} has no unit asset")
    return code


def quantity_to_minor(quantity: Decimal, *, param: str = "quantity") -> int:
    """Exact conversion of a unit quantity to micro-units; finer quantities are refused."""
    scaled = quantity.scaleb(UNIT_ASSET_EXPONENT)
    if scaled != scaled.to_integral_value():
        raise InvalidRequest(
            CommonCode.QUANTITY_INVALID,
            f"{param} has more than {UNIT_ASSET_EXPONENT} decimal places",
            param=param,
        )
    return int(scaled)


def minor_to_quantity(amount_minor: int) -> Decimal:
    return Decimal(amount_minor) / _MICRO
