"""The demo's invoicing part: close the synthetic month of the metering demo.

Every customer of the metering demo is put on a plan from the month's start (on a clock the
demo controls, so the subscriptions predate their usage): most on Starter, every tenth on Pro
(included gpt-large tokens and seats, a 200.00 minimum). A few customers get free tokens at the
start and a goodwill credit mid-month, others a 20% promotion (some both). The period-close job
then runs at the start (opening invoices for the in-advance fees) and after the month's end plus
the grace hour (a progress bar), and the demo prints a summary (invoices, billed, discounts,
credits used, amount due, revenue by ledger account, the ledger check) and one closing invoice
with usage beyond what is included, credits and a discount, explained down to its meters, tiers
and the events behind each quantity.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from tallybook.catalog import plans
from tallybook.cli.context import progress_bar, progress_factory
from tallybook.cli.invoicing import print_explanation
from tallybook.customers import service as customers
from tallybook.db import Database
from tallybook.invoicing import explain, postings
from tallybook.invoicing import service as invoicing
from tallybook.invoicing.models import Invoice, InvoiceLine
from tallybook.invoicing.tasks import close_due
from tallybook.invoicing.views import InvoiceView
from tallybook.kit.clock import TestClock
from tallybook.kit.money import Money, currency_exponent
from tallybook.kit.pagination import PageRequest
from tallybook.ledger import service as ledger
from tallybook.metering import service as metering
from tallybook.metering.aggregate import floor_hour
from tallybook.metering.models import MeteringEvent
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.domain import CreateRequest
from tallybook.subscriptions.tasks import advance_due
from tallybook.work.schedule import JobContext

PRO_EVERY: Final = 10
#: Pro: 99.00 a period, and at least 200.00 spent (fees and usage) or a true-up makes it so.
PRO_MINIMUM_MINOR: Final = 20000
#: Customers (by position in external-id order) with credit grants, and with the promotion:
#: the ranges overlap (acct-0018 … acct-0020, a Pro one among them) so some invoices show
#: usage beyond what is included, credits and a discount together.
GRANTED: Final = range(15, 21)
PROMOTED: Final = range(18, 30)
USAGE_GRANT_TOKENS: Final = 200000
GOODWILL_MINOR: Final = 2500
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
                        "large", "gpt-large tokens", meters["tokens"], "gpt-large", "0.00004"
                    ),
                    _token_price(
                        "small", "gpt-small tokens", meters["tokens"], "gpt-small", "0.000006"
                    ),
                    _token_price(
                        "embed", "Embedding tokens", meters["tokens"], "embed", "0.000001"
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
                "minimum_commitment_minor": PRO_MINIMUM_MINOR,
                "prices": [
                    {"type": "flat", "key": "base", "name": "Pro base fee", "amount_minor": 9900},
                    {
                        "type": "usage",
                        "key": "large",
                        "name": "gpt-large tokens",
                        "meter_id": meters["tokens"],
                        "model": "graduated",
                        "group_filter": {"model": "gpt-large"},
                        "included_quantity": 250000,
                        "tiers": [
                            {"up_to": 5000000, "unit_price": "0.00003"},
                            {"up_to": None, "unit_price": "0.000025"},
                        ],
                    },
                    _token_price(
                        "small", "gpt-small tokens", meters["tokens"], "gpt-small", "0.000004"
                    ),
                    _token_price(
                        "embed", "Embedding tokens", meters["tokens"], "embed", "0.0000008"
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


def _usage_grants_and_promotion(db: Database, subscribed: list[tuple[str, str]]) -> None:
    """At the month's start: free tokens for a few customers, a 20% promotion for others."""
    from tallybook.grants import promotions
    from tallybook.grants import service as grants

    with db.transaction(actor="demo") as tx:
        for customer_id, _ in (subscribed[i] for i in GRANTED if i < len(subscribed)):
            grants.issue_grant(
                tx,
                grants.GrantInput(
                    customer=customer_id,
                    kind="usage",
                    meter="tokens",
                    quantity=Decimal(USAGE_GRANT_TOKENS),
                    source="promotion",
                    reason="demo: free tokens",
                ),
            )
        promotions.create_code(
            tx,
            promotions.PromotionCodeInput(
                code="LAUNCH20", kind="percent_off", percent_off=20, duration="forever"
            ),
        )
        for customer_id, subscription_id in (
            subscribed[i] for i in PROMOTED if i < len(subscribed)
        ):
            promotions.redeem(tx, "LAUNCH20", customer=customer_id, subscription=subscription_id)


