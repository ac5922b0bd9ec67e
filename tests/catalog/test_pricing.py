"""Price validation: bad input gets a named error naming the field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tallybook.catalog.pricing import (
    FeeTiming,
    PackageRounding,
    PriceType,
    UsageModel,
    check_price_set,
    parse_price,
)
from tallybook.kit.errors import InvalidRequest


def error_of(data: dict[str, Any]) -> tuple[str, str | None]:
    with pytest.raises(InvalidRequest) as caught:
        parse_price(data, param="prices[0]")
    return caught.value.code, caught.value.param


def usage(**fields: Any) -> dict[str, Any]:
    return {"type": "usage", "meter_id": "mtr_1", **fields}


class TestValidPrices:
    def test_flat_defaults_to_in_advance(self) -> None:
        price = parse_price({"type": "flat", "amount_minor": 2000})
        assert (price.type, price.timing, price.amount_minor) == (
            PriceType.FLAT,
            FeeTiming.IN_ADVANCE,
            2000,
        )

    def test_tiny_unit_price(self) -> None:
        price = parse_price(usage(unit_price="0.0000025"))
        assert price.model == UsageModel.PER_UNIT
        assert price.unit_price == Decimal("0.0000025")

    def test_tiers_may_state_where_they_start(self) -> None:
        price = parse_price(
            usage(
                model="graduated",
                tiers=[
                    {"from": 0, "up_to": 100, "unit_price": "1"},
                    {"from": 100, "up_to": None, "unit_price": "0.5", "flat_fee_minor": 300},
                ],
            )
        )
        assert [t.up_to for t in price.tiers] == [Decimal(100), None]
        assert price.tiers[1].flat_fee_minor == 300

    def test_package_defaults_to_rounding_up(self) -> None:
        price = parse_price(usage(model="package", package_size=1000, package_price="2"))
        assert price.package_rounding == PackageRounding.UP


@pytest.mark.parametrize(
    ("data", "code", "param"),
    [
        (
            usage(model="graduated", tiers=[{"up_to": 100, "unit_price": "1"}]),
            "price_tier_gap",
            "prices[0].tiers[0].up_to",
        ),
        (
            usage(
                model="volume",
                tiers=[
                    {"up_to": 100, "unit_price": "1"},
                    {"from": 150, "up_to": None, "unit_price": "1"},
                ],
            ),
            "price_tier_gap",
            "prices[0].tiers[1].from",
        ),
        (
            usage(
                model="volume",
                tiers=[
                    {"up_to": 100, "unit_price": "1"},
                    {"from": 50, "up_to": None, "unit_price": "1"},
                ],
            ),
            "price_tier_overlap",
            "prices[0].tiers[1].from",
        ),
        (
            usage(
                model="graduated",
                tiers=[
                    {"up_to": 100, "unit_price": "1"},
                    {"up_to": 100, "unit_price": "1"},
                    {"up_to": None, "unit_price": "1"},
                ],
            ),
            "price_tier_overlap",
            "prices[0].tiers[1].up_to",
        ),
        (
            usage(
                model="graduated",
                tiers=[
                    {"up_to": None, "unit_price": "1"},
                    {"up_to": None, "unit_price": "1"},
                ],
            ),
            "price_tier_overlap",
            "prices[0].tiers[1].up_to",
        ),
        (
            usage(model="graduated", tiers=[{"from": 10, "up_to": None, "unit_price": "1"}]),
            "price_tier_gap",
            "prices[0].tiers[0].from",
        ),
        (usage(model="graduated", tiers=[]), "price_tiers_missing", "prices[0].tiers"),
        (usage(unit_price="-0.01"), "price_negative", "prices[0].unit_price"),
        ({"type": "flat", "amount_minor": -1}, "price_negative", "prices[0].amount_minor"),
        (
            usage(model="graduated", tiers=[{"up_to": None, "unit_price": "-1"}]),
            "price_negative",
            "prices[0].tiers[0].unit_price",
        ),
        (usage(unit_price="0.0000000000001"), "price_precision_exceeded", "prices[0].unit_price"),
        (usage(unit_price=1, tiers=[]), "price_field_not_allowed", "prices[0].tiers"),
        (
            {"type": "flat", "amount_minor": 1, "meter_id": "m"},
            "price_field_not_allowed",
            "prices[0].meter_id",
        ),
        ({"type": "flat"}, "price_field_missing", "prices[0].amount_minor"),
        ({"type": "usage", "unit_price": 1}, "price_field_missing", "prices[0].meter_id"),
        (usage(), "price_field_missing", "prices[0].unit_price"),
        (
            usage(model="package", package_size=0, package_price=1),
            "price_package_size_invalid",
            "prices[0].package_size",
        ),
        (usage(unit_price="x"), "quantity_invalid", "prices[0].unit_price"),
        (usage(unit_price=1.5), "quantity_invalid", "prices[0].unit_price"),
        ({"type": "weird"}, "price_invalid", "prices[0].type"),
        (
            usage(unit_price=1, group_filter={"model": 3}),
            "price_group_filter_invalid",
            "prices[0].group_filter",
        ),
        ({"type": "flat", "amount_minor": 1.5}, "amount_invalid", "prices[0].amount_minor"),
    ],
)
def test_named_errors(data: dict[str, Any], code: str, param: str) -> None:
    assert error_of(data) == (code, param)


def test_keys_are_unique_in_a_version() -> None:
    prices = [
        parse_price({"type": "flat", "amount_minor": 1, "key": "fee"}),
        parse_price({"type": "flat", "amount_minor": 2, "key": "fee"}),
    ]
    with pytest.raises(InvalidRequest) as caught:
        check_price_set(prices)
    assert (caught.value.code, caught.value.param) == ("price_key_duplicate", "prices[1].key")


@pytest.mark.parametrize(
    ("filters", "ok"),
    [
        ([None, None], False),  # both count every event
        ([None, {"model": "a"}], False),  # the unfiltered one overlaps
        ([{"model": "a"}, {"model": "a"}], False),
        ([{"model": "a"}, {"region": "eu"}], False),  # an event may match both
        ([{"model": "a"}, {"model": "b"}], True),
    ],
)
def test_usage_is_never_priced_twice(filters: list[dict[str, str] | None], ok: bool) -> None:
    prices = [
        parse_price(usage(unit_price=1, key=f"p{i}", group_filter=f)) for i, f in enumerate(filters)
    ]
    if ok:
        check_price_set(prices)
        return
    with pytest.raises(InvalidRequest) as caught:
        check_price_set(prices)
    assert caught.value.code == "price_meter_duplicate"
