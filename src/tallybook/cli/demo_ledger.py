"""The ledger's part of ``tallybook demo``: prepaid and promotional credit wallets funded from
system accounts, spending, holds (one posted in part, one voided, one expired), a refused
overspend that stays refused on retry, a partial reversal, then balances and the invariant check.
"""

from __future__ import annotations

import time

from rich.console import Console

from tallybook.cli.ledger import print_balances, print_report
from tallybook.customers import service as customers
from tallybook.db import Database, Tx
from tallybook.kit.ids import new_id
from tallybook.kit.money import Money
from tallybook.ledger import chart
from tallybook.ledger import service as ledger
from tallybook.ledger.values import (
    Account,
    AccountSpec,
    LedgerOp,
    Leg,
    PostPending,
    ReverseTransfer,
    TransferRequest,
    TransferResult,
    VoidPending,
)

CURRENCY = "USD"


def _usd(amount_minor: int) -> Money:
    return Money(amount_minor, CURRENCY)


def _move(
    transfer_id: str,
    source: Account,
    target: Account,
    amount_minor: int,
    reason: str,
    *,
    pending: bool = False,
    timeout_seconds: int | None = None,
) -> TransferRequest:
    return TransferRequest(
        id=transfer_id,
        legs=[Leg.debit(source.id, _usd(amount_minor)), Leg.credit(target.id, _usd(amount_minor))],
        reason_code=reason,
        pending=pending,
        timeout_seconds=timeout_seconds,
    )


def _say(console: Console, result: TransferResult, what: str) -> None:
    if result.ok:
        console.print(f"  [green]✓[/green] {what} [dim]({result.id}: {result.status})[/dim]")
    else:
        replay = ", replayed" if result.replayed else ""
        console.print(
            f"  [red]✗[/red] {what}: [bold]{result.code}[/bold]{replay} — {result.message}"
        )


def _open_accounts(tx: Tx) -> dict[str, Account]:
    accounts = {
        "clearing": ledger.open_account(tx, chart.spec(chart.STRIPE_CLEARING, CURRENCY)),
        "promotions": ledger.open_account(tx, chart.spec(chart.PROMOTION_EXPENSE, CURRENCY)),
        # Every spend credits revenue: a hot account, its balance spread over several rows.
        "revenue": ledger.open_account(tx, chart.spec(chart.REVENUE_USAGE, CURRENCY)),
    }
    for name in ("acme", "globex", "initech"):
        customer = customers.create(
            tx,
            customers.CustomerInput(
                external_id=f"demo-{name}-{new_id('ext')[-6:].lower()}",
                name=name.title(),
                currency=CURRENCY,
            ),
        )
        accounts[name] = ledger.open_account(tx, AccountSpec.customer_credit(customer.id, CURRENCY))
    return accounts


def run_ledger_demo(db: Database, console: Console) -> None:
    console.rule("[bold]Ledger[/bold]: credit wallets, holds, refusals, reversals")
    run = new_id("demo")[-6:].lower()
    with db.transaction(actor="demo") as tx:
        a = _open_accounts(tx)

    def step(op: LedgerOp, what: str) -> TransferResult:
        with db.transaction(actor="demo") as tx:
            result = ledger.create_transfer(tx, op)
        _say(console, result, what)
        return result

    console.print("Funding the wallets:")
    step(
        _move(f"{run}-acme-topup", a["clearing"], a["acme"], 5000, "prepaid_topup"),
        "Acme buys $50.00 of credit",
    )
    step(
        _move(f"{run}-globex-promo", a["promotions"], a["globex"], 2000, "promotion_grant"),
        "Globex gets a $20.00 promotion",
    )
    step(
        _move(f"{run}-initech-promo", a["promotions"], a["initech"], 1000, "promotion_grant"),
        "Initech gets a $10.00 promotion",
    )

    console.print("Spending, holding, refusing:")
    step(
        _move(f"{run}-acme-usage-1", a["acme"], a["revenue"], 1234, "usage_burn"),
        "Acme burns $12.34 of usage",
    )
    step(
        _move(f"{run}-globex-usage-1", a["globex"], a["revenue"], 500, "usage_burn"),
        "Globex burns $5.00",
    )
    step(
        _move(f"{run}-acme-hold", a["acme"], a["revenue"], 1000, "usage_reserve", pending=True),
        "Acme reserves $10.00 for a long job",
    )
    step(
        PostPending(f"{run}-acme-hold-post", f"{run}-acme-hold", amount_minor=750),
        "… the job used $7.50: posted, $2.50 released",
    )
    step(
        _move(f"{run}-globex-hold", a["globex"], a["revenue"], 300, "usage_reserve", pending=True),
        "Globex reserves $3.00",
    )
    step(
        VoidPending(f"{run}-globex-hold-void", f"{run}-globex-hold"),
        "… the request was cancelled: voided",
    )
    overspend = _move(f"{run}-initech-usage-1", a["initech"], a["revenue"], 1500, "usage_burn")
    step(overspend, "Initech tries to burn $15.00 with $10.00 of credit")
    step(overspend, "… the same request retried")
    step(
        _move(
            f"{run}-initech-hold",
            a["initech"],
            a["revenue"],
            400,
            "usage_reserve",
            pending=True,
            timeout_seconds=1,
        ),
        "Initech reserves $4.00 for one second",
    )
    time.sleep(1.1)
    with db.transaction(actor="demo") as tx:
        expired = ledger.expire_due_holds(tx)
    console.print(
        f"  [green]✓[/green] the expiry job released {len(expired)} hold(s) past their timeout"
    )
    step(
        ReverseTransfer(
            f"{run}-acme-usage-1-refund", f"{run}-acme-usage-1", "usage_dispute", amount_minor=234
        ),
        "Acme disputes $2.34 of its usage: partly reversed",
    )

    step(
        _move(f"{run}-acme-hold-2", a["acme"], a["revenue"], 500, "usage_reserve", pending=True),
        "Acme reserves $5.00 for a job still running",
    )

    labels = {
        "clearing": "stripe_clearing (asset)",
        "promotions": "promotion_expense (expense)",
        "revenue": "revenue_usage (revenue, 8 shards)",
        "acme": "Acme credit wallet",
        "globex": "Globex credit wallet",
        "initech": "Initech credit wallet",
    }
    with db.read(actor="demo") as tx:
        rows = [(labels[name], ledger.balance(tx, account.id)) for name, account in a.items()]
        report = ledger.check_invariants(tx)
    print_balances(rows, title="Balances (net on each account's normal side)")
    console.print("[bold]tallybook ledger check[/bold]")
    print_report(report)
