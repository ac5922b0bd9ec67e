"""The demo's metering part, scaled down: duplicates, late events and a replayed dead letter
all happen, and usage per meter is printed."""

from __future__ import annotations

import io

from rich.console import Console

from tallybook.cli.demo_metering import run_metering_demo
from tallybook.db import Database


def test_demo_month(sqlite_db: Database) -> None:
    output = io.StringIO()
    report = run_metering_demo(
        sqlite_db, Console(file=output, width=120), customer_count=25, requests=3_000
    )
    counts = report.counts
    assert counts["accepted"] > 3_000
    assert counts["duplicate"] > 0
    assert counts["late"] > 0
    assert counts["rejected"] == 20
    text = output.getvalue()
    assert "20 replayed" in text
    for meter in ("tokens", "requests", "active_seats", "storage_gb"):
        assert meter in text
