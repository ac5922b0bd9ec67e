"""The demo's invoicing part: close the synthetic month of the metering demo.

Every customer of the metering demo is put on a plan from the month's start (on a clock the
demo controls, so the subscriptions predate their usage): most on Starter, every tenth on Pro
(included tokens, a minimum commitment). A few customers get credit grants (money and usage)
and a promotion code. The period-close job then runs at the start (opening invoices for the
in-advance fees) and after the month's end plus the grace hour (a progress bar), and the demo
prints a summary (invoices, revenue by currency, discounts and credits used) and one invoice
explained down to its meters, tiers and the events behind each quantity.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from tallybook.catalog import plans
from tallybook.cli.context import progress_bar, progress_factory
from tallybook.cli.invoicing import print_explanation
from tallybook.customers import service as customers
from tallybook.db import Database
from tallybook.invoicing import explain
from tallybook.invoicing import service as invoicing
from tallybook.invoicing.models import Invoice
from tallybook.invoicing.tasks import close_due
from tallybook.kit.clock import TestClock
from tallybook.kit.money import Money
from tallybook.kit.pagination import PageRequest
from tallybook.metering import service as metering
from tallybook.metering.aggregate import floor_hour
from tallybook.metering.models import MeteringEvent
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.domain import CreateRequest
from tallybook.subscriptions.tasks import advance_due
from tallybook.work.schedule import JobContext

PRO_EVERY: Final = 10
GRANTED: Final = 6
PROMOTED: Final = 12
#: The metering demo writes a storage snapshot at 23:55 of each day of its month.
SNAPSHOT_OFFSET: Final = timedelta(hours=23, minutes=55)


def _month_start(db: Database) -> datetime | None:
    with db.read() as tx:
        first = tx.session.scalar(
            select(func.min(MeteringEvent.time)).where(MeteringEvent.type == "storage.snapshot")
        )
    return floor_hour(first - SNAPSHOT_OFFSET) if first is not None else None


def _token_price(key: str, name: str, meter_id: str, model: str, unit_price: str) -> dict[str, Any]:
    return {
        "type": "usage",
        "key": key,
        "name": name,
        "meter_id": meter_id,
        "model": "per_unit",
        "unit_price": unit_price,
        "group_filter": {"model": model},
    }


def _plans(db: Database) -> tuple[str, str]:
    with db.transaction(actor="demo") as tx:
        meters = {
            key: metering.get_meter_by_key(tx, key).id
            for key in ("tokens", "active_seats", "storage_gb")
        }
        common = {"currency": "USD", "interval": "day", "interval_count": 30}
        starter_plan = plans.create_plan(tx, plans.PlanInput(key="starter", name="Starter"))
        starter = plans.create_version(
            tx,
            starter_plan.id,
            {
                **common,
                "prices": [
                    {
                        "type": "flat",
                        "key": "base",
                        "name": "Starter base fee",
                        "amount_minor": 1900,
                    },
                    _token_price(
                        "large", "gpt-large tokens", meters["tokens"], "gpt-large", "0.00001"
                    ),
                    _token_price(
                        "small", "gpt-small tokens", meters["tokens"], "gpt-small", "0.000002"
                    ),
                    _token_price(
                        "embed", "Embedding tokens", meters["tokens"], "embed", "0.0000004"
                    ),
                    {
                        "type": "usage",
                        "key": "storage",
                        "name": "Storage",
                        "meter_id": meters["storage_gb"],
                        "model": "graduated",
                        "tiers": [
                            {"up_to": 10, "unit_price": "0"},
                            {"up_to": None, "unit_price": "0.10"},
                        ],
                    },
                ],
            },
        )
        plans.publish(tx, starter.id)
        pro_plan = plans.create_plan(tx, plans.PlanInput(key="pro", name="Pro"))
        pro = plans.create_version(
            tx,
            pro_plan.id,
            {
                **common,
                "minimum_commitment_minor": 50000,
                "prices": [
                    {"type": "flat", "key": "base", "name": "Pro base fee", "amount_minor": 9900},
                    {
                        "type": "usage",
                        "key": "large",
                        "name": "gpt-large tokens",
                        "meter_id": meters["tokens"],
                        "model": "graduated",
                        "group_filter": {"model": "gpt-large"},
                        "included_quantity": 1000000,
                        "tiers": [
                            {"up_to": 10000000, "unit_price": "0.000008"},
                            {"up_to": None, "unit_price": "0.000006"},
                        ],
                    },
                    _token_price(
                        "small", "gpt-small tokens", meters["tokens"], "gpt-small", "0.0000015"
                    ),
                    _token_price(
                        "embed", "Embedding tokens", meters["tokens"], "embed", "0.0000003"
                    ),
                    {
                        "type": "usage",
                        "key": "seats",
                        "name": "Active seats",
                        "meter_id": meters["active_seats"],
                        "model": "per_unit",
                        "unit_price": "2.00",
                        "included_quantity": 5,
                    },
                ],
            },
        )
        plans.publish(tx, pro.id)
    return starter.id, pro.id


def _subscribe(db: Database, starter: str, pro: str) -> list[tuple[str, str]]:
    subscribed = []
    with db.read() as tx:
        everyone: list[tuple[str, str]] = []
        page = customers.list_page(tx, PageRequest(limit=100))
        everyone += [(c.external_id, c.id) for c in page.data]
        while page.has_more:
            page = customers.list_page(tx, PageRequest(limit=100, starting_after=page.data[-1].id))
            everyone += [(c.external_id, c.id) for c in page.data]
    accounts = sorted(c for c in everyone if c[0].startswith("acct-"))
    for offset in range(0, len(accounts), 100):
        with db.transaction(actor="demo") as tx:
            for index, (_, customer_id) in enumerate(accounts[offset : offset + 100], start=offset):
                version = pro if index % PRO_EVERY == 0 else starter
                result = subscriptions.create(
                    tx, CreateRequest(customer=customer_id, plan_version_id=version)
                )
                subscribed.append((customer_id, result.subscription.id))
    return subscribed


def _grants_and_promotions(db: Database, subscribed: list[tuple[str, str]]) -> int:
    """A few credit grants and a promotion code, when the grants package is there."""
    try:
        from tallybook.grants import promotions
        from tallybook.grants import service as grants
    except ImportError:
        return 0
    count = 0
    with db.transaction(actor="demo") as tx:
        for customer_id, _ in subscribed[1 : 1 + GRANTED]:
            grants.issue_grant(
                tx,
                grants.GrantInput(
                    customer=customer_id,
                    amount_minor=2500,
                    source="goodwill",
                    reason="demo: onboarding credit",
                ),
            )
            grants.issue_grant(
                tx,
                grants.GrantInput(
                    customer=customer_id,
                    kind="usage",
                    meter="tokens",
                    quantity=Decimal(200000),
                    source="promotion",
                    reason="demo: free tokens",
                ),
            )
            count += 2
        promotions.create_code(
            tx,
            promotions.PromotionCodeInput(
                code="LAUNCH20", kind="percent_off", percent_off=20, duration="forever"
            ),
        )
        for customer_id, subscription_id in subscribed[GRANTED + 1 : GRANTED + 1 + PROMOTED]:
            promotions.redeem(tx, "LAUNCH20", customer=customer_id, subscription=subscription_id)
    return count


def run_invoicing_demo(db: Database, console: Console) -> None:
    month_start = _month_start(db)
    if month_start is None:
        return
    console.rule("[bold]Invoicing[/bold]: closing the synthetic month")
    clock = TestClock(month_start)
    at = db.with_clock(clock)
    starter, pro = _plans(at)
    subscribed = _subscribe(at, starter, pro)
    grants_issued = _grants_and_promotions(at, subscribed)
    console.print(
        f"{len(subscribed)} customers subscribed from {month_start:%Y-%m-%d %H:%M} UTC "
        f"(every {PRO_EVERY}th on Pro, the rest on Starter; 30-day periods), "
        f"{grants_issued} credit grants, a 20% promotion on {PROMOTED} subscriptions."
    )
    clock.advance(minutes=1)
    with progress_bar() as progress:
        factory = progress_factory(progress)
        close_due(at, JobContext(owner="demo", progress=factory("opening invoices")))
        clock.set(month_start + timedelta(days=30, hours=1, minutes=1))
        advance_due(at, JobContext(owner="demo"))
        report = close_due(at, JobContext(owner="demo", progress=factory("closing the month")))
    _summary(at, console, report)
    _explained(at, console)


def _summary(db: Database, console: Console, report: dict[str, Any]) -> None:
    with db.read() as tx:
        rows = list(
            tx.session.execute(
                select(
                    Invoice.kind,
                    Invoice.currency,
                    func.count(),
                    func.sum(Invoice.subtotal_minor),
                    func.sum(Invoice.discount_minor),
                    func.sum(Invoice.credits_applied_minor),
                    func.sum(Invoice.amount_due_minor),
                ).group_by(Invoice.kind, Invoice.currency)
            )
        )
        units = Decimal(0)
        for credits in tx.session.scalars(select(Invoice.credits)):
            units += sum(Decimal(str(c["quantity"])) for c in credits if c.get("type") == "units")
    table = Table(
        "invoices",
        "kind",
        "revenue (subtotal)",
        "discounts",
        "credits used",
        "amount due",
        title="Invoices",
    )
    for kind, currency, count, subtotal, discount, credits, due in rows:
        table.add_row(
            str(count),
            kind,
            Money(int(subtotal or 0), currency).format(),
            Money(int(discount or 0), currency).format(),
            Money(int(credits or 0), currency).format(),
            Money(int(due or 0), currency).format(),
        )
    console.print(table)
    console.print(
        f"period-close job: {report}; usage credits burned: {units:,} tokens. "
        "Every period has exactly one closing invoice; run [bold]tallybook jobs run-due[/bold] "
        "again and nothing changes."
    )


def _explained(db: Database, console: Console) -> None:
    with db.read() as tx:
        invoice_id = tx.session.scalar(
            select(Invoice.id)
            .where(Invoice.kind == "cycle", Invoice.discount_minor > 0)
            .order_by(Invoice.total_minor.desc())
            .limit(1)
        ) or tx.session.scalar(
            select(Invoice.id)
            .where(Invoice.kind == "cycle")
            .order_by(Invoice.total_minor.desc())
            .limit(1)
        )
        if invoice_id is None:
            return
        explanation = explain.explain_invoice(tx, invoice_id)
        number = invoicing.get_invoice(tx, invoice_id).number
    console.rule(f"One invoice explained: {number}")
    print_explanation(console, explanation)
    console.print(
        f"Try: [bold]tallybook invoices explain {number}[/bold], "
        f"[bold]tallybook invoices render {number} --output invoice.html[/bold]"
    )
