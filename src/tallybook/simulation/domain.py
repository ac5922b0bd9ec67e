"""The pure part of a pricing simulation: how one closed period is rated again under another
plan version, how that version's prices are matched with the prices the customer was billed
on, and how period figures add up into a report. No I/O.

Both figures of a period come from the rating functions invoicing itself uses:

- **current**: the period's recorded in-advance charges (fees, prorations: exactly what its
  invoices billed for it) plus ``rating.rate_subscription_period`` over its real phases, with
  usage as metering answers now; for a period whose late events were all billed this equals
  the sum of its finalized invoices' lines;
- **proposed**: the whole covered part of the period on the simulated version (one phase, so a
  mid-period plan change is simulated as if the customer had been on the simulated version
  throughout): its in-advance fees (``rating.fee_share_line``, prorated like the real ones)
  plus ``rate_subscription_period`` on that phase, with the simulated prices' own usage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Final

from tallybook.catalog.domain import VersionTerms
from tallybook.catalog.pricing import PriceDef, PriceType
from tallybook.rating import (
    BillingPeriod,
    LineKind,
    RatedLine,
    RatingPhase,
    fee_share_line,
    rate_subscription_period,
)

#: The phase id of the one phase a simulated period is rated on.
SIMULATED_PHASE_ID: Final = "simulated"
#: The row that carries minimum-commitment true-ups in a price breakdown.
MINIMUM_ROW_KEY: Final = "minimum_true_up"
#: Charges and lines whose price is unknown to both versions (a charge without a price).
OTHER_ROW_KEY: Final = "other"
_PERCENT_STEP: Final = Decimal("0.1")


class MatchKind(StrEnum):
    #: The same meter (and group filter), or the same price key, in both versions.
    MATCHED = "matched"
    #: Only the simulated version has it: usage of its meter is priced for the first time.
    ADDED = "added"
    #: Only the customer's versions have it: that revenue goes away.
    REMOVED = "removed"
    #: The minimum commitment true-up (a period-level line, not a price).
    MINIMUM = "minimum"
    #: A recorded charge that names no price of either version.
    OTHER = "other"


# Matching prices ---------------------------------------------------------------------------


def _meter_key(price: PriceDef) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    if price.type != PriceType.USAGE or price.meter_id is None:
        return None
    return (price.meter_id, price.group_filter)


def match_prices(
    current: Sequence[PriceDef], proposed: Sequence[PriceDef]
) -> list[tuple[PriceDef | None, PriceDef | None]]:
    """Pair the prices of the customer's versions with the simulated version's.

    Usage prices pair first by meter and group filter (one meter carries at most one price
    per filter value in a version); what is left pairs by price key (a flat fee, or a usage
    price moved to a new meter version under the same key). The rest stays alone: ``(old,
    None)`` is removed by the simulated version, ``(None, new)`` is added by it."""
    pairs: list[tuple[PriceDef | None, PriceDef | None]] = []
    left_new = list(proposed)
    left_old: list[PriceDef] = []
    for old in current:
        key = _meter_key(old)
        found = next((n for n in left_new if key is not None and _meter_key(n) == key), None)
        if found is None:
            left_old.append(old)
            continue
        left_new.remove(found)
        pairs.append((old, found))
    unmatched_old: list[PriceDef] = []
    for old in left_old:
        found = next((n for n in left_new if n.key == old.key), None)
        if found is None:
            unmatched_old.append(old)
            continue
        left_new.remove(found)
        pairs.append((old, found))
    pairs += [(old, None) for old in unmatched_old]
    pairs += [(None, new) for new in left_new]
    return pairs


# Rating one period -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedCharge:
    """An in-advance charge (fee or proration) the subscription recorded for the period."""

    amount_minor: int
    price_id: str | None
    price_key: str | None


@dataclass(frozen=True, slots=True)
class PeriodFigures:
    """What one period costs under one set of terms: charges in advance, then the lines
    billed at its end."""

    advance_minor: int
    lines: tuple[RatedLine, ...]
    #: (price id or None, price key or None, amount) of each in-advance amount.
    advance_items: tuple[tuple[str | None, str | None, int], ...] = ()

    @property
    def total_minor(self) -> int:
        return self.advance_minor + sum((line.amount_minor for line in self.lines), start=0)


def rate_current(
    period: BillingPeriod,
    phases: Sequence[RatingPhase],
    usage: Mapping[tuple[str, str], Decimal],
    charges: Sequence[RecordedCharge],
) -> PeriodFigures:
    """The period as billed: its recorded charges and its end-of-period rating (what
    invoicing's assembly rates for the period, before what earlier invoices took)."""
    advance = sum((c.amount_minor for c in charges), start=0)
    rated = rate_subscription_period(period, phases, usage, advance_charged_minor=advance)
    items = tuple((c.price_id, c.price_key, c.amount_minor) for c in charges)
    return PeriodFigures(advance, rated.lines, items)


def simulated_phase(
    period: BillingPeriod, phases: Sequence[RatingPhase], terms: VersionTerms
) -> RatingPhase | None:
    """One phase on ``terms`` covering what the real phases covered of the period."""
    windows = [w for w in (phase.window(period) for phase in phases) if w is not None]
    if not windows:
        return None
    start = min(w[0] for w in windows)
    end = max(w[1] for w in windows)
    return RatingPhase(SIMULATED_PHASE_ID, start, end, terms)


def rate_proposed(
    period: BillingPeriod, phase: RatingPhase, usage: Mapping[tuple[str, str], Decimal]
) -> PeriodFigures:
    """The period on the simulated version: its in-advance fees for the covered window (the
    share a real period of that length is charged) and its end-of-period rating."""
    if period.trial:
        return PeriodFigures(0, ())
    window = phase.window(period)
    advance_lines: list[RatedLine] = []
    if window is not None:
        advance_lines = [
            fee_share_line(
                phase.terms,
                price,
                period,
                window[0],
                window[1],
                kind=LineKind.FEE_ADVANCE,
                phase_id=phase.phase_id,
            )
            for price in phase.terms.advance_prices
        ]
    advance = sum((line.amount_minor for line in advance_lines), start=0)
    rated = rate_subscription_period(period, [phase], usage, advance_charged_minor=advance)
    items = tuple((line.price_id, line.price_key, line.amount_minor) for line in advance_lines)
    return PeriodFigures(advance, rated.lines, items)


# Per-price breakdown -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceRow:
    """One price (or matched pair of prices) in a period or a whole simulation."""

    key: str
    match: MatchKind
    meter_id: str | None
    current_minor: int
    proposed_minor: int

    @property
    def delta_minor(self) -> int:
        return self.proposed_minor - self.current_minor


def price_rows(
    current_prices: Iterable[PriceDef],
    proposed_prices: Sequence[PriceDef],
    current: PeriodFigures,
    proposed: PeriodFigures,
) -> list[PriceRow]:
    """``current`` and ``proposed`` split by matched price, in the order of
    :func:`match_prices`, then the minimum true-up and unknown charges."""
    unique: dict[str, PriceDef] = {}
    for price in current_prices:
        unique.setdefault(price.id or price.key, price)
    pairs = match_prices(list(unique.values()), proposed_prices)
    rows: list[tuple[str, MatchKind, str | None]] = []
    old_index: dict[str, int] = {}
    new_index: dict[str, int] = {}
    for index, (old, new) in enumerate(pairs):
        shown = new if new is not None else old
        assert shown is not None
        kind = (
            MatchKind.MATCHED
            if old is not None and new is not None
            else MatchKind.ADDED
            if old is None
            else MatchKind.REMOVED
        )
        rows.append((shown.key, kind, shown.meter_id))
        for side_price, index_of in ((old, old_index), (new, new_index)):
            if side_price is not None:
                index_of.setdefault(side_price.id or side_price.key, index)
                index_of.setdefault(f"key:{side_price.key}", index)
    amounts = [[0, 0] for _ in rows]
    extra: dict[MatchKind, list[int]] = {}

    def add(side: int, index_of: dict[str, int], item: tuple[str | None, str | None, int]) -> None:
        price_id, price_key, amount = item
        index = index_of.get(price_id or "") if price_id else None
        if index is None and price_key:
            index = index_of.get(f"key:{price_key}")
        if index is None:
            extra.setdefault(MatchKind.OTHER, [0, 0])[side] += amount
        else:
            amounts[index][side] += amount

    for side, figures, index_of in ((0, current, old_index), (1, proposed, new_index)):
        for item in figures.advance_items:
            add(side, index_of, item)
        for line in figures.lines:
            if line.kind == LineKind.MINIMUM_TRUE_UP:
                extra.setdefault(MatchKind.MINIMUM, [0, 0])[side] += line.amount_minor
            else:
                add(side, index_of, (line.price_id, line.price_key, line.amount_minor))
    result = [
        PriceRow(key, kind, meter_id, amounts[i][0], amounts[i][1])
        for i, (key, kind, meter_id) in enumerate(rows)
    ]
    for kind, label in ((MatchKind.MINIMUM, MINIMUM_ROW_KEY), (MatchKind.OTHER, OTHER_ROW_KEY)):
        if kind in extra:
            result.append(PriceRow(label, kind, None, extra[kind][0], extra[kind][1]))
    return result


def merge_rows(rows: Iterable[PriceRow]) -> list[PriceRow]:
    """Rows of many periods added up by (key, match, meter), in first-seen order."""
    merged: dict[tuple[str, MatchKind, str | None], list[int]] = {}
    for row in rows:
        sums = merged.setdefault((row.key, row.match, row.meter_id), [0, 0])
        sums[0] += row.current_minor
        sums[1] += row.proposed_minor
    return [PriceRow(k, m, meter, s[0], s[1]) for (k, m, meter), s in merged.items()]


# The report --------------------------------------------------------------------------------


def percent(delta_minor: int, base_minor: int) -> Decimal | None:
    """``delta / base`` in percent to one decimal (half-even), None when the base is zero."""
    if base_minor == 0:
        return None
    value = Decimal(delta_minor) * 100 / Decimal(base_minor)
    return value.quantize(_PERCENT_STEP, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class PeriodResult:
    subscription_id: str
    period_id: str
    start: datetime
    end: datetime
    #: The lines of this period on its finalized, non-void invoices (charges, usage, fees,
    #: true-ups, late-usage adjustments, before discounts and credits).
    invoiced_minor: int
    current_minor: int
    proposed_minor: int
    prices: tuple[PriceRow, ...]

    @property
    def delta_minor(self) -> int:
        return self.proposed_minor - self.current_minor


class _Totals:
    """Current, proposed and invoiced totals summed over a result's parts (a customer's
    periods, a report's customers), and the change between the first two."""

    __slots__ = ()

    def _parts(self) -> Iterable[PeriodResult | CustomerResult]:
        raise NotImplementedError

    @property
    def current_minor(self) -> int:
        return sum((part.current_minor for part in self._parts()), start=0)

    @property
    def proposed_minor(self) -> int:
        return sum((part.proposed_minor for part in self._parts()), start=0)

    @property
    def invoiced_minor(self) -> int:
        return sum((part.invoiced_minor for part in self._parts()), start=0)

    @property
    def delta_minor(self) -> int:
        return self.proposed_minor - self.current_minor

    @property
    def delta_percent(self) -> Decimal | None:
        return percent(self.delta_minor, self.current_minor)


@dataclass(frozen=True, slots=True)
class CustomerResult(_Totals):
    customer_id: str
    external_id: str
    name: str | None
    currency: str
    periods: tuple[PeriodResult, ...]

    def _parts(self) -> Iterable[PeriodResult]:
        return self.periods

    @property
    def prices(self) -> list[PriceRow]:
        return merge_rows(row for p in self.periods for row in p.prices)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A chosen customer left out of the report, with the error code that says why."""

    customer_id: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class SimulationReport(_Totals):
    plan_version_id: str
    plan_id: str
    plan_key: str
    plan_name: str
    version: int
    version_status: str
    currency: str
    periods_max: int
    generated_at: datetime
    customers: tuple[CustomerResult, ...]
    skipped: tuple[Skipped, ...] = field(default=())

    def _parts(self) -> Iterable[CustomerResult]:
        return self.customers

    @property
    def winners(self) -> list[CustomerResult]:
        """Customers who would pay less (the customer's point of view), biggest saving first."""
        return sorted(
            (c for c in self.customers if c.delta_minor < 0),
            key=lambda c: (c.delta_minor, c.customer_id),
        )

    @property
    def losers(self) -> list[CustomerResult]:
        """Customers who would pay more, biggest increase first."""
        return sorted(
            (c for c in self.customers if c.delta_minor > 0),
            key=lambda c: (-c.delta_minor, c.customer_id),
        )

    @property
    def unchanged_count(self) -> int:
        return sum(1 for c in self.customers if c.delta_minor == 0)

    @property
    def prices(self) -> list[PriceRow]:
        return merge_rows(row for c in self.customers for p in c.periods for row in p.prices)
