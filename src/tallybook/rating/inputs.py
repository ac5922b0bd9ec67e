"""The plain inputs of period rating: the period, the phases that overlap it, and the usage
quantities the caller must measure (:func:`usage_requests` says which)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tallybook.catalog.domain import VersionTerms
from tallybook.catalog.pricing import PriceType
from tallybook.kit.invariant import invariant


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """One billing period ``[start, end)`` of a subscription.

    ``nominal_start``/``nominal_end`` are the whole anchor-aligned period it belongs to; shares
    of fees, included quantities, caps and minimums are measured against the nominal length.
    ``start`` is later than ``nominal_start`` for a first period that begins after the anchor
    day; ``end`` is earlier than ``nominal_end`` when the period was cut short (an immediate
    cancellation, or a change of interval). A trial period is never billed.
    """

    start: datetime
    end: datetime
    nominal_start: datetime
    nominal_end: datetime
    trial: bool = False

    def __post_init__(self) -> None:
        invariant(
            self.nominal_start <= self.start <= self.end <= self.nominal_end,
            f"period [{self.start}, {self.end}) is not inside its nominal period "
            f"[{self.nominal_start}, {self.nominal_end})",
        )
        invariant(self.nominal_start < self.nominal_end, "empty nominal period")

    @classmethod
    def whole(cls, start: datetime, end: datetime) -> BillingPeriod:
        return cls(start, end, start, end)


@dataclass(frozen=True, slots=True)
class RatingPhase:
    """A span ``[start, end)`` of a subscription on one plan version (``end=None``: open)."""

    phase_id: str
    start: datetime
    end: datetime | None
    terms: VersionTerms

    def window(self, period: BillingPeriod) -> tuple[datetime, datetime] | None:
        """The part of ``period`` this phase covers, or None."""
        start = max(self.start, period.start)
        end = period.end if self.end is None else min(self.end, period.end)
        return (start, end) if start < end else None


@dataclass(frozen=True, slots=True)
class UsageRequest:
    """One quantity the caller must measure: the usage of ``meter_id`` (restricted to events
    whose group-by dimensions match ``group_filter``) by the subscription's customer in
    ``[start, end)``. Answer it in the ``usage`` mapping under ``(phase_id, price_id)``."""

    phase_id: str
    price_id: str
    price_key: str
    meter_id: str
    group_filter: tuple[tuple[str, str], ...]
    start: datetime
    end: datetime

    @property
    def key(self) -> tuple[str, str]:
        return (self.phase_id, self.price_id)


def usage_requests(period: BillingPeriod, phases: Sequence[RatingPhase]) -> list[UsageRequest]:
    """Every usage quantity :func:`~tallybook.rating.period.rate_subscription_period` needs
    for ``period``: one per usage price per phase overlapping the period."""
    if period.trial:
        return []
    requests = []
    for phase in phases:
        window = phase.window(period)
        if window is None:
            continue
        for price in phase.terms.prices:
            if price.type != PriceType.USAGE:
                continue
            invariant(bool(price.id) and price.meter_id is not None, "unsaved usage price")
            requests.append(
                UsageRequest(
                    phase_id=phase.phase_id,
                    price_id=price.id,
                    price_key=price.key,
                    meter_id=price.meter_id,  # type: ignore[arg-type]
                    group_filter=price.group_filter,
                    start=window[0],
                    end=window[1],
                )
            )
    return requests
