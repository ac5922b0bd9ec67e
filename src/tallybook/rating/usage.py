"""The usage price models, exactly (no rounding here: a line is rounded once, by the caller).

Conventions, shared with Stripe where it has one:

- A tier covers ``(previous up_to, up_to]``: at exactly ``up_to`` the quantity is still in the
  tier; the next unit (or fraction of one) is in the next.
- ``graduated``: each tier prices the part of the quantity inside it; a tier's flat fee is
  charged once as soon as any quantity falls inside it.
- ``volume``: the tier holding the whole quantity prices every unit, plus its flat fee.
- ``package``: ``ceil`` (``up``) or ``floor`` (``down``) of quantity / package size, times the
  package price.
- A quantity of zero (or less: negative usage is treated as none) costs nothing in every
  model, flat fees of tiers included.
- Included units are taken off the quantity first; the model prices what is left (so with
  1,000 included units and a first graduated tier up to 10,000, the first billed unit is the
  1,001st consumed and it is priced by the first tier).
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tallybook.catalog.pricing import PackageRounding, PriceDef, Tier, UsageModel
from tallybook.kit.invariant import invariant, unreachable
from tallybook.rating.arithmetic import EXACT, add, minor_to_major, mul, sub

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class TierUsage:
    index: int
    lower: Decimal
    up_to: Decimal | None
    quantity: Decimal
    unit_price: Decimal
    flat_fee_minor: int
    amount: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.index,
            "from": self.lower,
            "up_to": self.up_to,
            "quantity": self.quantity,
            "unit_price": self.unit_price,
            "flat_fee_minor": self.flat_fee_minor,
            "amount": self.amount,
        }


@dataclass(frozen=True, slots=True)
class ModelCharge:
    """The exact major-unit amount a model charges for a billable quantity, and why."""

    amount: Decimal
    tiers: tuple[TierUsage, ...] = ()
    packages: Decimal | None = None


def _lower_bounds(tiers: tuple[Tier, ...]) -> list[Decimal]:
    lowers = [ZERO]
    for tier in tiers[:-1]:
        invariant(tier.up_to is not None, "only the last tier may be open-ended")
        lowers.append(tier.up_to)  # type: ignore[arg-type]
    return lowers


def graduated(tiers: tuple[Tier, ...], quantity: Decimal, currency: str) -> ModelCharge:
    used: list[TierUsage] = []
    total = ZERO
    if quantity <= 0:
        return ModelCharge(ZERO)
    for index, (tier, lower) in enumerate(zip(tiers, _lower_bounds(tiers), strict=True)):
        if quantity <= lower:
            break
        top = quantity if tier.up_to is None else min(quantity, tier.up_to)
        inside = sub(top, lower)
        amount = add(mul(inside, tier.unit_price), minor_to_major(tier.flat_fee_minor, currency))
        total = add(total, amount)
        used.append(
            TierUsage(
                index, lower, tier.up_to, inside, tier.unit_price, tier.flat_fee_minor, amount
            )
        )
    return ModelCharge(total, tuple(used))


def volume_tier_index(tiers: tuple[Tier, ...], quantity: Decimal) -> int:
    for index, tier in enumerate(tiers):
        if tier.up_to is None or quantity <= tier.up_to:
            return index
    unreachable("the last tier is open-ended")


def volume(tiers: tuple[Tier, ...], quantity: Decimal, currency: str) -> ModelCharge:
    if quantity <= 0:
        return ModelCharge(ZERO)
    index = volume_tier_index(tiers, quantity)
    tier = tiers[index]
    amount = add(mul(quantity, tier.unit_price), minor_to_major(tier.flat_fee_minor, currency))
    lower = _lower_bounds(tiers)[index]
    usage = TierUsage(
        index, lower, tier.up_to, quantity, tier.unit_price, tier.flat_fee_minor, amount
    )
    return ModelCharge(amount, (usage,))


def package_count(quantity: Decimal, size: Decimal, rounding: PackageRounding) -> Decimal:
    if quantity <= 0:
        return ZERO
    mode = decimal.ROUND_CEILING if rounding == PackageRounding.UP else decimal.ROUND_FLOOR
    context = decimal.Context(prec=EXACT.prec, rounding=mode)
    blocks = context.divide(quantity, size)
    return blocks.to_integral_value(rounding=mode, context=context)


def package(
    size: Decimal, price: Decimal, rounding: PackageRounding, quantity: Decimal
) -> ModelCharge:
    blocks = package_count(quantity, size, rounding)
    return ModelCharge(mul(blocks, price), packages=blocks)


def per_unit(unit_price: Decimal, quantity: Decimal) -> ModelCharge:
    if quantity <= 0:
        return ModelCharge(ZERO)
    return ModelCharge(mul(quantity, unit_price))


def model_charge(price: PriceDef, billable: Decimal, currency: str) -> ModelCharge:
    """What ``price``'s model charges for ``billable`` units (after included units)."""
    model = price.model
    if model == UsageModel.PER_UNIT:
        invariant(price.unit_price is not None, "per_unit price without unit_price")
        return per_unit(price.unit_price, billable)  # type: ignore[arg-type]
    if model == UsageModel.GRADUATED:
        return graduated(price.tiers, billable, currency)
    if model == UsageModel.VOLUME:
        return volume(price.tiers, billable, currency)
    if model == UsageModel.PACKAGE:
        invariant(
            price.package_size is not None
            and price.package_price is not None
            and price.package_rounding is not None,
            "package price without its size, price or rounding",
        )
        return package(
            price.package_size,  # type: ignore[arg-type]
            price.package_price,  # type: ignore[arg-type]
            price.package_rounding,  # type: ignore[arg-type]
            billable,
        )
    unreachable(f"unknown usage model {model!r}")