def _goodwill_credits(db: Database, subscribed: list[tuple[str, str]]) -> None:
    """Mid-month, after the opening invoices: a goodwill credit for the same customers, which
    their closing invoice uses."""
    from tallybook.grants import service as grants

    with db.transaction(actor="demo") as tx:
        for customer_id, _ in (subscribed[i] for i in GRANTED if i < len(subscribed)):
            grants.issue_grant(
                tx,
                grants.GrantInput(
                    customer=customer_id,
                    amount_minor=GOODWILL_MINOR,
                    source="goodwill",
                    reason="demo: goodwill credit",
                ),
            )


def run_invoicing_demo(db: Database, console: Console) -> None:
    month_start = _month_start(db)
    if month_start is None:
        return
    console.rule("[bold]Invoicing[/bold]: closing the synthetic month")
    clock = TestClock(month_start)
    at = db.with_clock(clock)
    starter, pro = _plans(at)
    subscribed = _subscribe(at, starter, pro)
    _usage_grants_and_promotion(at, subscribed)
    console.print(
        f"{len(subscribed)} customers subscribed from {month_start:%Y-%m-%d %H:%M} UTC on "
        f"30-day periods: every {PRO_EVERY}th on Pro (99.00 USD, 250,000 gpt-large tokens "
        f"included, {Money(PRO_MINIMUM_MINOR, 'USD').format()} minimum), the rest on Starter "
        f"(19.00 USD). {len(GRANTED)} customers get {USAGE_GRANT_TOKENS:,} free tokens and, "
        f"mid-month, a {Money(GOODWILL_MINOR, 'USD').format()} goodwill credit; "
        f"{len(PROMOTED)} redeem a 20% promotion."
    )
    clock.advance(minutes=1)
    with progress_bar() as progress:
        factory = progress_factory(progress)
        close_due(at, JobContext(owner="demo", progress=factory("opening invoices")))
        clock.set(month_start + timedelta(days=15))
        _goodwill_credits(at, subscribed)
        clock.set(month_start + timedelta(days=30, hours=1, minutes=1))
        advance_due(at, JobContext(owner="demo"))
        report = close_due(at, JobContext(owner="demo", progress=factory("closing the month")))
    _summary(at, console, report)
    _explained(at, console)


