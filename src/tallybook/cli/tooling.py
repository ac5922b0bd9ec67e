"""Operations tooling: outbound webhooks (and, later, reconciliation and simulation)."""

from __future__ import annotations

import typer
from rich.table import Table

from tallybook.cli.context import console, handle_errors, open_database
from tallybook.cli.groups import CliGroups
from tallybook.kit.pagination import PageRequest
from tallybook.webhooks import delivery, service

webhooks_app = typer.Typer(help="Outbound webhooks to your systems.", no_args_is_help=True)


@webhooks_app.command("create")
def create(
    url: str,
    event_type: list[str] = typer.Option(["*"], help="Repeatable: invoice.finalized, invoice.*, *"),
    description: str | None = None,
) -> None:
    """Create an endpoint and print its signing secret (shown once)."""
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        endpoint = service.create_endpoint(
            tx, service.EndpointInput(url=url, event_types=event_type, description=description)
        )
    console.print(f"{endpoint.id}  {endpoint.url}\nsecret  {endpoint.secret}")


@webhooks_app.command("list")
def list_endpoints() -> None:
    db = open_database()
    with db.read() as tx:
        page = service.list_endpoints(tx, PageRequest(limit=100))
        table = Table("id", "url", "events", "status", "failures", "reason")
        for e in page.data:
            table.add_row(
                e.id,
                e.url,
                " ".join(e.event_types),
                e.status,
                str(e.consecutive_failures),
                e.disabled_reason or "",
            )
    console.print(table)


@webhooks_app.command("deliveries")
def deliveries(endpoint_id: str, status: str | None = None, limit: int = 30) -> None:
    """The delivery log of an endpoint, newest first."""
    db = open_database()
    with handle_errors(), db.read() as tx:
        page = service.list_deliveries(
            tx, endpoint_id, PageRequest(limit=min(limit, 100)), status=status
        )
        table = Table("delivery", "event", "type", "status", "attempts", "last", "error")
        for d in page.data:
            table.add_row(
                d.id,
                d.event_id,
                d.event_type,
                d.status,
                str(d.attempts),
                str(d.last_status_code or ""),
                d.last_error or "",
            )
    console.print(table)


@webhooks_app.command("enable")
def enable(endpoint_id: str) -> None:
    """Re-enable an endpoint; queued events are delivered in order."""
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        service.enable_endpoint(tx, endpoint_id)
    console.print(f"enabled {endpoint_id}")


@webhooks_app.command("retry")
def retry(delivery_id: str) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        service.retry_delivery(tx, delivery_id)
    console.print(f"retrying {delivery_id}")


@webhooks_app.command("send-due")
def send_due() -> None:
    """Fan out new events and send due deliveries once."""
    db = open_database()
    with db.transaction(actor="cli") as tx:
        queued = service.fan_out(tx)
    console.print({"queued": queued, **delivery.deliver_due(db)})


def register(groups: CliGroups) -> None:
    groups.root.add_typer(webhooks_app, name="webhooks")
