from __future__ import annotations

import typer
from rich.table import Table

from tallybook.cli.context import (
    console,
    open_database,
    progress_bar,
    progress_factory,
    settings,
)
from tallybook.jobs.registry import scheduled_jobs
from tallybook.jobs.runner import relay_outbox, run_due, run_worker
from tallybook.observability.logging import configure_logging
from tallybook.observability.metrics import serve_worker_metrics
from tallybook.work import outbox
from tallybook.work.jobruns import recent_runs

app = typer.Typer(help="Scheduled jobs.", no_args_is_help=True)


@app.command("run-due")
def run_due_command(
    only: list[str] = typer.Option([], help="Run only these jobs (repeatable)"),
) -> None:
    """Run every job that is due now, once. Safe to run twice or after a crash."""
    db = open_database()
    with progress_bar() as progress:
        reports = run_due(db, only=only or None, progress_factory=progress_factory(progress))
    table = Table("job", "report")
    for name, report in reports.items():
        table.add_row(name, ", ".join(f"{k}={v}" for k, v in report.items()) or "-")
    console.print(table)


@app.command("list")
def list_jobs() -> None:
    table = Table("job", "every", "what it does")
    for job in scheduled_jobs():
        table.add_row(job.name, f"{job.every_seconds}s", job.description)
    console.print(table)


@app.command("runs")
def runs(job: str | None = typer.Option(None), limit: int = 30) -> None:
    """Recent job runs with their status."""
    db = open_database()
    with db.read() as tx:
        rows = recent_runs(tx, job=job, limit=limit)
        table = Table("job", "run key", "status", "attempts", "started", "finished")
        for run in rows:
            table.add_row(
                run.job,
                run.run_key,
                run.status,
                str(run.attempts),
                run.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                run.finished_at.strftime("%Y-%m-%d %H:%M:%S") if run.finished_at else "",
            )
    console.print(table)


@app.command("relay")
def relay() -> None:
    """Deliver due outbox messages once."""
    db = open_database()
    console.print(relay_outbox(db))


@app.command("outbox-replay")
def outbox_replay(message_id: str) -> None:
    """Give a dead outbox message a fresh start."""
    db = open_database()
    with db.transaction(actor="cli") as tx:
        outbox.replay(tx, message_id)
    console.print(f"replaying {message_id}")


def worker() -> None:
    """Run the scheduler and the outbox relay until stopped (SIGTERM/SIGINT)."""
    current = settings()
    configure_logging(json_lines=current.log_json, level=current.log_level)
    serve_worker_metrics()
    db = open_database(migrate=True)
    run_worker(db)
