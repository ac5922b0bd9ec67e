"""``tallybook``: the command line. Thin: every command calls a domain service."""

from __future__ import annotations

import json

import typer

from tallybook.cli import (
    apikey,
    catalog,
    console_users,
    customers,
    grants,
    invoicing,
    jobs,
    ledger,
    metering,
    payments,
    reconcile,
    simulate,
    tooling,
)
from tallybook.cli import db as db_cli
from tallybook.cli.context import STATE, console
from tallybook.cli.groups import CliGroups
from tallybook.cli.serve import serve

app = typer.Typer(
    help="tallybook: usage-based billing whose numbers are always right.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
worker_app = typer.Typer(help="Long-running workers.", invoke_without_command=True)


@app.callback()
def root(
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        envvar="DATABASE_URL",
        help="sqlite:///file.sqlite or postgresql://…",
    ),
) -> None:
    STATE.database_url = database_url


@worker_app.callback()
def worker_default(ctx: typer.Context) -> None:
    """Without a sub-command: the scheduler and outbox relay."""
    if ctx.invoked_subcommand is None:
        jobs.worker()


@app.command("openapi")
def openapi(output: str = typer.Option("-", help="File to write, or - for stdout")) -> None:
    """Print the OpenAPI document (the checked-in openapi.json is this output)."""
    from tallybook.api.app import openapi_document

    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if output == "-":
        console.out(text, end="")
    else:
        with open(output, "w") as handle:
            handle.write(text)


@app.command("demo")
def demo(
    database: str = typer.Option("tallybook-demo.sqlite", help="SQLite file for the demo"),
    fresh: bool = typer.Option(True, help="Start from an empty database file"),
) -> None:
    """Run the end-to-end demo on an embedded SQLite file."""
    from tallybook.cli.demo import run_demo

    run_demo(database, fresh=fresh)


app.command("serve")(serve)
app.add_typer(db_cli.app, name="db")
app.add_typer(apikey.app, name="apikey")
app.add_typer(jobs.app, name="jobs")
app.add_typer(worker_app, name="worker")

GROUPS = CliGroups(root=app, worker=worker_app)
for module in (
    customers,
    ledger,
    metering,
    catalog,
    grants,
    invoicing,
    payments,
    simulate,
    tooling,
    reconcile,
    console_users,
):
    module.register(GROUPS)


def main() -> None:
    app()
