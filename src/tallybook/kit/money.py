"""Money: integer minor units with an explicit ISO 4217 currency.

The one rounding rule
---------------------
Amounts are computed exactly in :class:`~decimal.Decimal` (quantity × unit price, proration
fractions, percentages) and rounded **once per line** to the currency's minor unit with
``ROUND_HALF_EVEN`` (banker's rounding: ties go to the even neighbour, so over millions of
lines the rounding errors cancel instead of drifting up). :func:`round_to_minor` is the only
place that rounds money; nothing else may call ``quantize`` on an amount.

A float never touches money: every constructor rejects ``float`` outright.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

from tallybook.kit.assets import UNIT_ASSET_EXPONENT, is_unit_asset
from tallybook.kit.errors import CommonCode, InvalidRequest
from tallybook.kit.invariant import invariant

#: The project's one rounding rule (see module docstring).
ROUNDING_RULE: Final = ROUND_HALF_EVEN
ROUNDING_RULE_NAME: Final = "half-even (banker's rounding), once per line, to the minor unit"

#: Wide enough that the product of a 64-bit amount and any quantity-precision factor is exact.
_EXACT_PRODUCT_CONTEXT: Final = decimal.Context(prec=100, rounding=ROUND_HALF_EVEN)

#: Amounts are stored in signed 64-bit columns; anything larger is refused at the edge.
AMOUNT_MINOR_MAX: Final = 2**63 - 1

# ISO 4217 active codes and their minor-unit exponents. Codes not listed are refused.
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
    "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR "
    "LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD "
    "PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN "
    "SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW ZWL"
)
CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    **{code: 0 for code in _EXPONENT_0.split()},
    **{code: 2 for code in _EXPONENT_2.split()},
    **{code: 3 for code in _EXPONENT_3.split()},
    **{code: 4 for code in _EXPONENT_4.split()},
}


def normalize_currency(
    currency: object, *, param: str = "currency", allow_units: bool = False
) -> str:
    """Return the upper-case ISO 4217 code, or raise ``currency_invalid`` naming ``param``.

    With ``allow_units`` a unit asset code (``U_TOKENS``, see :mod:`tallybook.kit.assets`) is
    accepted too: the ledger and :class:`Money` take both; customers and plans only currencies.
    """
    if not isinstance(currency, str):
        raise InvalidRequest(CommonCode.CURRENCY_INVALID, "currency must be a string", param=param)
    code = currency.strip().upper()
    if allow_units and is_unit_asset(code):
        return code
    if code not in CURRENCY_EXPONENTS:
        raise InvalidRequest(
            CommonCode.CURRENCY_INVALID,
            f"'{currency}' is not an ISO 4217 currency code",
            param=param,
        )
    return code


def currency_exponent(currency: str) -> int:
    code = normalize_currency(currency, allow_units=True)
    if is_unit_asset(code):
        return UNIT_ASSET_EXPONENT
    return CURRENCY_EXPONENTS[code]


def check_amount_minor(amount_minor: object, *, param: str = "amount_minor") -> int:
    """Validate an integer minor-unit amount (no floats, no bools, within 64 bits)."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise InvalidRequest(
            CommonCode.AMOUNT_INVALID,
            f"{param} must be an integer number of minor units",
            param=param,
        )
    if abs(amount_minor) > AMOUNT_MINOR_MAX:
        raise InvalidRequest(
            CommonCode.AMOUNT_TOO_LARGE,
            f"{param} must be at most {AMOUNT_MINOR_MAX} in absolute value",
            param=param,
        )
    return amount_minor


def round_to_minor(amount_major: Decimal, currency: str) -> int:
    """Round an exact major-unit amount to integer minor units with the one rounding rule."""
    invariant(isinstance(amount_major, Decimal), "round_to_minor takes a Decimal")
    exponent = currency_exponent(currency)
    # Scaling must be exact, or the value would be rounded once by the context and again by
    # the rule: use a context wide enough for every digit of the input.
    digits = len(amount_major.as_tuple().digits)
    context = decimal.Context(prec=max(digits + exponent + 2, 40), rounding=ROUNDING_RULE)
    minor = amount_major.scaleb(exponent, context=context).quantize(
        Decimal(1), rounding=ROUNDING_RULE, context=context
    )
    return int(minor)


