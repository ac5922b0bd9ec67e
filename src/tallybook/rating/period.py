"""Rating one billing period of a subscription: what is billed **at the end** of the period.

:func:`rate_subscription_period` returns, for a period and the phases overlapping it:

- a ``usage`` line per usage price per phase, rated under that phase's plan version on the
  usage measured inside the phase (so usage before a mid-period change is rated on the old
  version and usage after it on the new one). Included quantities and caps are prorated by
  the phase's share of the nominal period; tiers are not (each phase's quantity climbs the
  tiers from zero);
- a ``fee_arrears`` line per in-arrears flat fee per phase, prorated by the phase's share;
- a ``minimum_true_up`` line when what was charged for the period (the in-advance fees and
  prorations the subscription recorded for it, ``advance_charged_minor``, plus every line
  above) is below the period's minimum commitment, itself prorated per phase.

Fees billed in advance are not here: the subscription records them as pending charges when a
period starts or a change happens (see ``tallybook.rating.fees``), so nothing is billed twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from tallybook.catalog.domain import VersionTerms
from tallybook.catalog.pricing import FeeTiming, PriceDef, PriceType
from tallybook.kit.invariant import invariant
from tallybook.kit.money import ROUNDING_RULE_NAME
from tallybook.kit.quantity import quantity_display
from tallybook.rating.arithmetic import (
    display_fraction,
    micros,
    minor_to_major,
    quantity_share,
    round_line,
    sub,
    time_fraction,
    to_decimal,
)
from tallybook.rating.fees import fee_share_line, proration_info
from tallybook.rating.inputs import BillingPeriod, RatingPhase
from tallybook.rating.lines import LineKind, RatedLine, total_minor
from tallybook.rating.usage import ZERO, model_charge


@dataclass(frozen=True, slots=True)
class RatedPeriod:
    currency: str
    lines: tuple[RatedLine, ...]

    @property
    def total_minor(self) -> int:
        return total_minor(self.lines)


def _seconds(delta_start: Any, delta_end: Any) -> int:
    return micros(delta_end - delta_start) // 1_000_000


def usage_line(
    terms: VersionTerms,
    price: PriceDef,
    period: BillingPeriod,
    window: tuple[Any, Any],
    quantity: Decimal,
    *,
    phase_id: str | None = None,
) -> RatedLine:
    """One usage price rated on ``quantity`` measured in ``window`` (a phase's part of the
    period): included quantity and cap prorated by the window's share of the period."""
    start, end = window
    share = time_fraction(end - start, period.nominal_end - period.nominal_start)
    measured = quantity if quantity > 0 else ZERO
    included = price.included_quantity
    included_applied = included if share == 1 else quantity_share(included, share)
    billable = sub(measured, included_applied) if measured > included_applied else ZERO
    charge = model_charge(price, billable, terms.currency)
    exact: Fraction | Decimal = charge.amount
    breakdown: dict[str, Any] = {
        "model": str(price.model),
        "quantity": measured,
        "included_quantity": included,
        "included_applied": included_applied,
        "billable_quantity": billable,
    }
    if price.unit_price is not None:
        breakdown["unit_price"] = price.unit_price
    if charge.tiers:
        breakdown["tiers"] = [tier.to_dict() for tier in charge.tiers]
    if charge.packages is not None:
        breakdown.update(
            packages=charge.packages,
            package_size=price.package_size,
            package_price=price.package_price,
            package_rounding=str(price.package_rounding),
        )
    if price.max_charge_minor is not None:
        cap = Fraction(minor_to_major(price.max_charge_minor, terms.currency)) * share
        capped = Fraction(charge.amount) > cap
        if capped:
            exact = cap
        breakdown.update(
            max_charge_minor=price.max_charge_minor, cap=to_decimal(cap), capped=capped
        )
    if share != 1:
        breakdown["proration"] = proration_info(
            _seconds(start, end), _seconds(period.nominal_start, period.nominal_end)
        )
    breakdown["exact_amount"] = to_decimal(exact) if isinstance(exact, Fraction) else exact
    breakdown["rounding"] = ROUNDING_RULE_NAME
    unit = f" {price.meter_unit}" if price.meter_unit else ""
    return RatedLine(
        kind=LineKind.USAGE,
        description=f"{price.name}: {quantity_display(measured)}{unit} ({terms.plan_name})",
        currency=terms.currency,
        amount_minor=round_line(exact, terms.currency),
        service_start=start,
        service_end=end,
        quantity=measured,
        price_id=price.id or None,
        price_key=price.key,
        meter_id=price.meter_id,
        plan_version_id=terms.plan_version_id,
        phase_id=phase_id,
        breakdown=breakdown,
    )


