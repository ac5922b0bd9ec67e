from __future__ import annotations

import typer
from rich.table import Table

from tallybook.cli.context import console, handle_errors, open_database
from tallybook.cli.groups import CliGroups
from tallybook.customers import service
from tallybook.customers.service import CustomerInput
from tallybook.kit.pagination import PageRequest

app = typer.Typer(help="Customers.", no_args_is_help=True)


@app.command("create")
def create(
    external_id: str = typer.Option(..., help="Your id for the customer"),
    name: str | None = typer.Option(None),
    email: str | None = typer.Option(None),
    currency: str | None = typer.Option(None, help="ISO 4217 billing currency"),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        customer = service.create(
            tx, CustomerInput(external_id=external_id, name=name, email=email, currency=currency)
        )
    console.print(f"{customer.id}  {customer.external_id}")


@app.command("list")
def list_customers(limit: int = 20) -> None:
    db = open_database()
    with db.read() as tx:
        page = service.list_page(tx, PageRequest(limit=min(limit, 100)))
        table = Table("id", "external id", "name", "email", "currency")
        for c in page.data:
            table.add_row(c.id, c.external_id, c.name or "", c.email or "", c.currency or "")
    console.print(table)


@app.command("find")
def find(text: str) -> None:
    """Search by id, external id, name or email."""
    db = open_database()
    with db.read() as tx:
        rows = service.search(tx, text)
        table = Table("id", "external id", "name", "email")
        for c in rows:
            table.add_row(c.id, c.external_id, c.name or "", c.email or "")
    console.print(table)


def register(groups: CliGroups) -> None:
    groups.root.add_typer(app, name="customers")
