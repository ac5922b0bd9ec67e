"""The simulation through its edges: ``POST /v1/simulations``, ``tallybook simulate`` and the
console page (a viewer may look); none of them writes a row."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tallybook.api.app import create_app
from tallybook.cli.main import app as cli_app
from tallybook.db import Database
from tallybook.http.edge import clear_caller_cache
from tests.console.conftest import ConsoleClient
from tests.fixtures.databases import database_url_of
from tests.http.test_edge import assert_error
from tests.simulation.helpers import billed_customer, cheaper_tokens, draft_version, row_counts


@pytest.fixture
def console(db: Database) -> Iterator[ConsoleClient]:
    clear_caller_cache()
    client = ConsoleClient(create_app(db), base_url="http://testserver")
    client.db = db
    with client:
        yield client


def test_the_api_returns_the_report_and_stores_nothing(api, db: Database) -> None:  # type: ignore[no-untyped-def]
    billing = billed_customer(db)
    draft = draft_version(db, billing, cheaper_tokens(billing))
    before = row_counts(db)
    body = {"plan_version": draft, "customers": [billing.external_id], "periods": 3}
    response = api.post("/v1/simulations", json=body)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["object"] == "simulation"
    assert (report["current_minor"], report["proposed_minor"], report["delta_minor"]) == (
        13860,
        12660,
        -1200,
    )
    assert report["winners"] == [billing.customer_id] and report["losers"] == []
    (customer,) = report["customers"]
    assert [p["invoiced_minor"] for p in customer["periods"]] == [4460, 7200, 2200]
    assert row_counts(db) == before  # not even an idempotency record
    assert_error(
        api.post("/v1/simulations", json={**body, "periods": 0}),
        400,
        "simulation_periods_invalid",
        "periods",
    )
    assert_error(
        api.post("/v1/simulations", json={**body, "plan_version": "pv_nope"}),
        404,
        "resource_missing",
        "plan_version",
    )
    assert_error(
        api.post("/v1/simulations", json={**body, "surprise": 1}), 400, "parameter_unknown"
    )


def test_the_command_line_prints_the_report(db: Database) -> None:
    billing = billed_customer(db)
    draft = draft_version(db, billing, cheaper_tokens(billing))
    before = row_counts(db)
    args = ["--database-url", database_url_of(db), "simulate", "--plan-version", draft]
    result = CliRunner().invoke(cli_app, [*args, "--all", "--periods", "3"])
    assert result.exit_code == 0, result.output
    assert "1 pay less" in result.output and "(-8.7%)" in result.output
    as_json = CliRunner().invoke(cli_app, [*args, "--customers", billing.customer_id, "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert '"object": "simulation"' in as_json.output
    bad = CliRunner().invoke(cli_app, [*args, "--all", "--periods", "0"])
    assert bad.exit_code == 1 and "simulation_periods_invalid" in bad.output
    assert row_counts(db) == before


def test_a_viewer_sees_totals_chart_and_a_sortable_table(console: ConsoleClient) -> None:
    db = console.db
    billing = billed_customer(db)
    draft = draft_version(db, billing, cheaper_tokens(billing))
    console.as_role("viewer")
    empty = console.get("/console/simulation")
    assert empty.status_code == 200 and draft in empty.text
    before = row_counts(db)
    page = console.get(f"/console/simulation?plan_version={draft}&periods=3&sort=delta&dir=asc")
    assert page.status_code == 200, page.text
    assert 'data-testid="simulation-chart"' in page.text and "<svg" in page.text
    assert "126.60" in page.text and "pays less" in page.text
    assert f'data-customer="{billing.customer_id}"' in page.text
    bad = console.get(f"/console/simulation?plan_version={draft}&periods=99")
    assert bad.status_code == 400 and "simulation_periods_invalid" in bad.text
    after = row_counts(db)
    # Simulating writes nothing (console tables aside: sessions may be touched by any page).
    assert {k: v for k, v in after.items() if not k.startswith("console_")} == {
        k: v for k, v in before.items() if not k.startswith("console_")
    }
