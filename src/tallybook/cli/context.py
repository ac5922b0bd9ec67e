"""How CLI commands get their database: ``--database-url`` or ``DATABASE_URL``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tallybook.db import Database
from tallybook.db.migrate import ensure_schema, is_up_to_date
from tallybook.kit.errors import TallybookError
from tallybook.kit.settings import Settings

console = Console()
err_console = Console(stderr=True)


class CliState:
    database_url: str | None = None


STATE = CliState()


def settings() -> Settings:
    base = Settings.from_env()
    if STATE.database_url:
        return Settings(
            database_url=STATE.database_url,
            late_event_grace_hours=base.late_event_grace_hours,
            log_json=base.log_json,
            log_level=base.log_level,
            extra=base.extra,
        )
    return base


def open_database(*, migrate: bool = False) -> Database:
    """Open the configured database; with ``migrate`` bring the schema to head first."""
    db = Database(settings().database_url)
    if migrate:
        ensure_schema(db.engine)
    elif not is_up_to_date(db.engine):
        err_console.print(
            "[red]The database schema is not up to date.[/red] Run [bold]tallybook db upgrade[/bold]."
        )
        raise typer.Exit(2)
    return db


def fail(error: TallybookError) -> None:
    """Print a domain error the same way the API names it, and exit non-zero."""
    param = f" (param: {error.param})" if error.param else ""
    err_console.print(f"[red]error[/red] {error.code}: {error.message}{param}")
    raise typer.Exit(1)


@contextmanager
def handle_errors() -> Any:
    try:
        yield
    except TallybookError as error:
        fail(error)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def progress_factory(progress: Progress) -> Callable[[str], Callable[[int, int | None, str], None]]:
    """Adapt rich progress bars to JobContext.progress callbacks (one bar per job)."""

    def factory(job_name: str) -> Callable[[int, int | None, str], None]:
        task_id = progress.add_task(job_name, total=None)

        def update(done: int, total: int | None, text: str) -> None:
            progress.update(task_id, completed=done, total=total, description=text or job_name)

        return update

    return factory
