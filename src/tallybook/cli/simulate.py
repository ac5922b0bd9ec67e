"""``tallybook simulate``: what a plan version (usually a draft) would have billed the chosen
customers over their last closed periods. Reads only."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from tallybook.cli.context import console, fail, handle_errors, open_database
from tallybook.cli.groups import CliGroups
from tallybook.kit.errors import InvalidRequest
from tallybook.kit.money import Money
from tallybook.simulation import service
from tallybook.simulation.domain import CustomerResult, SimulationReport
from tallybook.simulation.errors import SimulationCode
from tallybook.simulation.schemas import SimulationOut

#: Width of the text bar chart of per-customer deltas.
BAR_WIDTH_MAX = 30
#: Customers shown in each of the winners and losers tables.
SHOWN_MAX = 20


def _money(amount_minor: int, currency: str) -> str:
    return Money(amount_minor, currency).format()


def _signed(amount_minor: int, currency: str) -> str:
    text = _money(abs(amount_minor), currency)
    return f"+{text}" if amount_minor > 0 else f"-{text}" if amount_minor < 0 else text


def _label(customer: CustomerResult) -> str:
    return customer.name or customer.external_id


def _bar(delta: int, biggest: int) -> str:
    if biggest == 0 or delta == 0:
        return ""
    width = max(1, abs(delta) * BAR_WIDTH_MAX // biggest)
    return f"[green]{'█' * width}[/green]" if delta < 0 else f"[red]{'█' * width}[/red]"


def _customers_table(title: str, rows: list[CustomerResult], currency: str) -> Table:
    biggest = max((abs(c.delta_minor) for c in rows), default=0)
    table = Table("customer", "current", "proposed", "change", "%", "", title=title)
    for customer in rows[:SHOWN_MAX]:
        pct = customer.delta_percent
        table.add_row(
            f"{_label(customer)} ({customer.customer_id})",
            _money(customer.current_minor, currency),
            _money(customer.proposed_minor, currency),
            _signed(customer.delta_minor, currency),
            "" if pct is None else f"{pct:+}%",
            _bar(customer.delta_minor, biggest),
        )
    if len(rows) > SHOWN_MAX:
        table.caption = f"{len(rows) - SHOWN_MAX} more not shown (use --json)"
    return table


def print_report(report: SimulationReport) -> None:
    cur = report.currency
    console.print(
        f"[bold]Simulation of {report.plan_name} v{report.version}[/bold] "
        f"({report.version_status}, {report.plan_version_id}) over the last "
        f"{report.periods_max} closed period(s) of {len(report.customers)} customer(s); "
        "nothing was written."
    )
    prices = Table("price", "match", "current", "proposed", "change", title="By price")
    for row in report.prices:
        prices.add_row(
            row.key,
            str(row.match),
            _money(row.current_minor, cur),
            _money(row.proposed_minor, cur),
            _signed(row.delta_minor, cur),
        )
    console.print(prices)
    if report.losers:
        console.print(_customers_table("Would pay more (losers)", report.losers, cur))
    if report.winners:
        console.print(_customers_table("Would pay less (winners)", report.winners, cur))
    for item in report.skipped:
        console.print(f"[yellow]skipped[/yellow] {item.customer_id}: {item.code} ({item.reason})")
    pct = report.delta_percent
    console.print(
        f"invoiced: {_money(report.invoiced_minor, cur)}  current: "
        f"[bold]{_money(report.current_minor, cur)}[/bold]  proposed: "
        f"[bold]{_money(report.proposed_minor, cur)}[/bold]  change: "
        f"[bold]{_signed(report.delta_minor, cur)}[/bold]"
        + ("" if pct is None else f" ({pct:+}%)")
        + f"  · {len(report.losers)} pay more, {len(report.winners)} pay less, "
        f"{report.unchanged_count} unchanged"
    )


def simulate(
    plan_version: str = typer.Option(..., "--plan-version", help="The version to simulate: pv_…"),
    customers: list[str] = typer.Option(
        [], "--customers", "--customer", help="Customer id or external id (repeatable)"
    ),
    all_customers: bool = typer.Option(
        False, "--all", help="Every customer on any version of the same plan"
    ),
    periods: int = typer.Option(1, "--periods", help="Last closed periods to re-rate"),
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON report"),
) -> None:
    """Re-rate the last N closed periods of the chosen customers under a plan version and
    show the revenue change per customer and in total. Nothing is written."""
    names = tuple(name for value in customers for name in value.split(",") if name.strip())
    if not names and not all_customers:
        fail(
            InvalidRequest(
                SimulationCode.CUSTOMERS_INVALID,
                "pass --customers ID[,ID…] or --all",
                param="customers",
            )
        )
    request = service.SimulationRequest(
        plan_version_id=plan_version,
        customer_ids=tuple(n.strip() for n in names),
        all_customers=all_customers,
        periods=periods,
    )
    db = open_database()
    with handle_errors(), db.read(actor="cli") as tx:
        report = service.simulate(tx, request)
    if as_json:
        document = SimulationOut.of(report).model_dump(mode="json")
        console.out(json.dumps(document, indent=2, sort_keys=True))
        return
    print_report(report)


def register(groups: CliGroups) -> None:
    groups.root.command("simulate")(simulate)
