"""``tallybook payments …`` (collections, payments, refunds, accounts, the clearing check) and
``tallybook webhooks-in …`` (the inbox of Stripe events: list, show, replay, process)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.table import Table

from tallybook.cli.context import console, err_console, handle_errors, open_database
from tallybook.cli.groups import CliGroups
from tallybook.kit.clock import isoformat_z
from tallybook.kit.money import Money, normalize_currency
from tallybook.kit.pagination import PageRequest
from tallybook.payments import service
from tallybook.payments.context import context_from_env
from tallybook.payments.inbox import processor
from tallybook.payments.service import queries

app = typer.Typer(
    help="Payments: collections, retries, bank transfers, refunds.", no_args_is_help=True
)
inbox_app = typer.Typer(help="Inbound Stripe events (the webhook inbox).", no_args_is_help=True)


def _time(value: datetime | None) -> str:
    return isoformat_z(value) if value is not None else ""


def _money(amount_minor: int, currency: str) -> str:
    return Money(amount_minor, currency).format()


@app.command("list")
def list_collections(
    status: str | None = typer.Option(None, help="retrying, exhausted, awaiting_payment, paid…"),
    customer: str | None = typer.Option(None, help="A customer id"),
    limit: int = typer.Option(50, max=100),
) -> None:
    """Collections (one per invoice), newest first."""
    db = open_database()
    with db.read() as tx:
        page = queries.list_collections(
            tx, PageRequest(limit=limit), customer_id=customer, status=status
        )
        table = Table(
            "collection", "invoice", "customer", "status", "due", "paid", "attempts", "next attempt"
        )
        for c in page.data:
            table.add_row(
                c.id,
                c.invoice_number or c.invoice_id,
                c.customer_id,
                c.status,
                _money(c.amount_due_minor, c.currency),
                _money(c.amount_paid_minor, c.currency),
                str(c.attempt_count),
                _time(c.next_attempt_at),
            )
    console.print(table)


@app.command("show")
def show(collection: str = typer.Argument(..., help="A collection id or an invoice id")) -> None:
    """A collection with each attempt and payment."""
    db = open_database()
    with handle_errors(), db.read() as tx:
        found = service.get_collection(tx, collection)
        console.print(
            f"[bold]{found.id}[/bold]  invoice {found.invoice_number or found.invoice_id}  "
            f"{found.status}  {_money(found.amount_paid_minor, found.currency)} of "
            f"{_money(found.amount_due_minor, found.currency)} paid  provider {found.provider}"
        )
        if found.next_attempt_at:
            console.print(f"next attempt {_time(found.next_attempt_at)}")
        table = Table("payment", "attempt", "trigger", "status", "amount", "failure", "provider id")
        for p in queries.payments_of(tx, found):
            table.add_row(
                p.id,
                str(p.attempt_number or ""),
                p.trigger,
                p.status,
                _money(p.amount_minor, p.currency),
                " ".join(filter(None, [p.failure_code, p.decline_code])),
                p.provider_payment_id or "",
            )
    console.print(table)


@app.command("retry")
def retry(collection: str = typer.Argument(..., help="A collection id or an invoice id")) -> None:
    """Retry now (the attempt runs within seconds, through the worker's outbox)."""
    db = open_database()
    ctx = context_from_env()
    with handle_errors(), db.transaction(actor="cli") as tx:
        payment = service.retry_collection(tx, collection, ctx)
    console.print(f"{payment.id}  attempt {payment.attempt_number}  {payment.status}")


@app.command("mark-paid")
def mark_paid(
    collection: str = typer.Argument(..., help="A collection id or an invoice id"),
    amount_minor: int | None = typer.Option(None, help="Default: all that is still owed"),
    reference: str | None = typer.Option(None, help="The bank transfer's reference"),
    paid_at: datetime | None = typer.Option(None, help="When the money arrived (UTC)"),
) -> None:
    """Record a bank transfer (finance)."""
    db = open_database()
    ctx = context_from_env()
    when = paid_at.replace(tzinfo=paid_at.tzinfo or UTC) if paid_at else None
    with handle_errors(), db.transaction(actor="cli") as tx:
        payment = service.mark_paid(
            tx, collection, ctx, amount_minor=amount_minor, reference=reference, paid_at=when
        )
    console.print(
        f"{payment.id}  {payment.status}  {_money(payment.amount_minor, payment.currency)}"
    )


@app.command("mark-uncollectible")
def mark_uncollectible(
    collection: str = typer.Argument(..., help="A collection id or an invoice id"),
    reason: str | None = typer.Option(None),
) -> None:
    """Stop collecting and write the invoice off."""
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        found = service.mark_uncollectible(tx, collection, reason=reason)
    console.print(f"{found.id}  {found.status}")


@app.command("refund")
def refund(
    payment: str = typer.Argument(..., help="A payment id (pay_…)"),
    amount_minor: int | None = typer.Option(None, help="Default: all that is refundable"),
    reason: str | None = typer.Option(None),
) -> None:
    """Refund a payment (issue a credit note first so it comes out of the customer balance)."""
    db = open_database()
    ctx = context_from_env()
    with handle_errors(), db.transaction(actor="cli") as tx:
        created = service.request_refund(
            tx, payment, amount_minor=amount_minor, reason=reason, ctx=ctx
        )
    console.print(
        f"{created.id}  {created.status}  {_money(created.amount_minor, created.currency)}"
    )


@app.command("link")
def link(
    customer: str = typer.Argument(..., help="A customer id"),
    provider: str = typer.Option(..., help="stripe or manual"),
    stripe_customer: str | None = typer.Option(None, help="An existing Stripe customer (cus_…)"),
) -> None:
    """Choose how a customer pays."""
    db = open_database()
    ctx = context_from_env()
    with handle_errors(), db.transaction(actor="cli") as tx:
        account = service.link_account(
            tx,
            customer,
            provider=provider,
            provider_customer_id=stripe_customer,
            providers=ctx.providers,
        )
    console.print(f"{account.id}  {account.provider}  {account.provider_customer_id or ''}")


@app.command("clearing")
def clearing(
    currency: str = typer.Option(..., help="ISO 4217"),
    provider: str = typer.Option("stripe"),
) -> None:
    """What the clearing account says the provider still holds for us (zero once paid out).
    Exits 1 when it is not zero."""
    db = open_database()
    with handle_errors(), db.read() as tx:
        balance = service.clearing_balance(tx, normalize_currency(currency), provider=provider)
    console.print(
        f"{balance.code} {balance.currency}: posted {balance.posted}, held by disputes "
        f"{balance.held_by_disputes}, outstanding {balance.outstanding}"
    )
    if not balance.outstanding.is_zero():
        raise typer.Exit(1)


@inbox_app.command("list")
def inbox_list(
    status: str | None = typer.Option(None, help="pending, processed, ignored or parked"),
    type: str | None = typer.Option(None, "--type", help="e.g. payment_intent.succeeded"),
    limit: int = typer.Option(50, max=100),
) -> None:
    """Received events, newest first."""
    db = open_database()
    with db.read() as tx:
        counts = queries.inbox_counts(tx)
        page = queries.list_events(tx, PageRequest(limit=limit), status=status, type_=type)
        table = Table("event", "type", "status", "attempts", "received", "outcome / error")
        for e in page.data:
            table.add_row(
                e.event_id,
                e.type,
                e.status,
                str(e.attempts),
                _time(e.received_at),
                (e.last_error if e.status in ("pending", "parked") and e.last_error else e.outcome)
                or "",
            )
    console.print(" ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "the inbox is empty")
    console.print(table)


@inbox_app.command("parked")
def inbox_parked(limit: int = typer.Option(50, max=100)) -> None:
    """Events parked after repeated failures (they wait for ``replay``)."""
    inbox_list(status="parked", type=None, limit=limit)


@inbox_app.command("show")
def inbox_show(event: str) -> None:
    """One event: status, outcome or error, and the payload as received."""
    db = open_database()
    with handle_errors(), db.read() as tx:
        found = queries.get_event(tx, event)
        console.print(
            f"[bold]{found.event_id}[/bold] {found.type} {found.status} attempts {found.attempts}"
        )
        if found.outcome:
            console.print(f"outcome: {found.outcome}")
        if found.last_error:
            console.print(f"last error: {found.last_error}")
        console.print_json(json.dumps(found.payload))


@inbox_app.command("replay")
def inbox_replay(
    event: str | None = typer.Argument(None, help="An event id (evt_…)"),
    parked: bool = typer.Option(False, "--parked", help="Replay every parked event"),
) -> None:
    """Process parked (or ignored) events again, now."""
    if (event is None) == (not parked):
        err_console.print("give an event id or --parked")
        raise typer.Exit(2)
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        if parked:
            count = processor.replay_parked(tx)
            console.print(f"{count} parked event(s) queued again")
        else:
            assert event is not None
            processor.replay(tx, event)
            console.print(f"{event} queued again")


@inbox_app.command("process")
def inbox_process() -> None:
    """Process what is due now (what the worker's ``payments.process_webhooks`` job does)."""
    db = open_database()
    outcome = processor.process_due(db, context_from_env())
    console.print(" ".join(f"{k}: {v}" for k, v in sorted(outcome.items())) or "nothing due")


def register(groups: CliGroups) -> None:
    groups.root.add_typer(app, name="payments")
    groups.root.add_typer(inbox_app, name="webhooks-in")