def _summary(db: Database, console: Console, report: dict[str, Any]) -> None:
    """Per kind of invoice: what was billed, discounted, credited and is due; then the revenue
    those invoices recognised, by revenue account, and the ledger check."""
    finalized = Invoice.number.is_not(None)
    with db.read() as tx:
        rows = list(
            tx.session.execute(
                select(
                    Invoice.kind,
                    Invoice.currency,
                    func.count(),
                    func.sum(Invoice.subtotal_minor),
                    func.sum(Invoice.discount_minor),
                    func.sum(Invoice.total_minor),
                    func.sum(Invoice.credits_applied_minor),
                    func.sum(Invoice.amount_due_minor),
                )
                .where(finalized)
                .group_by(Invoice.kind, Invoice.currency)
                .order_by(Invoice.currency, Invoice.kind.desc())
            )
        )
        by_account: dict[tuple[str, str], int] = {}
        for kind, currency, amount in tx.session.execute(
            select(InvoiceLine.kind, InvoiceLine.currency, func.sum(InvoiceLine.amount_minor))
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(finalized)
            .group_by(InvoiceLine.kind, InvoiceLine.currency)
        ):
            key = (postings.revenue_code(kind), currency)
            by_account[key] = by_account.get(key, 0) + int(amount or 0)
        units = Decimal(0)
        for credits in tx.session.scalars(select(Invoice.credits).where(finalized)):
            units += sum(Decimal(str(c["quantity"])) for c in credits if c.get("type") == "units")
        ledger_ok = ledger.check_invariants(tx).ok
    totals: dict[str, list[int]] = {}
    for currency in sorted({row[1] for row in rows}):
        table = Table(title=f"Invoices finalized ({currency})", box=box.SIMPLE_HEAD)
        table.add_column("kind", no_wrap=True)
        for header in ("invoices", "billed", "discounts", "net", "credits", "due"):
            table.add_column(header, justify="right", no_wrap=True)
        for kind, row_currency, count, *amounts in rows:
            if row_currency != currency:
                continue
            values = [int(count), *(int(a or 0) for a in amounts)]
            table.add_row(kind, str(count), *(_amount(v, currency) for v in values[1:]))
            sums = totals.setdefault(currency, [0] * len(values))
            totals[currency] = [a + b for a, b in zip(sums, values, strict=True)]
        values = totals[currency]
        table.add_row(
            "[bold]all[/bold]",
            f"[bold]{values[0]}[/bold]",
            *(f"[bold]{_amount(v, currency)}[/bold]" for v in values[1:]),
        )
        console.print(table)
        fees = by_account.get((postings.REVENUE_FEES, currency), 0)
        usage = by_account.get((postings.REVENUE_USAGE, currency), 0)
        console.print(
            f"Revenue posted to the ledger: fees {_amount(fees, currency)} + usage "
            f"{_amount(usage, currency)} − discounts {_amount(values[2], currency)} = "
            f"{_amount(values[3], currency)} {currency}; of it "
            f"{_amount(values[4], currency)} paid by credit grants and "
            f"{_amount(values[5], currency)} receivable."
        )
    failed = report.get("failed", 0)
    console.print(
        f"The period-close job finalized {report.get('finalized', 0)} closing invoices"
        f"{f' ({failed} failed, retried on the next run)' if failed else ''}; usage credits "
        f"burned: {units:,} tokens. Closing invoices also bill the next period's base fee in "
        "advance. Every period has exactly one closing invoice; run [bold]tallybook jobs "
        f"run-due[/bold] again and nothing changes. ledger check: "
        f"{'passed' if ledger_ok else '[red]FAILED[/red]'}."
    )


def _amount(amount_minor: int, currency: str) -> str:
    """``23,954.43``: the currency stands in its own column."""
    return f"{Decimal(amount_minor).scaleb(-currency_exponent(currency)):,}"


def _explained(db: Database, console: Console) -> None:
    """The largest closing invoice that shows usage beyond what is included, credits and a
    discount together (else the largest closing invoice)."""
    with db.read() as tx:
        candidates = list(
            tx.session.scalars(
                select(Invoice.id)
                .where(
                    Invoice.kind == "cycle",
                    Invoice.discount_minor > 0,
                    Invoice.credits_applied_minor > 0,
                )
                .order_by(Invoice.total_minor.desc())
            )
        )
        invoice_id = next(
            (i for i in candidates if _shows_overage_without_true_up(invoicing.get_invoice(tx, i))),
            None,
        ) or tx.session.scalar(
            select(Invoice.id)
            .where(Invoice.kind == "cycle")
            .order_by(Invoice.total_minor.desc())
            .limit(1)
        )
        if invoice_id is None:
            return
        explanation = explain.explain_invoice(tx, invoice_id)
        invoice = explanation.invoice
        external_id = customers.get(tx, invoice.customer_id).external_id
    console.rule(f"One invoice explained: {invoice.number} ({external_id})")
    print_explanation(console, explanation)
    console.print(
        f"Try: [bold]tallybook invoices explain {invoice.number}[/bold], "
        f"[bold]tallybook invoices render {invoice.number} --output invoice.html[/bold]"
    )


def _shows_overage_without_true_up(invoice: InvoiceView) -> bool:
    kinds = {line.kind for line in invoice.lines}
    overage = any(
        line.kind == "usage"
        and line.amount_minor > 0
        and Decimal(str(line.breakdown.get("included_applied") or 0)) > 0
        for line in invoice.lines
    )
    return (
        overage
        and "minimum_true_up" not in kinds
        and any(line.usage_credit_quantity > 0 for line in invoice.lines)
    )
