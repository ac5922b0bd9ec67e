"""Exact arithmetic for rating, and the one place a rated line is rounded.

- Quantities × unit prices and sums run in :data:`EXACT`, a decimal context that **traps
  inexact results**: a multiplication or addition that would lose a digit raises instead of
  rounding silently (the default context keeps only 28 digits, and ``0.0000025`` × a 38-digit
  quantity needs more).
- Time fractions (proration, a phase's share of a period) are :class:`~fractions.Fraction`
  of microseconds, so no fraction is ever rounded.
- :func:`round_line` turns the exact amount of a line into minor units once, with
  :func:`tallybook.kit.money.round_to_minor`. Fractions are converted to a decimal with
  :data:`_GUARD_DIGITS` more digits than the integer part: a fraction with denominator *d*
  that is not exactly a tie is at least ``1/(2d)`` away from one, and our denominators (a period
  in microseconds, at most ~10^14, times 10^4 for the currency exponent) are far smaller than
  ``10^_GUARD_DIGITS``, so half-even on the converted decimal equals half-even on the exact
  fraction (a property test checks it).
"""

from __future__ import annotations

import decimal
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Final

from tallybook.kit.invariant import invariant
from tallybook.kit.money import currency_exponent, round_to_minor
from tallybook.kit.quantity import QUANTITY_SCALE

EXACT: Final = decimal.Context(
    prec=200,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[
        decimal.Inexact,
        decimal.InvalidOperation,
        decimal.DivisionByZero,
        decimal.Overflow,
    ],
)
#: For the few deliberate roundings of quantities (not money): wide, half-even, no traps.
_WIDE: Final = decimal.Context(prec=200, rounding=decimal.ROUND_HALF_EVEN)
_GUARD_DIGITS: Final = 40
_QUANTITY_QUANTUM: Final = Decimal(1).scaleb(-QUANTITY_SCALE)


def mul(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.multiply(a, b)


def add(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.add(a, b)


def sub(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.subtract(a, b)


def minor_to_major(amount_minor: int, currency: str) -> Decimal:
    """An integer of minor units as an exact major-unit decimal (1234 USD cents → 12.34)."""
    return EXACT.scaleb(Decimal(amount_minor), Decimal(-currency_exponent(currency)))


def micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def time_fraction(part: timedelta, whole: timedelta) -> Fraction:
    """``part / whole`` exactly; ``whole`` must be positive."""
    whole_us = micros(whole)
    invariant(whole_us > 0, "time_fraction of an empty period")
    return Fraction(micros(part), whole_us)


def to_decimal(value: Fraction) -> Decimal:
    """A fraction as a decimal precise enough for half-even rounding (see module docstring)."""
    integer_digits = len(str(abs(value.numerator) // value.denominator))
    context = decimal.Context(prec=integer_digits + _GUARD_DIGITS, rounding=decimal.ROUND_DOWN)
    return context.divide(Decimal(value.numerator), Decimal(value.denominator))


def scale(amount: Decimal, fraction: Fraction) -> Fraction:
    """``amount × fraction`` exactly."""
    return Fraction(amount) * fraction


def round_line(amount_major: Decimal | Fraction, currency: str) -> int:
    """Round one line's exact major-unit amount to minor units with the project's one rule."""
    value = to_decimal(amount_major) if isinstance(amount_major, Fraction) else amount_major
    # round_to_minor scales by the exponent in the current context; give it room so that the
    # scaling itself never rounds.
    with decimal.localcontext(_WIDE):
        return round_to_minor(value, currency)


def quantity_share(quantity: Decimal, fraction: Fraction) -> Decimal:
    """A quantity scaled by a time fraction, rounded half-even to the storage scale (12
    places). Used for included quantities prorated by time: a quantity, never money."""
    exact = Fraction(quantity) * fraction
    return to_decimal(exact).quantize(_QUANTITY_QUANTUM, context=_WIDE)


def display_fraction(fraction: Fraction) -> Decimal:
    """A fraction shown to 12 decimal places in an explanation (never used to compute)."""
    return to_decimal(fraction).quantize(_QUANTITY_QUANTUM, context=_WIDE)
