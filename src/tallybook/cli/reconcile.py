"""``tallybook reconcile``: run the day's reconciliation (once per UTC day) and list what it
found; ``tallybook reconcile --list`` only lists open discrepancies."""

from __future__ import annotations

from datetime import date

import typer
from rich.table import Table

from tallybook.cli.context import console, handle_errors, open_database
from tallybook.cli.groups import CliGroups
from tallybook.reconciliation import service


def reconcile(
    day: str | None = typer.Option(None, "--date", help="UTC day (YYYY-MM-DD); default today"),
    list_only: bool = typer.Option(False, "--list", help="Only list open discrepancies"),
    kind: str | None = typer.Option(None, help="List only this kind"),
    limit: int = typer.Option(50, help="Discrepancies to list"),
) -> None:
    """Compare ledger, invoices, usage, payments and clearing accounts; list discrepancies."""
    db = open_database()
    with handle_errors():
        if not list_only:
            outcome = service.run_reconciliation(
                db, day=date.fromisoformat(day) if day else None, owner="cli"
            )
            run = outcome.run
            verb = "ran" if outcome.ran else "already ran"
            console.print(
                f"{run.id}  {run.run_date}  {verb}: {run.discrepancies_found} found, "
                f"{run.discrepancies_new} new, {run.discrepancies_resolved} resolved"
            )
            for name, scope in sorted((run.checks or {}).items()):
                console.print(f"  {name}: {scope}")
        with db.read() as tx:
            rows = service.list_discrepancies(tx, open_only=True, kind=kind, limit=limit)
            table = Table("id", "kind", "currency", "expected", "actual", "first seen", "detail")
            for d in rows:
                expected = d.expected_minor if d.expected_minor is not None else d.expected_quantity
                actual = d.actual_minor if d.actual_minor is not None else d.actual_quantity
                table.add_row(
                    d.id,
                    d.kind,
                    d.currency or "",
                    "" if expected is None else str(expected),
                    "" if actual is None else str(actual),
                    d.first_seen_at.isoformat(timespec="minutes"),
                    d.detail,
                )
            total = service.count_open(tx, kind=kind)
    console.print(table)
    console.print(f"{total} open")
    if total:
        raise typer.Exit(code=1)


def register(groups: CliGroups) -> None:
    groups.root.command("reconcile")(reconcile)
