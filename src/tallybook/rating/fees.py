"""Flat fees and proration: fees in advance for a period (or the rest of one), and credits for
the unused part of fees already paid.

Proration is by time, to the second (durations are exact fractions of microseconds; the
subscription service only ever uses whole seconds). A fee's share of a period is::

    fee × (seconds billed) / (seconds in the nominal period)

where the nominal period is the whole anchor-aligned period (so a first period that starts
after the anchor day is billed for the part it covers).

A credit is computed from the **charge it credits**, not from the fee: ``charge × unused
seconds / seconds the charge paid for``, and never more than what is still uncredited on that
charge. However changes are chained (upgrade, downgrade, upgrade again, all in one period),
the credits for a charge can never add up to more than the charge: no credit farming.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from tallybook.catalog.domain import VersionTerms
from tallybook.catalog.pricing import PriceDef
from tallybook.kit.clock import isoformat_z
from tallybook.kit.invariant import invariant
from tallybook.kit.money import ROUNDING_RULE_NAME, currency_exponent
from tallybook.rating.arithmetic import (
    display_fraction,
    micros,
    minor_to_major,
    round_line,
    scale,
    time_fraction,
    to_decimal,
)
from tallybook.rating.inputs import BillingPeriod
from tallybook.rating.lines import LineKind, RatedLine


@dataclass(frozen=True, slots=True)
class PrepaidCharge:
    """A fee already charged in advance for ``[service_start, service_end)``, as the
    subscription recorded it, with how much of it has been credited back since."""

    charge_id: str
    amount_minor: int
    credited_minor: int
    currency: str
    service_start: datetime
    service_end: datetime
    description: str
    price_id: str | None = None
    price_key: str | None = None
    plan_version_id: str | None = None
    #: Set once the charge was credited from this instant on: it then only paid for
    #: ``[service_start, credited_from)``, and later credits find nothing left to credit.
    credited_from: datetime | None = None

    @property
    def creditable_minor(self) -> int:
        return self.amount_minor - self.credited_minor

    @property
    def coverage_end(self) -> datetime:
        """The end of the time this charge still pays for."""
        if self.credited_from is None:
            return self.service_end
        return max(self.service_start, min(self.credited_from, self.service_end))


def proration_info(part_seconds: int, period_seconds: int) -> dict[str, object]:
    return {
        "seconds": part_seconds,
        "period_seconds": period_seconds,
        "fraction": display_fraction(Fraction(part_seconds, period_seconds)),
    }


def _seconds(start: datetime, end: datetime) -> int:
    return micros(end - start) // 1_000_000


def fee_share_line(
    terms: VersionTerms,
    price: PriceDef,
    period: BillingPeriod,
    start: datetime,
    end: datetime,
    *,
    kind: LineKind,
    description: str | None = None,
    phase_id: str | None = None,
) -> RatedLine:
    """``price``'s flat fee for ``[start, end)`` inside ``period``, prorated by its share of
    the nominal period (the whole fee when the window is the whole nominal period)."""
    invariant(price.amount_minor is not None, "a fee line needs a flat price")
    invariant(period.nominal_start <= start <= end <= period.nominal_end, "window outside period")
    fee_minor: int = price.amount_minor  # type: ignore[assignment]
    share = time_fraction(end - start, period.nominal_end - period.nominal_start)
    exact = scale(minor_to_major(fee_minor, terms.currency), share)
    label = f"{terms.plan_name}: {price.name}"
    breakdown: dict[str, object] = {"label": label, "fee_minor": fee_minor}
    if share != 1:
        breakdown["proration"] = proration_info(
            _seconds(start, end), _seconds(period.nominal_start, period.nominal_end)
        )
    breakdown["exact_amount"] = to_decimal(exact)
    breakdown["rounding"] = ROUNDING_RULE_NAME
    return RatedLine(
        kind=kind,
        description=description or label,
        currency=terms.currency,
        amount_minor=round_line(exact, terms.currency),
        service_start=start,
        service_end=end,
        price_id=price.id or None,
        price_key=price.key,
        plan_version_id=terms.plan_version_id,
        phase_id=phase_id,
        breakdown=breakdown,
    )


def advance_fee_lines(
    terms: VersionTerms, period: BillingPeriod, *, phase_id: str | None = None
) -> list[RatedLine]:
    """The in-advance fees billed at the start of ``period`` (prorated when the period is
    shorter than its nominal length, as a first period after the anchor day is)."""
    if period.trial:
        return []
    return [
        fee_share_line(
            terms,
            price,
            period,
            period.start,
            period.end,
            kind=LineKind.FEE_ADVANCE,
            phase_id=phase_id,
        )
        for price in terms.advance_prices
    ]


def proration_charge_lines(
    terms: VersionTerms, period: BillingPeriod, at: datetime, *, phase_id: str | None = None
) -> list[RatedLine]:
    """The remaining part of ``terms``' in-advance fees from ``at`` to the period's end."""
    if period.trial or at >= period.end:
        return []
    lines = []
    for price in terms.advance_prices:
        line = fee_share_line(
            terms,
            price,
            period,
            at,
            period.end,
            kind=LineKind.PRORATION_CHARGE,
            description=f"Remaining time on {terms.plan_name}: {price.name} from {isoformat_z(at)}",
            phase_id=phase_id,
        )
        if line.amount_minor != 0:
            lines.append(line)
    return lines


def proration_credit_line(charge: PrepaidCharge, at: datetime) -> RatedLine | None:
    """The credit for the part of ``charge`` unused from ``at``: the charge × the share of
    its window from ``at`` to the end of what it still pays for, capped at what is still
    uncredited on it. ``None`` when nothing is left to credit (a charge already credited
    from an earlier instant pays for nothing after it)."""
    coverage_end = charge.coverage_end
    if at >= coverage_end or charge.creditable_minor <= 0:
        return None
    window = charge.service_end - charge.service_start
    unused_from = max(at, charge.service_start)
    charge_seconds = _seconds(charge.service_start, charge.service_end)
    if micros(window) == 0:
        exact = Fraction(charge.amount_minor)
        unused_seconds = 0
    else:
        exact = Fraction(charge.amount_minor) * time_fraction(coverage_end - unused_from, window)
        unused_seconds = _seconds(unused_from, coverage_end)
    exact_major = exact / (10 ** currency_exponent(charge.currency))
    credit_minor = round_line(exact_major, charge.currency)
    capped = credit_minor > charge.creditable_minor
    credit_minor = min(credit_minor, charge.creditable_minor)
    if credit_minor <= 0:
        return None
    return RatedLine(
        kind=LineKind.PRORATION_CREDIT,
        description=f"Unused time on {charge.description} after {isoformat_z(unused_from)}",
        currency=charge.currency,
        amount_minor=-credit_minor,
        service_start=unused_from,
        service_end=coverage_end,
        price_id=charge.price_id,
        price_key=charge.price_key,
        plan_version_id=charge.plan_version_id,
        breakdown={
            "charge_id": charge.charge_id,
            "charge_minor": charge.amount_minor,
            "already_credited_minor": charge.credited_minor,
            "unused_seconds": unused_seconds,
            "charge_seconds": charge_seconds,
            "capped": capped,
            "exact_amount": -to_decimal(exact_major),
            "rounding": ROUNDING_RULE_NAME,
        },
    )


def proration_credit_lines(charges: Sequence[PrepaidCharge], at: datetime) -> list[RatedLine]:
    lines = []
    for charge in charges:
        line = proration_credit_line(charge, at)
        if line is not None:
            lines.append(line)
    return lines
