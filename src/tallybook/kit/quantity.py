"""Quantities and unit prices are :class:`~decimal.Decimal`, never float.

Persisted quantities keep :data:`QUANTITY_SCALE` decimal places (``NUMERIC(38, 12)`` on
PostgreSQL). Arithmetic runs in a local decimal context with :data:`QUANTITY_PRECISION`
significant digits, enough for 10^26 units at 12 decimal places without rounding.
"""

from __future__ import annotations

import decimal
import re
from decimal import Decimal, InvalidOperation
from typing import Final

from tallybook.kit.errors import CommonCode, InvalidRequest

QUANTITY_SCALE: Final = 12
QUANTITY_PRECISION: Final = 38
#: The largest quantity a meter value or a priced quantity may hold.
QUANTITY_MAX: Final = Decimal(10) ** (QUANTITY_PRECISION - QUANTITY_SCALE) - 1

QUANTITY_CONTEXT: Final = decimal.Context(prec=QUANTITY_PRECISION, rounding=decimal.ROUND_HALF_EVEN)
_ONE: Final = Decimal(1)


def to_decimal(value: object, *, param: str = "quantity", allow_negative: bool = True) -> Decimal:
    """Parse an int, Decimal or numeric string into a finite Decimal.

    Floats are refused because their binary value is not the decimal the caller wrote
    (JSON numbers are decoded straight to Decimal at the edge so they never become floats).
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidRequest(
            CommonCode.QUANTITY_INVALID,
            f"{param} must be an integer, a decimal string or a Decimal, not {type(value).__name__}",
            param=param,
        )
    try:
        if isinstance(value, Decimal):
            result = value
        elif isinstance(value, int):
            result = Decimal(value)
        elif isinstance(value, str):
            result = Decimal(value.strip())
        else:
            raise InvalidOperation
    except InvalidOperation:
        raise InvalidRequest(
            CommonCode.QUANTITY_INVALID, f"{param} is not a number: {value!r}", param=param
        ) from None
    if not result.is_finite():
        raise InvalidRequest(CommonCode.QUANTITY_INVALID, f"{param} must be finite", param=param)
    if abs(result) > QUANTITY_MAX:
        raise InvalidRequest(
            CommonCode.QUANTITY_INVALID, f"{param} exceeds the maximum {QUANTITY_MAX}", param=param
        )
    if not allow_negative and result < 0:
        raise InvalidRequest(
            CommonCode.QUANTITY_INVALID, f"{param} must not be negative", param=param
        )
    return result


def normalize_quantity(value: Decimal) -> Decimal:
    """Canonical form for storage and hashing: at most QUANTITY_SCALE places, no exponent."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -QUANTITY_SCALE:
        # Fast paths (the same results, fewer operations): nothing to round away.
        if -QUANTITY_MAX <= value <= QUANTITY_MAX:
            if exponent == 0:
                return value  # an integer written without exponent is already canonical
            if value == value.to_integral_value():
                return value.quantize(_ONE, context=QUANTITY_CONTEXT)
            return value.normalize(context=QUANTITY_CONTEXT)
    quantized = value.quantize(Decimal(1).scaleb(-QUANTITY_SCALE), context=QUANTITY_CONTEXT)
    normalized = quantized.normalize(context=QUANTITY_CONTEXT)
    # normalize() may produce exponent form such as 1E+3; rewrite it as an integer.
    if normalized == normalized.to_integral_value():
        return normalized.quantize(Decimal(1), context=QUANTITY_CONTEXT)
    return normalized


def quantity_text(value: Decimal) -> str:
    """Plain decimal text without exponent, for JSON and storage."""
    return format(normalize_quantity(value), "f")


_DIGIT_GROUPS: Final = re.compile(r"(\d)(?=(\d{3})+(?!\d))")


def group_digits(text: str) -> str:
    """``-1234567.891`` → ``-1,234,567.891`` (only the integer part is grouped)."""
    whole, dot, fraction = text.partition(".")
    return _DIGIT_GROUPS.sub(r"\1,", whole) + dot + fraction


def quantity_display(value: Decimal) -> str:
    """A quantity for people to read (invoice lines, documents, the console): the digits of
    :func:`quantity_text`, thousands grouped with commas (``1,234,567.5``)."""
    return group_digits(quantity_text(value))
