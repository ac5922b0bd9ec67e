"""Price definitions: what a plan version charges, as plain validated values (no I/O).

Two price types:

- ``flat``: a recurring fee of ``amount_minor`` per billing period, billed ``in_advance`` (at the
  start of the period) or ``in_arrears`` (at its end).
- ``usage``: a charge on a meter's quantity in the period, always billed in arrears, by one of
  four models:

  ``per_unit``   quantity × ``unit_price``
  ``graduated``  each tier prices the units that fall inside it (1–1000 at 0.01, the rest at 0.008)
  ``volume``     the tier the whole quantity lands in prices every unit
  ``package``    ``package_price`` per block of ``package_size`` units, a partial block rounded
                 ``up`` or ``down`` (``package_rounding``)

  with ``included_quantity`` free units per period and an optional ``max_charge_minor`` cap per
  period.

Tiers are ``[{up_to, unit_price, flat_fee_minor}]``: tier *i* covers the quantities in
``(up_to[i-1], up_to[i]]`` (the first starts at 0), ``up_to`` strictly ascends and only the last
tier is open-ended (``up_to: null``). A tier may also state where it starts (``from``), which
must equal the previous tier's ``up_to``: a larger value is a gap, a smaller one an overlap.

Unit prices are :class:`~decimal.Decimal` in the currency's **major** unit (``"0.0000025"`` USD
per token) with at most :data:`PRICE_SCALE` decimal places; fixed amounts (flat fees, tier flat
fees, caps) are integer minor units. A usage price names the exact meter **version** it prices
(``meter_id``) and may narrow it to one value of a group-by dimension (``group_filter``, e.g.
``{"model": "gpt-4o"}``) so one meter can carry a different price per model.

The maths lives in :mod:`tallybook.rating`; this module only says what a valid price is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from tallybook.catalog.errors import CatalogCode
from tallybook.kit.errors import CommonCode, InvalidRequest
from tallybook.kit.money import check_amount_minor
from tallybook.kit.quantity import QUANTITY_SCALE, to_decimal

#: Decimal places a unit price, package size or tier bound may carry (the storage scale).
PRICE_SCALE: Final = QUANTITY_SCALE
TIERS_MAX: Final = 25
PRICE_KEY_LENGTH_MAX: Final = 100
PRICE_NAME_LENGTH_MAX: Final = 200
GROUP_FILTER_KEYS_MAX: Final = 5
GROUP_FILTER_VALUE_LENGTH_MAX: Final = 200


class PriceType(StrEnum):
    FLAT = "flat"
    USAGE = "usage"


class FeeTiming(StrEnum):
    IN_ADVANCE = "in_advance"
    IN_ARREARS = "in_arrears"


class UsageModel(StrEnum):
    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"


class PackageRounding(StrEnum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Tier:
    """Prices the quantities in ``(previous up_to, up_to]``; ``up_to=None`` is open-ended."""

    up_to: Decimal | None
    unit_price: Decimal
    flat_fee_minor: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "up_to": self.up_to,
            "unit_price": self.unit_price,
            "flat_fee_minor": self.flat_fee_minor,
        }


@dataclass(frozen=True, slots=True)
class PriceDef:
    """One validated price. ``id`` is empty until the catalog stores it; ``meter_unit`` is
    filled from the meter when a version's terms are loaded (it labels invoice lines)."""

    key: str
    name: str
    type: PriceType
    amount_minor: int | None = None
    timing: FeeTiming | None = None
    meter_id: str | None = None
    model: UsageModel | None = None
    unit_price: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    package_size: Decimal | None = None
    package_price: Decimal | None = None
    package_rounding: PackageRounding | None = None
    included_quantity: Decimal = Decimal(0)
    max_charge_minor: int | None = None
    group_filter: tuple[tuple[str, str], ...] = ()
    id: str = ""
    meter_unit: str = ""

    @property
    def is_flat(self) -> bool:
        return self.type == PriceType.FLAT

    @property
    def is_in_advance(self) -> bool:
        return self.type == PriceType.FLAT and self.timing == FeeTiming.IN_ADVANCE

    @property
    def group_filter_dict(self) -> dict[str, str]:
        return dict(self.group_filter)

    def to_dict(self) -> dict[str, Any]:
        """The definition as plain JSON-ready data (Decimals stay Decimals; the renderer
        writes them as strings)."""
        data: dict[str, Any] = {"key": self.key, "name": self.name, "type": str(self.type)}
        if self.type == PriceType.FLAT:
            data.update(amount_minor=self.amount_minor, timing=str(self.timing))
            return data
        data.update(
            meter_id=self.meter_id,
            model=str(self.model),
            unit_price=self.unit_price,
            tiers=[tier.to_dict() for tier in self.tiers] or None,
            package_size=self.package_size,
            package_price=self.package_price,
            package_rounding=str(self.package_rounding) if self.package_rounding else None,
            included_quantity=self.included_quantity,
            max_charge_minor=self.max_charge_minor,
            group_filter=self.group_filter_dict or None,
        )
        return data


