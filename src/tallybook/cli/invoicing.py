"""``tallybook invoices …``: list, show, explain, preview, finalize, void, credit-note, render."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tallybook.cli.context import console, handle_errors, open_database
from tallybook.cli.groups import CliGroups
from tallybook.customers import service as customers
from tallybook.invoicing import documents, explain, service
from tallybook.invoicing.explain import InvoiceExplanation
from tallybook.invoicing.views import InvoiceView
from tallybook.kit.errors import NotFound
from tallybook.kit.money import Money
from tallybook.kit.pagination import PageRequest
from tallybook.kit.quantity import quantity_text

app = typer.Typer(
    help="Invoices: list, explain, preview, finalize, void, credit notes.", no_args_is_help=True
)


def _money(amount_minor: int, currency: str) -> str:
    return Money(amount_minor, currency).format()


def print_invoice(out: Console, invoice: InvoiceView) -> None:
    title = f"Invoice {invoice.number or '(draft)'}  {invoice.status}  {invoice.kind}"
    table = Table("#", "kind", "description", "quantity", "amount", title=title)
    for line in invoice.lines:
        table.add_row(
            str(line.position + 1),
            line.kind,
            line.description,
            quantity_text(line.quantity) if line.quantity is not None else "",
            _money(line.amount_minor, line.currency),
        )
    out.print(table)
    cur = invoice.currency
    rows = [("subtotal", invoice.subtotal_minor), ("discount", -invoice.discount_minor)]
    rows += [("total", invoice.total_minor), ("credits applied", -invoice.credits_applied_minor)]
    if invoice.balance_carried_minor:
        rows.append(("carried to balance", invoice.balance_carried_minor))
    rows += [
        ("amount due", invoice.amount_due_minor),
        ("remaining", invoice.amount_remaining_minor),
    ]
    out.print("  ".join(f"{name}: [bold]{_money(value, cur)}[/bold]" for name, value in rows))


def print_explanation(out: Console, explanation: InvoiceExplanation) -> None:
    invoice = explanation.invoice
    print_invoice(out, invoice)
    for item in explanation.lines:
        line = item.line
        out.print(
            f"[bold]{line.position + 1}. {line.description}[/bold] = {_money(line.amount_minor, line.currency)}"
        )
        start, end = item.window
        out.print(f"   window {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC")
        if item.meter is not None:
            meter = item.meter
            out.print(
                f"   meter {meter['key']} v{meter['version']} ({meter['aggregation']} of {meter['event_type']})"
            )
            details = []
            if item.quantity is not None:
                details.append(f"measured {quantity_text(item.quantity)}")
            if item.included_applied is not None:
                details.append(f"included {quantity_text(item.included_applied)}")
            if item.billable_quantity is not None:
                details.append(f"billable {quantity_text(item.billable_quantity)}")
            if details:
                out.print("   " + ", ".join(details))
        pricing = item.pricing
        for tier in pricing.get("tiers", []) or []:
            fee = (
                f" + {_money(int(tier['flat_fee_minor']), line.currency)}"
                if tier.get("flat_fee_minor")
                else ""
            )
            out.print(
                f"   tier {int(tier['tier']) + 1} ({tier['from']} → {tier['up_to'] or '∞'}): "
                f"{tier['quantity']} × {tier['unit_price']}{fee} = {tier['amount']}"
            )
        if "unit_price" in pricing:
            out.print(f"   unit price {pricing['unit_price']}")
        if "exact_amount" in pricing:
            out.print(f"   exact {pricing['exact_amount']}, rounded {pricing.get('rounding', '')}")
        for credit in item.usage_credits:
            out.print(
                f"   usage credits: {credit['quantity']} units from grant {credit['grant_id']}"
            )
        if item.previously_billed:
            billed = item.previously_billed
            out.print(
                f"   billed earlier: {_money(int(billed['amount_minor']), line.currency)} "
                f"on {', '.join(billed.get('invoice_ids', []))}"
            )
        if item.adjusts:
            out.print(
                f"   adjusts {item.adjusts['kind']} of period {item.adjusts['period_id']} for {len(item.adjusts['late_event_seqs'])} late events"
            )
        if item.events_url:
            out.print(
                f"   events: GET {item.events_url}  (tallybook invoices events {invoice.id} {line.id})"
            )


@app.command("list")
def list_invoices(
    customer: str | None = typer.Option(None, help="Customer id or external id"),
    subscription: str | None = typer.Option(None),
    status: str | None = typer.Option(None),
    limit: int = 20,
) -> None:
    db = open_database()
    with handle_errors(), db.read() as tx:
        customer_id = None
        if customer is not None:
            try:
                customer_id = customers.resolve(tx, customer).id
            except NotFound:
                raise NotFound("customer", customer, param="customer") from None
        page = service.list_invoices(
            tx,
            PageRequest(limit=min(limit, 100)),
            customer_id=customer_id,
            subscription_id=subscription,
            status=status,
        )
        table = Table("id", "number", "status", "kind", "period", "total", "due")
        for invoice in page.data:
            table.add_row(
                invoice.id or "",
                invoice.number or "",
                invoice.status,
                invoice.kind,
                f"{invoice.period_start:%Y-%m-%d} → {invoice.period_end:%Y-%m-%d}",
                _money(invoice.total_minor, invoice.currency),
                _money(invoice.amount_due_minor, invoice.currency),
            )
    console.print(table)


@app.command("show")
def show(invoice: str = typer.Argument(..., help="Invoice id or number")) -> None:
    db = open_database()
    with handle_errors(), db.read() as tx:
        print_invoice(console, service.get_invoice(tx, invoice))


@app.command("explain")
def explain_command(invoice: str = typer.Argument(..., help="Invoice id or number")) -> None:
    """Each line down to its meter, tiers, credits and the events behind it."""
    db = open_database()
    with handle_errors(), db.read() as tx:
        print_explanation(console, explain.explain_invoice(tx, invoice))


@app.command("events")
def events(invoice: str, line: str, after: str | None = None, limit: int = 20) -> None:
    """The events that make up a usage line's quantity."""
    db = open_database()
    with handle_errors(), db.read() as tx:
        page = explain.line_events(tx, invoice, line, after=after, limit=limit)
        table = Table("time", "source", "id", "value", "dims", "late")
        for event in page.data:
            table.add_row(
                f"{event.time:%Y-%m-%d %H:%M:%S}",
                event.source,
                event.event_id,
                quantity_text(event.value) if event.value is not None else event.value_key or "",
                ", ".join(f"{k}={v}" for k, v in event.dims.items()),
                "yes" if event.late else "",
            )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --after {page.next_cursor}")


