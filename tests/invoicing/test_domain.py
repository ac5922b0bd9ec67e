"""The pure assembly: totals, negative totals, discounts, usage and monetary credits, diffs
against earlier invoices, and the property that interim plus final threshold invoices equal
one undivided invoice (tiers included)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.catalog.domain import Interval, IntervalUnit, VersionTerms
from tallybook.catalog.pricing import PriceDef, parse_price
from tallybook.invoicing.domain import (
    AssembledInvoice,
    AssemblyRequest,
    ChargeInput,
    DiscountTerm,
    InvoiceKind,
    MoneyCredit,
    PeriodToRate,
    Prior,
    UnitCredit,
    UnitDemand,
    assemble,
)
from tallybook.kit.clock import utc
from tallybook.kit.money import Money
from tallybook.rating import BillingPeriod, RatingPhase

START, END = utc(2026, 11, 1), utc(2026, 12, 1)
PERIOD = BillingPeriod.whole(START, END)
TIERS = [
    {"up_to": "1000", "unit_price": "0.01"},
    {"up_to": "5000", "unit_price": "0.008", "flat_fee_minor": 500},
    {"up_to": None, "unit_price": "0.005"},
]


def price(price_id: str, **data: object) -> PriceDef:
    data.setdefault("type", "usage" if "meter_id" in data else "flat")
    data.setdefault("key", price_id)
    data.setdefault("name", price_id)
    return replace(parse_price(data), id=price_id, meter_unit="tokens")


def terms(*prices: PriceDef, minimum: int | None = None) -> VersionTerms:
    return VersionTerms(
        plan_version_id="pv_test",
        plan_id="plan_test",
        plan_key="test",
        plan_name="Test",
        version=1,
        status="published",
        currency="USD",
        interval=Interval(IntervalUnit.MONTH),
        prices=prices,
        minimum_commitment_minor=minimum,
    )


GRADUATED = price("graduated", meter_id="mtr_a", model="graduated", tiers=TIERS)
VOLUME = price("volume", meter_id="mtr_b", model="volume", tiers=TIERS)
PER_UNIT = price(
    "per_unit", meter_id="mtr_c", model="per_unit", unit_price="0.002", included_quantity="100"
)
PHASE = RatingPhase("ph_1", START, None, terms(GRADUATED, VOLUME, PER_UNIT))


def period(
    quantities: dict[str, Decimal],
    *,
    role: str = "close",
    priors: dict[str, Prior] | None = None,
    phase: RatingPhase = PHASE,
) -> PeriodToRate:
    return PeriodToRate(
        period_id="per_1",
        billing_period=PERIOD,
        phases=(phase,),
        quantities={("ph_1", key): value for key, value in quantities.items()},
        advance_charged_minor=0,
        role=role,  # type: ignore[arg-type]
        priors=priors or {},
    )


def request(*periods: PeriodToRate, **fields: object) -> AssemblyRequest:
    kind = fields.pop("kind", InvoiceKind.CYCLE)
    return AssemblyRequest("USD", kind, periods=tuple(periods), **fields)  # type: ignore[arg-type]


def priors_of(invoices: Sequence[AssembledInvoice]) -> dict[str, Prior]:
    result: dict[str, Prior] = {}
    for number, invoice in enumerate(invoices):
        for line in invoice.lines:
            seen = result.get(line.line_key, Prior())
            result[line.line_key] = Prior(
                seen.amount_minor + line.amount_minor,
                seen.usage_credit_quantity + line.usage_credit_quantity,
                line.quantity,
                (*seen.invoice_ids, f"in_{number}"),
            )
    return result


def test_lines_and_totals_of_a_closed_period() -> None:
    invoice = assemble(
        request(
            period({"graduated": Decimal(1001), "volume": Decimal(1001), "per_unit": Decimal(600)})
        )
    )
    amounts = {line.price_key: line.amount_minor for line in invoice.lines}
    assert amounts == {"graduated": 1501, "volume": 1301, "per_unit": 100}
    assert invoice.totals.subtotal_minor == 2902
    assert invoice.totals.amount_due_minor == 2902


def test_a_negative_total_is_carried_to_the_balance_and_nothing_is_due() -> None:
    credit = ChargeInput(
        "chg_1", "proration_credit", "Unused time", "USD", -5000, "per_1", START, END
    )
    invoice = assemble(
        request(
            period({"graduated": Decimal(100), "volume": Decimal(0), "per_unit": Decimal(0)}),
            charges=(credit,),
        ),
    )
    assert invoice.totals.subtotal_minor == 100 - 5000
    assert invoice.totals.balance_carried_minor == 4900
    assert invoice.totals.amount_due_minor == 0
    assert invoice.totals.credits_applied_minor == 0


def test_discounts_then_monetary_credits_then_the_balance() -> None:
    class Burner:
        def units(self, demands: Sequence[UnitDemand]) -> list[UnitCredit]:
            return []

        def money(self, amount: Money) -> list[MoneyCredit]:
            return [MoneyCredit("grt_1", min(amount.amount_minor, 300))]

    invoice = assemble(
        request(
            period({"graduated": Decimal(1000), "volume": Decimal(0), "per_unit": Decimal(0)}),
            discounts=(DiscountTerm("red_1", "TENOFF", percent_off=Decimal(10)),),
            balance_available_minor=200,
        ),
        Burner(),
    )
    totals = invoice.totals
    assert (totals.subtotal_minor, totals.discount_minor, totals.total_minor) == (1000, 100, 900)
    assert totals.credits_applied_minor == 500
    assert totals.balance_applied_minor == 200
    assert totals.amount_due_minor == 400


def test_usage_credits_reduce_the_billable_quantity_before_the_tiers() -> None:
    class Burner:
        def units(self, demands: Sequence[UnitDemand]) -> list[UnitCredit]:
            return [
                UnitCredit(d.index, "grt_u", d.meter_id, min(d.quantity, Decimal(2000)))
                for d in demands
                if d.meter_id == "mtr_a"
            ]

        def money(self, amount: Money) -> list[MoneyCredit]:
            return []

    invoice = assemble(
        request(period({"graduated": Decimal(3000), "volume": Decimal(0), "per_unit": Decimal(0)})),
        Burner(),
    )
    line = next(line for line in invoice.lines if line.price_key == "graduated")
    # 3,000 measured, 2,000 credited: 1,000 billed on the first tier.
    assert line.quantity == 3000
    assert line.usage_credit_quantity == 2000
    assert line.amount_minor == 1000
    assert invoice.credits_json()[0]["line_key"] == line.line_key


def test_the_content_hash_is_stable_and_changes_with_the_lines() -> None:
    quantities = {"graduated": Decimal(10), "volume": Decimal(20), "per_unit": Decimal(300)}
    first = assemble(request(period(quantities)))
    again = assemble(request(period(dict(quantities))))
    other = assemble(request(period({**quantities, "volume": Decimal(21)})))
    assert first.content_hash == again.content_hash
    assert first.content_hash != other.content_hash


quantity = st.integers(min_value=0, max_value=12_000).map(Decimal)


@settings(max_examples=150, deadline=None)
@given(
    first=st.tuples(quantity, quantity, quantity),
    more=st.tuples(quantity, quantity, quantity),
    percent=st.sampled_from([None, Decimal(10), Decimal("12.5"), Decimal(33)]),
)
def test_interim_plus_final_equals_one_undivided_invoice(
    first: tuple[Decimal, Decimal, Decimal],
    more: tuple[Decimal, Decimal, Decimal],
    percent: Decimal | None,
) -> None:
    keys = ("graduated", "volume", "per_unit")
    accrued = dict(zip(keys, first, strict=True))
    total = {k: accrued[k] + extra for k, extra in zip(keys, more, strict=True)}
    discounts = () if percent is None else (DiscountTerm("red_1", "PCT", percent_off=percent),)
    whole = assemble(request(period(total), discounts=discounts))
    interim = assemble(
        request(period(accrued, role="accrued"), kind=InvoiceKind.THRESHOLD, discounts=discounts)
    )
    given_before = {d.redemption_id: d.amount_minor for d in interim.discounts}
    final = assemble(
        request(
            period(total, priors=priors_of([interim])),
            discounts=tuple(
                replace(d, prior_discount_minor=given_before.get(d.redemption_id, 0))
                for d in discounts
            ),
            prior_period_subtotal_minor=interim.totals.subtotal_minor,
        )
    )
    by_key: dict[str, int] = {}
    for line in interim.lines + final.lines:
        by_key[line.line_key] = by_key.get(line.line_key, 0) + line.amount_minor
    assert by_key == {line.line_key: line.amount_minor for line in whole.lines}
    for field in ("subtotal_minor", "discount_minor", "total_minor"):
        split = getattr(interim.totals, field) + getattr(final.totals, field)
        assert split == getattr(whole.totals, field), field


@settings(max_examples=60, deadline=None)
@given(billed=st.tuples(quantity, quantity, quantity), late=st.tuples(quantity, quantity, quantity))
def test_an_adjustment_bills_exactly_the_difference(
    billed: tuple[Decimal, Decimal, Decimal], late: tuple[Decimal, Decimal, Decimal]
) -> None:
    keys = ("graduated", "volume", "per_unit")
    original = dict(zip(keys, billed, strict=True))
    now_known = {k: original[k] + extra for k, extra in zip(keys, late, strict=True)}
    invoiced = assemble(request(period(original)))
    adjustment = assemble(
        request(period(now_known, role="adjustment", priors=priors_of([invoiced])))
    )
    rerated = assemble(request(period(now_known)))
    assert all(line.kind == "adjustment" for line in adjustment.lines)
    assert (
        invoiced.totals.subtotal_minor + adjustment.totals.subtotal_minor
        == rerated.totals.subtotal_minor
    )
