"""Rated lines: a priced amount with everything needed to explain it.

A :class:`RatedLine` is what rating returns and what invoicing turns into an invoice line. Its
``breakdown`` is a JSON-ready mapping whose keys depend on the line's kind:

``fee_advance``, ``fee_arrears``, ``proration_charge``
    ``label`` (plan and price name), ``fee_minor`` (the full fee of one period), ``proration`` (when a share of a period is
    billed: ``seconds``, ``period_seconds``, ``fraction``), ``exact_amount``, ``rounding``
``proration_credit``
    ``charge_id`` (the prepaid charge credited), ``charge_minor``, ``already_credited_minor``,
    ``unused_seconds``, ``charge_seconds``, ``capped`` (the credit hit what was left to
    credit), ``exact_amount``, ``rounding``
``usage``
    ``model``, ``quantity`` (measured), ``included_quantity`` (per period, as priced),
    ``included_applied`` (after proration by the phase's share of the period),
    ``billable_quantity``, then per model ``unit_price`` | ``tiers`` (each: ``from``,
    ``up_to``, ``quantity``, ``unit_price``, ``flat_fee_minor``, ``amount``) | ``packages``,
    ``package_size``, ``package_price``, ``package_rounding``; ``max_charge_minor``,
    ``cap`` (the prorated cap) and ``capped`` when a cap applies; ``proration`` (the phase's
    share of the period); ``exact_amount``; ``rounding``
``minimum_true_up``
    ``commitment_exact``, ``commitment_minor``, ``charged_minor`` (what counted toward it),
    ``advance_charged_minor``, ``arrears_charged_minor``, ``phases`` (each phase's share and
    minimum), ``rounding``

``exact_amount`` is the unrounded major-unit amount (a decimal string, to at most 40 places
when it came from a time fraction); ``amount_minor`` is that amount rounded once with the rule
named in ``rounding``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class LineKind(StrEnum):
    #: A recurring flat fee billed at the start of the period it pays for.
    FEE_ADVANCE = "fee_advance"
    #: A recurring flat fee billed at the end of the period it paid for.
    FEE_ARREARS = "fee_arrears"
    #: A usage charge for one phase of a period.
    USAGE = "usage"
    #: A credit for the unused part of a fee paid in advance (negative amount).
    PRORATION_CREDIT = "proration_credit"
    #: The remaining part of a new fee, charged when a change takes effect mid-period.
    PRORATION_CHARGE = "proration_charge"
    #: The difference between a period's minimum commitment and what was charged for it.
    MINIMUM_TRUE_UP = "minimum_true_up"


@dataclass(frozen=True, slots=True)
class RatedLine:
    kind: LineKind
    description: str
    currency: str
    amount_minor: int
    #: The window of service this line pays for (a phase within a period, or a fee's period).
    service_start: datetime
    service_end: datetime
    quantity: Decimal | None = None
    price_id: str | None = None
    price_key: str | None = None
    meter_id: str | None = None
    plan_version_id: str | None = None
    phase_id: str | None = None
    breakdown: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "description": self.description,
            "currency": self.currency,
            "amount_minor": self.amount_minor,
            "service_start": self.service_start,
            "service_end": self.service_end,
            "quantity": self.quantity,
            "price_id": self.price_id,
            "price_key": self.price_key,
            "meter_id": self.meter_id,
            "plan_version_id": self.plan_version_id,
            "phase_id": self.phase_id,
            "breakdown": dict(self.breakdown),
        }


def total_minor(lines: list[RatedLine] | tuple[RatedLine, ...]) -> int:
    return sum((line.amount_minor for line in lines), start=0)
