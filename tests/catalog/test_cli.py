"""``tallybook features|plans|subscriptions`` against a SQLite file."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from tallybook.cli.main import app
from tallybook.db import Database
from tests.fixtures.databases import database_url_of
from tests.fixtures.factories import create_customer


def test_plans_and_subscriptions_from_the_command_line(sqlite_db: Database, tmp_path: Path) -> None:
    url = database_url_of(sqlite_db)
    with sqlite_db.transaction() as tx:
        create_customer(tx, external_id="user-1")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, ["--database-url", url, *args])
        assert result.exit_code == 0, result.output
        return result.output

    run("features", "create", "--key", "sso", "--name", "SSO")
    assert "sso" in run("features", "list")
    run("plans", "create", "--key", "pro", "--name", "Pro")
    definition = tmp_path / "pro.json"
    definition.write_text(
        json.dumps(
            {
                "currency": "USD",
                "interval": "month",
                "prices": [{"type": "flat", "amount_minor": 2500, "name": "Pro monthly"}],
                "entitlements": [{"feature": "sso", "enabled": True}],
            }
        )
    )
    assert "v1" in run("plans", "version-create", "pro", "--file", str(definition), "--publish")
    assert "published" in run("plans", "list")
    preview = run("subscriptions", "create", "--customer", "user-1", "--plan", "pro", "--preview")
    assert "preview" in preview and "25.00 USD" in preview
    created = run("subscriptions", "create", "--customer", "user-1", "--plan", "pro")
    match = re.search(r"sub_[0-9A-Z]{26}", created)
    assert match is not None
    # Rich wraps long cells in a narrow terminal: look for the id's start.
    assert match.group(0)[:12] in run("subscriptions", "list", "--customer", "user-1")
    assert "fee_advance" in run("subscriptions", "show", match.group(0))
    canceled = run("subscriptions", "cancel", match.group(0), "--now", "--credit")
    assert "canceled" in canceled


def test_errors_are_named(sqlite_db: Database) -> None:
    result = CliRunner().invoke(
        app,
        [
            "--database-url",
            database_url_of(sqlite_db),
            "plans",
            "create",
            "--key",
            "Bad Key",
            "--name",
            "x",
        ],
    )
    assert result.exit_code == 1
    assert "plan_key_invalid" in result.output