# Parsing and validation ---------------------------------------------------------------------

_FLAT_FIELDS: Final = frozenset({"key", "name", "type", "amount_minor", "timing"})
_USAGE_COMMON: Final = frozenset(
    {"key", "name", "type", "meter_id", "model", "included_quantity", "max_charge_minor"}
    | {"group_filter"}
)
_USAGE_FIELDS: Final[dict[UsageModel, frozenset[str]]] = {
    UsageModel.PER_UNIT: _USAGE_COMMON | {"unit_price"},
    UsageModel.GRADUATED: _USAGE_COMMON | {"tiers"},
    UsageModel.VOLUME: _USAGE_COMMON | {"tiers"},
    UsageModel.PACKAGE: _USAGE_COMMON | {"package_size", "package_price", "package_rounding"},
}


def _invalid(code: CatalogCode | CommonCode, message: str, param: str) -> InvalidRequest:
    return InvalidRequest(code, message, param=param)


def _enum(enum: type[StrEnum], value: Any, param: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise _invalid(
            CatalogCode.PRICE_INVALID, f"{param} must be one of {allowed}, not {value!r}", param
        ) from None


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def price_decimal(value: Any, param: str, *, positive: bool = False) -> Decimal:
    """A unit price, quantity bound or package size: a finite decimal, not negative (or
    strictly positive), with at most :data:`PRICE_SCALE` decimal places."""
    number = to_decimal(value, param=param)
    if number < 0:
        raise _invalid(CatalogCode.PRICE_NEGATIVE, f"{param} must not be negative", param)
    if positive and number == 0:
        raise _invalid(CatalogCode.PRICE_INVALID, f"{param} must be greater than zero", param)
    if _places(number) > PRICE_SCALE:
        raise _invalid(
            CatalogCode.PRICE_PRECISION_EXCEEDED,
            f"{param} has more than {PRICE_SCALE} decimal places",
            param,
        )
    return number


def minor_amount(value: Any, param: str) -> int:
    """A non-negative integer of minor units."""
    amount = check_amount_minor(value, param=param)
    if amount < 0:
        raise _invalid(CatalogCode.PRICE_NEGATIVE, f"{param} must not be negative", param)
    return amount


def parse_tiers(raw: Any, param: str) -> tuple[Tier, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes) or not raw:
        raise _invalid(CatalogCode.PRICE_TIERS_MISSING, f"{param} needs at least one tier", param)
    if len(raw) > TIERS_MAX:
        raise _invalid(
            CatalogCode.PRICE_TIERS_TOO_MANY, f"{param} may have at most {TIERS_MAX} tiers", param
        )
    tiers: list[Tier] = []
    previous_up_to = Decimal(0)
    for index, item in enumerate(raw):
        where = f"{param}[{index}]"
        if not isinstance(item, Mapping):
            raise _invalid(CatalogCode.PRICE_INVALID, f"{where} must be an object", where)
        unknown = set(item) - {"up_to", "unit_price", "flat_fee_minor", "from"}
        if unknown:
            name = sorted(unknown)[0]
            raise _invalid(
                CommonCode.PARAMETER_UNKNOWN, f"{where} has no field {name!r}", f"{where}.{name}"
            )
        if previous_up_to is None:
            raise _invalid(
                CatalogCode.PRICE_TIER_OVERLAP,
                f"{where} follows an open-ended tier, which already covers every quantity",
                f"{where}.up_to",
            )
        if item.get("from") is not None:
            start = price_decimal(item["from"], f"{where}.from")
            if start > previous_up_to:
                raise _invalid(
                    CatalogCode.PRICE_TIER_GAP,
                    f"{where} starts at {start} but the previous tier ends at {previous_up_to}",
                    f"{where}.from",
                )
            if start < previous_up_to:
                raise _invalid(
                    CatalogCode.PRICE_TIER_OVERLAP,
                    f"{where} starts at {start}, inside the previous tier (up to {previous_up_to})",
                    f"{where}.from",
                )
        if "unit_price" not in item or item["unit_price"] is None:
            raise _invalid(
                CatalogCode.PRICE_FIELD_MISSING, f"{where}.unit_price is required", where
            )
        unit_price = price_decimal(item["unit_price"], f"{where}.unit_price")
        flat_fee = minor_amount(item.get("flat_fee_minor") or 0, f"{where}.flat_fee_minor")
        up_to_raw = item.get("up_to")
        up_to = None if up_to_raw is None else price_decimal(up_to_raw, f"{where}.up_to")
        if up_to is not None and up_to <= previous_up_to:
            raise _invalid(
                CatalogCode.PRICE_TIER_OVERLAP,
                f"{where}.up_to must be greater than {previous_up_to} (tiers ascend)",
                f"{where}.up_to",
            )
        tiers.append(Tier(up_to=up_to, unit_price=unit_price, flat_fee_minor=flat_fee))
        previous_up_to = up_to  # type: ignore[assignment]
    if tiers[-1].up_to is not None:
        raise _invalid(
            CatalogCode.PRICE_TIER_GAP,
            f"quantities above {tiers[-1].up_to} have no price: the last tier must be "
            "open-ended (up_to: null)",
            f"{param}[{len(tiers) - 1}].up_to",
        )
    return tuple(tiers)


def _check_fields(data: Mapping[str, Any], allowed: frozenset[str], what: str, param: str) -> None:
    for name, value in data.items():
        if value is None:
            continue
        if name not in allowed:
            raise _invalid(
                CatalogCode.PRICE_FIELD_NOT_ALLOWED,
                f"{name} does not apply to {what} prices",
                f"{param}.{name}",
            )


def _text(data: Mapping[str, Any], name: str, param: str, *, length_max: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= length_max:
        raise _invalid(
            CatalogCode.PRICE_INVALID,
            f"{param}.{name} must be 1-{length_max} characters",
            f"{param}.{name}",
        )
    return value.strip()


def _group_filter(raw: Any, param: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or len(raw) > GROUP_FILTER_KEYS_MAX:
        raise _invalid(
            CatalogCode.PRICE_GROUP_FILTER_INVALID,
            f"{param} must be an object of at most {GROUP_FILTER_KEYS_MAX} dimension: value pairs",
            param,
        )
    pairs = []
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise _invalid(
                CatalogCode.PRICE_GROUP_FILTER_INVALID,
                f"{param} maps dimension names to string values",
                param,
            )
        if len(value) > GROUP_FILTER_VALUE_LENGTH_MAX:
            raise _invalid(
                CatalogCode.PRICE_GROUP_FILTER_INVALID, f"{param}.{key} is too long", param
            )
        pairs.append((key, value))
    return tuple(sorted(pairs))


def parse_price(data: Mapping[str, Any], *, param: str = "price") -> PriceDef:
    """Validate one price from plain data (an API body or a CLI file). Raises the first
    problem as an :class:`InvalidRequest` naming the field (``prices[2].tiers[1].up_to``)."""
    price_type = _enum(PriceType, data.get("type"), f"{param}.type")
    key = _text(data, "key", param, length_max=PRICE_KEY_LENGTH_MAX)
    name = _text(data, "name", param, length_max=PRICE_NAME_LENGTH_MAX)
    if price_type == PriceType.FLAT:
        _check_fields(data, _FLAT_FIELDS, "flat", param)
        if data.get("amount_minor") is None:
            raise _invalid(
                CatalogCode.PRICE_FIELD_MISSING,
                f"{param}.amount_minor is required for flat prices",
                f"{param}.amount_minor",
            )
        timing = _enum(FeeTiming, data.get("timing") or FeeTiming.IN_ADVANCE, f"{param}.timing")
        return PriceDef(
            key=key or "fee",
            name=name or "Recurring fee",
            type=price_type,
            amount_minor=minor_amount(data["amount_minor"], f"{param}.amount_minor"),
            timing=timing,
        )
    model = _enum(UsageModel, data.get("model") or UsageModel.PER_UNIT, f"{param}.model")
    _check_fields(data, _USAGE_FIELDS[model], f"{model} usage", param)
    meter_id = data.get("meter_id")
    if not isinstance(meter_id, str) or not meter_id:
        raise _invalid(
            CatalogCode.PRICE_FIELD_MISSING,
            f"{param}.meter_id is required for usage prices",
            f"{param}.meter_id",
        )
    group_filter = _group_filter(data.get("group_filter"), f"{param}.group_filter")
    fields: dict[str, Any] = {}
    if model == UsageModel.PER_UNIT:
        fields["unit_price"] = price_decimal(
            _required(data, "unit_price", param), f"{param}.unit_price"
        )
    elif model in (UsageModel.GRADUATED, UsageModel.VOLUME):
        fields["tiers"] = parse_tiers(data.get("tiers"), f"{param}.tiers")
    else:
        size_param = f"{param}.package_size"
        size = to_decimal(_required(data, "package_size", param), param=size_param)
        if size <= 0 or _places(size) > PRICE_SCALE:
            raise _invalid(
                CatalogCode.PRICE_PACKAGE_SIZE_INVALID,
                f"{size_param} must be a positive quantity with at most {PRICE_SCALE} places",
                size_param,
            )
        fields["package_size"] = size
        fields["package_price"] = price_decimal(
            _required(data, "package_price", param), f"{param}.package_price"
        )
        fields["package_rounding"] = _enum(
            PackageRounding,
            data.get("package_rounding") or PackageRounding.UP,
            f"{param}.package_rounding",
        )
    included = data.get("included_quantity")
    max_charge = data.get("max_charge_minor")
    default_key = (
        meter_id
        if not group_filter
        else meter_id + ":" + ":".join(value for _, value in group_filter)
    )
    return PriceDef(
        key=key or default_key,
        name=name or "Usage",
        type=price_type,
        meter_id=meter_id,
        model=model,
        included_quantity=(
            Decimal(0)
            if included is None
            else price_decimal(included, f"{param}.included_quantity")
        ),
        max_charge_minor=(
            None if max_charge is None else minor_amount(max_charge, f"{param}.max_charge_minor")
        ),
        group_filter=group_filter,
        **fields,
    )


def _required(data: Mapping[str, Any], name: str, param: str) -> Any:
    value = data.get(name)
    if value is None:
        raise _invalid(
            CatalogCode.PRICE_FIELD_MISSING, f"{param}.{name} is required", f"{param}.{name}"
        )
    return value


def check_price_set(prices: Sequence[PriceDef], *, param: str = "prices") -> None:
    """Rules across a version's prices: keys are unique, and no usage is counted twice.

    Several usage prices may share a meter only if they all filter on the same group-by
    dimensions with different values (one price per ``model``, say); an unfiltered price, or
    filters on different dimensions, would price some events twice.
    """
    keys: dict[str, int] = {}
    by_meter: dict[str | None, list[int]] = {}
    for index, price in enumerate(prices):
        if price.key in keys:
            raise _invalid(
                CatalogCode.PRICE_KEY_DUPLICATE,
                f"price key {price.key!r} is already used by {param}[{keys[price.key]}]",
                f"{param}[{index}].key",
            )
        keys[price.key] = index
        if price.type != PriceType.USAGE:
            continue
        for other_index in by_meter.get(price.meter_id, []):
            other = prices[other_index]
            dimensions = {name for name, _ in price.group_filter}
            other_dimensions = {name for name, _ in other.group_filter}
            disjoint = (
                bool(dimensions)
                and dimensions == other_dimensions
                and price.group_filter != other.group_filter
            )
            if not disjoint:
                raise _invalid(
                    CatalogCode.PRICE_METER_DUPLICATE,
                    f"{param}[{other_index}] already prices some of this meter's usage; prices "
                    "sharing a meter must filter the same dimensions on different values",
                    f"{param}[{index}].group_filter"
                    if price.group_filter
                    else f"{param}[{index}].meter_id",
                )
        by_meter.setdefault(price.meter_id, []).append(index)
