"""The batch's JSON conversion (``domain.jsonable``, ``domain.hash_of``) gives exactly what
``kit.hashing`` gives: the stored breakdowns and content hashes do not depend on the path."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tallybook.invoicing import domain
from tallybook.kit.hashing import content_hash, json_dumps, json_loads

decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d) < Decimal("1e15")
) | st.sampled_from([Decimal("-0"), Decimal("0.000"), Decimal("1E+3"), Decimal("100")])
leaves = (
    decimals
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=5)
    | st.none()
    | st.datetimes(timezones=st.just(UTC), min_value=datetime(2000, 1, 1))
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(values, values)
def test_jsonable_equals_kit(first: object, second: object) -> None:
    # Twice (the second conversion meets the remembered Decimal texts of the first).
    for value in (first, second, first):
        assert domain.jsonable(value) == json_loads(json_dumps(value))


def test_negative_zero_keeps_its_text() -> None:
    for value in ([Decimal("0")], [Decimal("-0")], [Decimal("0")]):
        assert domain.jsonable(value) == json_loads(json_dumps(value))


@given(st.lists(st.tuples(decimals, st.integers(-(10**9), 10**9)), max_size=5))
def test_hash_of_equals_content_hash(rows: list[tuple[Decimal, int]]) -> None:
    lines = tuple(
        domain.LineDraft(
            kind="usage",
            source=domain.LineSource.RATED,
            line_key=f"k{n}",
            description="d",
            currency="USD",
            amount_minor=amount,
            service_start=datetime(2027, 1, 1, tzinfo=UTC),
            service_end=datetime(2027, 2, 1, tzinfo=UTC),
            quantity=quantity,
            breakdown={"unit_price": quantity, "tiers": [{"quantity": quantity}]},
        )
        for n, (quantity, amount) in enumerate(rows)
    )
    invoice = domain.AssembledInvoice(
        currency="USD",
        kind=domain.InvoiceKind.CYCLE,
        lines=lines,
        discounts=(),
        unit_credits=(),
        money_credits=(),
        totals=domain.Totals(0, 0, 0, 0, 0, 0, 0),
        content_hash="",
    )
    assert domain.hash_of(invoice) == content_hash(domain.canonical(invoice))
