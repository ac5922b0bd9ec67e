"""The CLI is a thin layer over the grants and entitlements services."""

from __future__ import annotations

from typer.testing import CliRunner

from tallybook.cli.main import app
from tallybook.db import Database
from tallybook.grants import service as grants
from tallybook.kit.pagination import PageRequest
from tests.fixtures.catalog_factories import create_subscription
from tests.fixtures.databases import database_url_of
from tests.fixtures.grants_factories import metered_setup, send_usage


def run(db: Database, *args: str, exit_code: int = 0) -> str:
    result = CliRunner().invoke(
        app, ["--database-url", database_url_of(db), *args], catch_exceptions=False
    )
    assert result.exit_code == exit_code, result.output
    return result.output


def test_grants_promotions_and_entitlements_from_the_command_line(sqlite_db: Database) -> None:
    with sqlite_db.transaction() as tx:
        setup = metered_setup(tx, external_id="acme", limit=10)
        subscription = create_subscription(tx, customer=setup.customer).subscription
    created = run(
        sqlite_db,
        "grants",
        "create",
        "--customer",
        "acme",
        "--amount-minor",
        "1500",
        "--reason",
        "sorry",
    )
    assert "15.00 USD" in created
    with sqlite_db.read() as tx:
        grant = grants.list_views(tx, PageRequest(limit=5)).data[0].grant
        assert grant.issued_by.startswith("cli") and grant.reason == "sorry"
        grant_id = grant.id
    assert grant_id in run(sqlite_db, "grants", "list", "--customer", "acme")
    assert "voided" in run(sqlite_db, "grants", "void", grant_id, "--reason", "test")
    run(
        sqlite_db,
        "grants",
        "recurring",
        "create",
        "--customer",
        "acme",
        "--amount-minor",
        "100",
        "--interval",
        "week",
        "--reason",
        "weekly",
    )
    assert "1 week" in run(sqlite_db, "grants", "recurring", "list")

    run(
        sqlite_db,
        "promotions",
        "create",
        "--code",
        "HALF",
        "--percent-off",
        "50",
        "--max-redemptions",
        "1",
    )
    assert "redeemed" in run(
        sqlite_db,
        "promotions",
        "redeem",
        "half",
        "--customer",
        "acme",
        "--subscription",
        subscription.id,
    )
    assert "HALF" in run(sqlite_db, "promotions", "list")

    assert "ok" in run(sqlite_db, "entitlements", "check", "acme", setup.feature.key)
    send_usage(sqlite_db, setup.customer, 10)
    assert "limit_exceeded" in run(
        sqlite_db, "entitlements", "check", "acme", setup.feature.key, exit_code=1
    )
    run(
        sqlite_db,
        "entitlements",
        "overrides",
        "create",
        "--customer",
        "acme",
        "--feature",
        setup.feature.key,
        "--limit",
        "20",
        "--reason",
        "bump",
    )
    assert "override" in run(sqlite_db, "entitlements", "list", "acme")
    assert "alerts at [50, 80, 100]%" in run(
        sqlite_db, "entitlements", "spend-limit", "set", "acme", "--amount-minor", "500"
    )
    assert "limit 5.00 USD" in run(sqlite_db, "entitlements", "spend-limit", "show", "acme")
    reserved = run(
        sqlite_db,
        "entitlements",
        "reservations",
        "create",
        "--customer",
        "acme",
        "--feature",
        setup.feature.key,
        "--quantity",
        "3",
    )
    reservation_id = reserved.split()[0]
    assert "settled" in run(sqlite_db, "entitlements", "reservations", "settle", reservation_id)