def _minimum_true_up(
    period: BillingPeriod,
    phases: Sequence[RatingPhase],
    lines: Sequence[RatedLine],
    advance_charged_minor: int,
    currency: str,
) -> RatedLine | None:
    commitment = Fraction(0)
    parts = []
    for phase in phases:
        window = phase.window(period)
        minimum = phase.terms.minimum_commitment_minor
        if window is None or minimum is None:
            continue
        share = time_fraction(window[1] - window[0], period.nominal_end - period.nominal_start)
        commitment += Fraction(minor_to_major(minimum, currency)) * share
        parts.append(
            {
                "phase_id": phase.phase_id,
                "plan_version_id": phase.terms.plan_version_id,
                "minimum_commitment_minor": minimum,
                "share": display_fraction(share),
            }
        )
    if not parts:
        return None
    commitment_minor = round_line(commitment, currency)
    arrears_minor = total_minor(list(lines))
    charged_minor = advance_charged_minor + arrears_minor
    if charged_minor >= commitment_minor:
        return None
    return RatedLine(
        kind=LineKind.MINIMUM_TRUE_UP,
        description="Minimum commitment true-up",
        currency=currency,
        amount_minor=commitment_minor - charged_minor,
        service_start=period.start,
        service_end=period.end,
        breakdown={
            "commitment_exact": to_decimal(commitment),
            "commitment_minor": commitment_minor,
            "charged_minor": charged_minor,
            "advance_charged_minor": advance_charged_minor,
            "arrears_charged_minor": arrears_minor,
            "phases": parts,
            "rounding": ROUNDING_RULE_NAME,
        },
    )


def rate_subscription_period(
    period: BillingPeriod,
    phases: Sequence[RatingPhase],
    usage: Mapping[tuple[str, str], Decimal],
    *,
    advance_charged_minor: int = 0,
) -> RatedPeriod:
    """Every line billed at the end of ``period`` (see the module docstring).

    ``usage`` maps ``(phase_id, price_id)`` to the quantity measured for that price inside the
    phase's part of the period; :func:`~tallybook.rating.inputs.usage_requests` lists the keys
    it must hold (a missing one is a programmer error, never billed as zero).
    ``advance_charged_minor`` is what the subscription charged in advance for this period
    (fees and prorations, net of credits); it only counts toward the minimum commitment.
    """
    invariant(len(phases) > 0, "a period is rated with at least one phase")
    currency = phases[0].terms.currency
    invariant(
        all(phase.terms.currency == currency for phase in phases),
        "phases of one period share a currency",
    )
    if period.trial:
        return RatedPeriod(currency, ())
    lines: list[RatedLine] = []
    for phase in sorted(phases, key=lambda p: (p.start, p.phase_id)):
        window = phase.window(period)
        if window is None:
            continue
        for price in phase.terms.prices:
            if price.type == PriceType.FLAT:
                if price.timing == FeeTiming.IN_ARREARS:
                    lines.append(
                        fee_share_line(
                            phase.terms,
                            price,
                            period,
                            window[0],
                            window[1],
                            kind=LineKind.FEE_ARREARS,
                            phase_id=phase.phase_id,
                        )
                    )
                continue
            key = (phase.phase_id, price.id)
            invariant(key in usage, f"no usage given for phase {key[0]}, price {key[1]}")
            lines.append(
                usage_line(phase.terms, price, period, window, usage[key], phase_id=phase.phase_id)
            )
    true_up = _minimum_true_up(period, phases, lines, advance_charged_minor, currency)
    if true_up is not None:
        lines.append(true_up)
    return RatedPeriod(currency, tuple(lines))
