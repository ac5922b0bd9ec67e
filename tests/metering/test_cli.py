"""The CLI is a thin layer: meters, events (send, status, dead letters) and usage tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from tallybook.cli.main import app
from tallybook.db import Database
from tests.fixtures.databases import database_url_of
from tests.fixtures.factories import create_customer


def run(db: Database, *args: str) -> str:
    result = CliRunner().invoke(
        app, ["--database-url", database_url_of(db), *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_meters_events_usage_and_dead_letters(sqlite_db: Database, tmp_path: Path) -> None:
    with sqlite_db.transaction() as tx:
        create_customer(tx, external_id="acme")
    created = run(
        sqlite_db,
        "meters",
        "create",
        "--key",
        "tokens",
        "--event-type",
        "llm.request",
        "--aggregation",
        "sum",
        "--value-path",
        "tokens",
        "--group-by",
        "model",
        "--filter",
        "billable eq true",
    )
    assert "tokens" in created
    assert "tokens" in run(sqlite_db, "meters", "list")

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    events = [
        {
            "specversion": "1.0",
            "id": f"e{i}",
            "source": "cli",
            "type": "llm.request",
            "subject": "acme" if i < 4 else "ghost",
            "time": (now - timedelta(hours=1, minutes=i)).isoformat(),
            "data": {"tokens": 10 * (i + 1), "model": "m1" if i % 2 else "m2", "billable": True},
        }
        for i in range(6)
    ]
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events))
    assert "accepted=4" in run(sqlite_db, "events", "send", str(path))
    assert "rejected=0" not in run(sqlite_db, "events", "send", str(path))  # duplicates now

    table = run(
        sqlite_db,
        "usage",
        "acme",
        "--meter",
        "tokens",
        "--from",
        (now - timedelta(days=1)).date().isoformat(),
        "--to",
        (now + timedelta(days=1)).isoformat(),
        "--window",
        "day",
        "--group-by",
        "model",
    )
    assert "100" in table and "m1" in table and "m2" in table

    listing = run(sqlite_db, "events", "dead-letters", "list", "--code", "customer_not_found")
    assert "ghost" in listing and "cli/e5" in listing
    with sqlite_db.transaction() as tx:
        create_customer(tx, external_id="ghost")
    assert "accepted=2" in run(sqlite_db, "events", "dead-letters", "replay", "--all")
    status = run(sqlite_db, "events", "status")
    assert "replayed=2" in status
    assert "complete" in run(sqlite_db, "meters", "backfill")
