"""The simulation service on both backends: current figures reproduce the invoices, a draft's
figures are what its prices say, nothing is written, and bad input is a named error."""

from __future__ import annotations

import pytest

from tallybook.db import Database
from tallybook.kit.errors import InvalidRequest, NotFound
from tallybook.simulation.domain import MatchKind
from tests.fixtures.catalog_factories import flat_price
from tests.fixtures.invoicing_factories import per_unit
from tests.simulation.helpers import (
    billed_customer,
    cheaper_tokens,
    draft_version,
    row_counts,
    run,
)


def test_simulating_the_version_a_customer_is_on_reproduces_the_invoices(db: Database) -> None:
    billing = billed_customer(db)
    report = run(billing.db, billing.version_id, customer_ids=(billing.customer_id,), periods=3)
    (customer,) = report.customers
    assert [p.invoiced_minor for p in customer.periods] == [4460, 7200, 2200]
    assert [p.current_minor for p in customer.periods] == [4460, 7200, 2200]
    assert [p.proposed_minor for p in customer.periods] == [4460, 7200, 2200]
    # The finalized invoices' subtotals, period by period (opening: Nov's fee; each cycle
    # invoice: the month's usage and the next month's fee).
    subtotals = [i.subtotal_minor for i in billing.invoices() if i.status != "draft"]
    assert sum(subtotals) == 4460 + 7200 + 2200 + 2000  # + February's fee, billed in advance
    assert report.delta_minor == 0
    assert report.winners == [] and report.losers == [] and report.unchanged_count == 1


def test_a_draft_is_rated_on_its_own_prices_and_matched_by_meter(db: Database) -> None:
    billing = billed_customer(db)
    draft = draft_version(billing.db, billing, cheaper_tokens(billing))
    report = run(billing.db, draft, customer_ids=(billing.external_id,), periods=3)
    assert report.version_status == "draft"
    (customer,) = report.customers
    assert [p.proposed_minor for p in customer.periods] == [3780, 7050, 1830]
    assert (report.current_minor, report.proposed_minor) == (13860, 12660)
    assert report.delta_minor == -1200 and str(report.delta_percent) == "-8.7"
    assert report.winners == [customer] and report.losers == []
    rows = {(r.key, r.match): (r.current_minor, r.proposed_minor) for r in report.prices}
    assert rows == {
        ("fee", MatchKind.MATCHED): (6000, 4500),
        ("tokens", MatchKind.MATCHED): (7860, 7560),
        ("images", MatchKind.ADDED): (0, 600),
    }


def test_the_last_n_periods_are_the_most_recent_closed_ones(db: Database) -> None:
    billing = billed_customer(db)
    report = run(billing.db, billing.version_id, customer_ids=(billing.customer_id,), periods=2)
    periods = report.customers[0].periods
    assert [p.start.month for p in periods] == [12, 1]
    many = run(billing.db, billing.version_id, customer_ids=(billing.customer_id,), periods=24)
    assert len(many.customers[0].periods) == 3  # only three are closed


def test_removed_prices_and_a_minimum_commitment(db: Database) -> None:
    billing = billed_customer(db)
    # Fee only, with a 60.00 minimum: the tokens price is gone, the true-up fills the rest.
    draft = draft_version(billing.db, billing, [flat_price(2000)], minimum_commitment_minor=6000)
    report = run(billing.db, draft, customer_ids=(billing.customer_id,), periods=3)
    assert [p.proposed_minor for p in report.customers[0].periods] == [6000, 6000, 6000]
    rows = {(r.key, r.match): (r.current_minor, r.proposed_minor) for r in report.prices}
    assert rows[("tokens", MatchKind.REMOVED)] == (7860, 0)
    assert rows[("minimum_true_up", MatchKind.MINIMUM)] == (0, 12000)
    assert report.losers[0].customer_id == billing.customer_id


def test_all_customers_of_the_plan_and_nothing_is_written(db: Database) -> None:
    billing = billed_customer(db)
    draft = draft_version(billing.db, billing, cheaper_tokens(billing))
    before = row_counts(billing.db)
    report = run(billing.db, draft, all_customers=True, periods=3)
    assert [c.customer_id for c in report.customers] == [billing.customer_id]
    assert row_counts(billing.db) == before


def test_a_simulation_refuses_a_unit_of_work_that_could_write(db: Database) -> None:
    from tallybook.simulation import service as simulation
    from tallybook.simulation.service import SimulationRequest

    with db.transaction(actor="test") as tx, pytest.raises(AssertionError):
        simulation.simulate(tx, SimulationRequest("pv_x", all_customers=True))


def _error(db: Database, version_id: str, **request: object) -> InvalidRequest | NotFound:
    with pytest.raises((InvalidRequest, NotFound)) as caught:
        run(db, version_id, **request)
    error = caught.value
    assert isinstance(error, InvalidRequest | NotFound)
    return error


def test_bad_input_is_a_named_error(db: Database) -> None:
    billing = billed_customer(db, usage=[(3, 10)])
    one = (billing.customer_id,)
    error = _error(billing.db, "pv_missing", customer_ids=one)
    assert (error.code, error.param) == ("resource_missing", "plan_version")
    for periods in (0, -1, 25):
        error = _error(billing.db, billing.version_id, customer_ids=one, periods=periods)
        assert (error.code, error.param) == ("simulation_periods_invalid", "periods")
    error = _error(billing.db, billing.version_id)
    assert (error.code, error.param) == ("simulation_customers_invalid", "customers")
    error = _error(billing.db, billing.version_id, customer_ids=one, all_customers=True)
    assert (error.code, error.param) == ("simulation_customers_invalid", "customers")
    error = _error(billing.db, billing.version_id, customer_ids=(*one, "cus_nobody"))
    assert (error.code, error.param) == ("resource_missing", "customers[1]")


def test_a_version_in_another_currency_or_interval_is_refused(db: Database) -> None:
    billing = billed_customer(db, usage=[(3, 10)])
    euros = draft_version(
        billing.db, billing, [per_unit(billing.meters["tokens"], "0.01")], currency="EUR"
    )
    error = _error(billing.db, euros, customer_ids=(billing.customer_id,))
    assert (error.code, error.param) == ("simulation_currency_mismatch", "plan_version")
    # Simulating every customer skips them instead, saying why.
    report = run(billing.db, euros, all_customers=True)
    assert report.customers == ()
    assert [(s.customer_id, s.code) for s in report.skipped] == [
        (billing.customer_id, "simulation_currency_mismatch")
    ]
    yearly = draft_version(billing.db, billing, [flat_price(20000)], interval="year")
    error = _error(billing.db, yearly, customer_ids=(billing.customer_id,))
    assert (error.code, error.param) == ("simulation_interval_mismatch", "plan_version")
