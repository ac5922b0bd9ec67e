from __future__ import annotations

import typer

from tallybook.cli.context import console, settings
from tallybook.db import Database
from tallybook.db.migrate import current_revision, head_revision, upgrade

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command() -> None:
    """Migrate the database to the newest schema (safe to run repeatedly)."""
    db = Database(settings().database_url)
    upgrade(db.engine)
    console.print(f"schema at [bold]{current_revision(db.engine)}[/bold]")


@app.command("current")
def current_command() -> None:
    """Show the schema revision of the database and of this code."""
    db = Database(settings().database_url)
    console.print(f"database: {current_revision(db.engine)}  code: {head_revision()}")
