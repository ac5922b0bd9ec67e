"""Properties over random months of usage, on both backends (few examples: each is a real
billing run):

- summed over all invoices, the quantity invoiced per meter and period equals the rollups of
  that period (nothing missed, nothing twice), late events included, and the amounts billed for
  it add up to the price of that quantity;
- every invoice's amount due equals its transfers' net movement on the customer's receivable;
- re-rating each finalized invoice reproduces its content hash (before late usage arrives);
- the ledger check passes.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallybook.db import Database
from tallybook.invoicing import service as invoicing
from tallybook.kit.clock import utc
from tallybook.kit.money import round_to_minor
from tallybook.ledger import service as ledger
from tallybook.metering import service as metering
from tallybook.rating import model_charge
from tallybook.subscriptions import service as subscriptions
from tests.invoicing.test_close import GRADUATED, receivable_movement, tokens_plan

usage_event = st.tuples(
    st.integers(min_value=0, max_value=58),  # day of the event from Nov 1
    st.integers(min_value=1, max_value=4000),  # tokens
    st.integers(min_value=0, max_value=12),  # days late (0: on time)
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=st.lists(usage_event, min_size=1, max_size=6))
def test_invoiced_usage_equals_the_rollups_and_the_receivable_moves_by_the_amount_due(
    db: Database, events: list[tuple[int, int, int]]
) -> None:
    billing = tokens_plan(db)
    start = utc(2026, 11, 1)
    arrivals = []
    for day, tokens, late in events:
        at = start + timedelta(days=day, hours=12)
        arrivals.append((at + timedelta(days=late), at, tokens))
    for arrival, at, tokens in sorted(arrivals):
        billing.run_jobs(arrival)
        billing.at(arrival)
        _send(billing, at, tokens)
    billing.run_jobs(utc(2027, 2, 1, 2))
    late_times = [at for arrival, at, _ in arrivals if arrival > at]
    _check_rerating(billing, late_times)
    with billing.db.read() as tx:
        periods = [
            p for p in subscriptions.periods(tx, billing.subscription_id) if p.status == "ended"
        ]
        invoices = [invoicing.get_invoice(tx, i.id or "") for i in billing.invoices()]
        for period in periods:
            measured = metering.usage_total(
                tx,
                meter_id=billing.meters["tokens"],
                customer_id=billing.customer_id,
                start=period.start_at,
                end=period.end_at,
            )
            assert isinstance(measured, Decimal)
            lines = [
                line
                for invoice in invoices
                for line in invoice.lines
                if line.period_id == period.id and line.meter_id is not None
            ]
            assert lines, f"period {period.id} was never invoiced"
            assert lines[-1].quantity == measured  # the latest billing saw every event
            price = _graduated()
            expected = round_to_minor(model_charge(price, measured, "USD").amount, "USD")
            assert sum(line.amount_minor for line in lines) == expected
        report = ledger.check_invariants(tx)
    assert report.ok, report
    for invoice in invoices:
        assert invoice.id is not None
        movement = receivable_movement(billing.db, invoice.id, billing.customer_id)
        assert movement == invoice.amount_due_minor


def _send(billing, at, tokens):  # type: ignore[no-untyped-def]
    billing.usage("tokens", tokens, at) if at >= billing.clock.now() else _late(billing, at, tokens)


def _late(billing, at, tokens):  # type: ignore[no-untyped-def]
    from tallybook.kit.clock import isoformat_z
    from tallybook.kit.ids import new_id

    event = {
        "specversion": "1.0",
        "id": new_id("ev"),
        "source": "test",
        "type": "tokens.used",
        "subject": billing.external_id,
        "time": isoformat_z(at),
        "data": {"value": str(tokens)},
    }
    with billing.db.transaction() as tx:
        assert metering.ingest_events(tx, [event]).outcomes[0].status == "accepted"


def _check_rerating(billing, late_times) -> int:  # type: ignore[no-untyped-def]
    """Every finalized invoice re-rates to its content hash, except those whose own period
    received late usage after them (the next invoice adjusted it; re-rating now differs)."""
    checked = 0
    with billing.db.read() as tx:
        for invoice in billing.invoices():
            touched = any(invoice.period_start <= t < invoice.period_end for t in late_times)
            if invoice.status in ("open", "paid") and invoice.id is not None and not touched:
                now_hash, stored = invoicing.rerate(tx, invoice.id)
                assert now_hash == stored, invoice.number
                checked += 1
    return checked


def _graduated():  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from tallybook.catalog.pricing import parse_price

    return replace(
        parse_price(
            {
                "type": "usage",
                "key": "tokens",
                "name": "Tokens",
                "meter_id": "mtr_x",
                "model": "graduated",
                "tiers": GRADUATED,
            }
        ),
        id="price",
    )
