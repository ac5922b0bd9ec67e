"""``tallybook console users …``: create, list, set-role, disable, enable, set-password; each
recorded in the audit log as the command line (role ``system``)."""

from __future__ import annotations

from typer.testing import CliRunner

from tallybook.cli.main import app
from tallybook.console import users
from tallybook.db import Database
from tests.console.conftest import PASSWORD, ConsoleClient, audit_entries
from tests.fixtures.databases import database_url_of


def run(db: Database, *args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(
        app, ["--database-url", database_url_of(db), "console", "users", *args], input=stdin
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_manage_users_from_the_command_line(console: ConsoleClient) -> None:
    db = console.db
    created = run(
        db,
        "create",
        "--email",
        "Fin@Example.com",
        "--name",
        "Fin Ance",
        "--role",
        "finance",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert "fin@example.com  finance" in created
    assert console.sign_in("fin@example.com").status_code == 303
    listing = run(db, "list")
    assert "finance" in listing and "active" in listing
    assert "finance → support" in run(
        db, "set-role", "fin@example.com", "support", "--reason", "moved team"
    )
    run(db, "disable", "fin@example.com", "--reason", "left the company")
    assert console.get("/console", follow_redirects=False).status_code == 303  # signed out
    run(db, "enable", "fin@example.com", "--reason", "came back")
    run(db, "set-password", "fin@example.com", "--password-stdin", stdin="another long password\n")
    assert console.sign_in("fin@example.com", "another long password").status_code == 303
    entries = [e for e in audit_entries(db) if e.object_type == "console_user"]
    assert [(e.action, e.actor, e.role) for e in entries] == [
        ("console_user.create", "cli", "system"),
        ("console_user.set_role", "cli", "system"),
        ("console_user.disable", "cli", "system"),
        ("console_user.enable", "cli", "system"),
        ("console_user.set_password", "cli", "system"),
    ]
    assert entries[1].reason == "moved team"
    assert entries[1].details == {"email": "fin@example.com", "from": "finance", "to": "support"}
    with db.read() as tx:
        assert users.get_by_email(tx, "fin@example.com").role == "support"


def test_errors_are_named(console: ConsoleClient) -> None:
    result = CliRunner().invoke(
        app,
        [
            "--database-url",
            database_url_of(console.db),
            "console",
            "users",
            "create",
            "--email",
            "x@example.com",
            "--name",
            "X",
            "--role",
            "boss",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 1
    assert "parameter_invalid" in result.output and "role" in result.output
    missing = CliRunner().invoke(
        app,
        [
            "--database-url",
            database_url_of(console.db),
            "console",
            "users",
            "disable",
            "ghost@example.com",
            "--reason",
            "x",
        ],
    )
    assert missing.exit_code == 1 and "resource_missing" in missing.output
