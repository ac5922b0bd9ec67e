"""Property, on both backends (few examples: each is three months of real billing): for any
usage and minimum commitment, simulating the version a customer is on changes nothing, and
its "current" figure of every period is exactly what the finalized invoices billed for it."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallybook.db import Database
from tests.simulation.helpers import billed_customer, run

usage_event = st.tuples(
    st.integers(min_value=0, max_value=91),  # day from Nov 1 (three months)
    st.integers(min_value=0, max_value=9000),  # tokens
)


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    events=st.lists(usage_event, min_size=0, max_size=5),
    minimum=st.sampled_from([None, 3000, 6000]),
)
def test_same_version_gives_zero_delta_and_reproduces_the_invoices(
    db: Database, events: list[tuple[int, int]], minimum: int | None
) -> None:
    billing = billed_customer(db, events, meters=("tokens",), minimum_commitment_minor=minimum)
    report = run(billing.db, billing.version_id, customer_ids=(billing.customer_id,), periods=3)
    (customer,) = report.customers
    assert len(customer.periods) == 3
    for period in customer.periods:
        assert period.current_minor == period.invoiced_minor, period
        assert period.proposed_minor == period.current_minor, period
        assert all(row.delta_minor == 0 for row in period.prices)
    assert report.delta_minor == 0 and report.unchanged_count == 1
