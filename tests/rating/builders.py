"""Small builders for pure rating tests: validated prices and version terms without a database."""

from __future__ import annotations

import dataclasses
from typing import Any

from tallybook.catalog.domain import Interval, IntervalUnit, VersionTerms
from tallybook.catalog.pricing import PriceDef, parse_price


def price(price_id: str = "price_1", **data: Any) -> PriceDef:
    """A validated price (``parse_price``) with an id, as the catalog would load it."""
    data.setdefault("type", "usage" if "meter_id" in data else "flat")
    return dataclasses.replace(parse_price(data, param="price"), id=price_id)


def tiers(*rows: tuple[Any, Any] | tuple[Any, Any, int]) -> list[dict[str, Any]]:
    """``tiers((1000, "0.01"), (None, "0.008", 500))`` → the API shape."""
    result = []
    for row in rows:
        entry: dict[str, Any] = {"up_to": row[0], "unit_price": row[1]}
        if len(row) == 3:
            entry["flat_fee_minor"] = row[2]
        result.append(entry)
    return result


def terms(
    *prices: PriceDef,
    version_id: str = "pv_1",
    name: str = "Pro",
    currency: str = "USD",
    interval: Interval = Interval(IntervalUnit.MONTH),
    minimum_commitment_minor: int | None = None,
) -> VersionTerms:
    return VersionTerms(
        plan_version_id=version_id,
        plan_id="plan_1",
        plan_key=name.lower(),
        plan_name=name,
        version=1,
        status="published",
        currency=currency,
        interval=interval,
        prices=tuple(prices),
        minimum_commitment_minor=minimum_commitment_minor,
    )