class CurrencyMismatch(InvalidRequest):
    def __init__(self, left: str, right: str, *, param: str | None = "currency") -> None:
        super().__init__(
            CommonCode.CURRENCY_MISMATCH,
            f"cannot combine {left} and {right} amounts",
            param=param,
        )


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An amount of one currency in integer minor units (cents for USD, yen for JPY), or of one
    unit asset in micro-units (usage credits, see :mod:`tallybook.kit.assets`)."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        check_amount_minor(self.amount_minor)
        normalized = normalize_currency(self.currency, allow_units=True)
        if normalized != self.currency:
            object.__setattr__(self, "currency", normalized)

    # Construction -------------------------------------------------------------------------
    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def from_major(cls, amount_major: Decimal | int | str, currency: str) -> Money:
        """Build from a major-unit amount (``Decimal("12.345")`` USD → 1234 cents, half-even).

        Strings are parsed as decimals; floats are refused.
        """
        if isinstance(amount_major, float):
            raise TypeError("Money never takes a float; pass a Decimal or a string")
        return cls(round_to_minor(Decimal(amount_major), currency), currency)

    # Arithmetic ---------------------------------------------------------------------------
    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.amount_minor), self.currency)

    def __mul__(self, factor: int) -> Money:
        """Multiply by an integer count. Use :meth:`scale` for fractional factors."""
        if isinstance(factor, bool) or not isinstance(factor, int):
            raise TypeError("Money * int only; use Money.scale(Decimal) for fractions")
        return Money(self.amount_minor * factor, self.currency)

    __rmul__ = __mul__

    def scale(self, factor: Decimal) -> Money:
        """Multiply by an exact decimal factor and round once with the rounding rule."""
        if not isinstance(factor, Decimal):
            raise TypeError("Money.scale takes a Decimal")
        exact = self.to_major().fma(factor, Decimal(0), context=_EXACT_PRODUCT_CONTEXT)
        return Money(round_to_minor(exact, self.currency), self.currency)

    def _cmp(self, other: Money) -> tuple[int, int]:
        self._same(other)
        return self.amount_minor, other.amount_minor

    def __lt__(self, other: Money) -> bool:
        a, b = self._cmp(other)
        return a < b

    def __le__(self, other: Money) -> bool:
        a, b = self._cmp(other)
        return a <= b

    def __gt__(self, other: Money) -> bool:
        a, b = self._cmp(other)
        return a > b

    def __ge__(self, other: Money) -> bool:
        a, b = self._cmp(other)
        return a >= b

    def is_zero(self) -> bool:
        return self.amount_minor == 0

    # Conversion ---------------------------------------------------------------------------
    def to_major(self) -> Decimal:
        return Decimal(self.amount_minor).scaleb(-currency_exponent(self.currency))

    def format(self) -> str:
        """Human text: ``"12.34 USD"``, ``"-0.05 EUR"``, ``"1200 JPY"``."""
        exponent = currency_exponent(self.currency)
        text = f"{self.to_major():.{exponent}f}"
        return f"{text} {self.currency}"

    def __str__(self) -> str:
        return self.format()

    def allocate(self, weights: Sequence[int]) -> list[Money]:
        """Split into parts proportional to integer ``weights`` that sum back exactly.

        Largest-remainder method: each part gets the floor of its share, and the leftover
        minor units go to the parts with the largest remainders (earliest first on ties).
        """
        invariant(len(weights) > 0, "allocate needs at least one weight")
        invariant(all(w >= 0 for w in weights), "allocate weights must be non-negative")
        total_weight = sum(weights)
        invariant(total_weight > 0, "allocate weights must not all be zero")
        sign = -1 if self.amount_minor < 0 else 1
        amount = abs(self.amount_minor)
        floors = [amount * w // total_weight for w in weights]
        remainders = [amount * w % total_weight for w in weights]
        leftover = amount - sum(floors)
        order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
        for i in order[:leftover]:
            floors[i] += 1
        parts = [Money(sign * f, self.currency) for f in floors]
        invariant(sum(p.amount_minor for p in parts) == self.amount_minor, "allocate lost cents")
        return parts


def sum_money(amounts: Iterable[Money], currency: str) -> Money:
    """Sum amounts of one currency; an empty iterable sums to zero of ``currency``."""
    total = Money.zero(currency)
    for amount in amounts:
        total = total + amount
    return total