@app.command("preview")
def preview(subscription: str) -> None:
    """The upcoming invoice of a subscription, exactly as finalizing now would produce it."""
    db = open_database()
    with handle_errors(), db.read() as tx:
        print_invoice(console, service.preview(tx, subscription))


@app.command("finalize")
def finalize(
    target: str = typer.Argument(..., help="A draft invoice id, or a subscription id (sub_…)"),
    period: str | None = typer.Option(None, help="With a subscription: the ended period"),
) -> None:
    """Finalize a draft, or a subscription's ended period, now (without waiting for grace)."""
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        if target.startswith("sub_"):
            invoice = service.finalize_period(tx, target, period)
        else:
            invoice = service.finalize_invoice(tx, target)
    print_invoice(console, invoice)


@app.command("void")
def void(invoice: str, reason: str | None = typer.Option(None)) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        print_invoice(console, service.void(tx, invoice, reason=reason))


@app.command("mark-uncollectible")
def mark_uncollectible(invoice: str, reason: str | None = typer.Option(None)) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        print_invoice(console, service.mark_uncollectible(tx, invoice, reason=reason))


@app.command("credit-note")
def credit_note(
    invoice: str,
    line: list[str] = typer.Option(
        [], help="LINE_ID=AMOUNT_MINOR (repeatable); none: the whole invoice"
    ),
    reason: str = typer.Option("billing_error"),
    memo: str | None = typer.Option(None),
) -> None:
    """Credit a finalized invoice, in full or per line."""
    lines = None
    if line:
        lines = []
        for item in line:
            line_id, _, amount = item.partition("=")
            lines.append(service.CreditLine(line_id, int(amount)))
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        note = service.create_credit_note(tx, invoice, lines=lines, reason=reason, memo=memo)
    console.print(
        f"{note.id}  {note.number}  {_money(note.amount_minor, note.currency)} "
        f"({_money(note.receivable_minor, note.currency)} off what is owed, "
        f"{_money(note.balance_minor, note.currency)} to the customer's balance)"
    )


@app.command("render")
def render(
    invoice: str,
    output: Path = typer.Option(Path("-"), help="File to write, or - for stdout"),
) -> None:
    """The invoice as a self-contained HTML page."""
    db = open_database()
    with handle_errors(), db.read() as tx:
        html = documents.render_invoice_html(tx, invoice)
    if str(output) == "-":
        console.out(html, end="")
    else:
        output.write_text(html)
        console.print(f"wrote {output}")


def register(groups: CliGroups) -> None:
    groups.root.add_typer(app, name="invoices")
