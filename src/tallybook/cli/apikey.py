from __future__ import annotations

import typer
from rich.table import Table

from tallybook.auth import service
from tallybook.auth.scopes import ALL_SCOPES
from tallybook.cli.context import console, handle_errors, open_database

app = typer.Typer(help="API keys.", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Option(..., help="What the key is for"),
    scope: list[str] = typer.Option(["admin"], help=f"Repeatable. One of: {', '.join(ALL_SCOPES)}"),
) -> None:
    """Create an API key. The secret is printed once and never stored."""
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        key, secret = service.create_api_key(tx, name=name, scopes=scope)
    console.print(f"id      {key.id}\nscopes  {' '.join(key.scopes)}\nsecret  {secret}")
    console.print("[yellow]Store the secret now: it cannot be shown again.[/yellow]")


@app.command("list")
def list_keys() -> None:
    db = open_database()
    with db.read() as tx:
        keys = service.list_api_keys(tx)
    table = Table("id", "name", "prefix", "scopes", "created", "revoked")
    for key in keys:
        table.add_row(
            key.id,
            key.name,
            key.secret_prefix + "…",
            " ".join(key.scopes),
            key.created_at.strftime("%Y-%m-%d %H:%M"),
            key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else "",
        )
    console.print(table)


@app.command("revoke")
def revoke(key_id: str) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        service.revoke_api_key(tx, key_id)
    console.print(f"revoked {key_id}")
