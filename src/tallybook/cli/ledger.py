"""``tallybook ledger …``: check the books, inspect accounts and transfers, move money by hand."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.table import Table

from tallybook.cli.context import console, fail, handle_errors, open_database
from tallybook.cli.groups import CliGroups
from tallybook.kit.errors import CommonCode, InvalidRequest
from tallybook.kit.pagination import PageRequest
from tallybook.ledger import service
from tallybook.ledger.service.check import CheckReport
from tallybook.ledger.service.transfers import EXPIRY_BATCH_MAX, EXPIRY_BATCHES_PER_RUN_MAX
from tallybook.ledger.values import (
    Account,
    AccountSpec,
    Balance,
    Direction,
    LedgerOp,
    Leg,
    PostPending,
    ReverseTransfer,
    Transfer,
    TransferRequest,
    TransferResult,
    VoidPending,
)

app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)


def _instant(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        fail(
            InvalidRequest(
                CommonCode.PARAMETER_INVALID, f"{name}: not an ISO 8601 time", param=name
            )
        )
    return None


def print_report(report: CheckReport) -> None:
    counts = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in report.counts.items())
    if report.ok:
        console.print(f"[green]ledger check passed[/green]: {counts}", soft_wrap=True)
        return
    # One line per breach, never wrapped, so the report greps and pastes cleanly.
    console.print("[bold]Ledger invariant breaches[/bold]")
    for breach in report.breaches:
        console.print(
            f"  [red]{breach.kind}[/red]  {breach.subject}  {breach.detail}",
            soft_wrap=True,
            highlight=False,
        )
    console.print(
        f"[red]ledger check failed[/red]: {len(report.breaches)} breach(es) in {counts}",
        soft_wrap=True,
    )


@app.command("check")
def check() -> None:
    """Every transfer balances; every stored balance equals its entries; no limit is breached.

    Exits 1 and prints each breach when anything is wrong.
    """
    db = open_database()
    with db.read(actor="cli") as tx:
        report = service.check_invariants(tx)
    print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def print_accounts(accounts: list[Account]) -> None:
    table = Table(title=None)
    # Ids are what a user copies into the next command: never truncate them.
    table.add_column("id", no_wrap=True, min_width=30)
    for name in ("code", "currency", "kind"):
        table.add_column(name)
    table.add_column("customer", no_wrap=True, min_width=30)
    for name in ("reference", "limit", "closed"):
        table.add_column(name)
    for account in accounts:
        limit = (
            "debits ≤ credits"
            if account.debits_must_not_exceed_credits
            else "credits ≤ debits"
            if account.credits_must_not_exceed_debits
            else ""
        )
        if account.is_sharded:
            limit = f"{account.balance_shards} shards"
        table.add_row(
            account.id,
            account.code,
            account.currency,
            account.kind,
            account.owner_id or "system",
            account.reference,
            limit,
            "yes" if account.closed_at else "",
        )
    console.print(table)


@app.command("accounts")
def accounts(
    customer: str | None = typer.Option(None, help="Only this customer's accounts"),
    code: str | None = typer.Option(None),
    limit: int = typer.Option(50, min=1, max=100),
) -> None:
    db = open_database()
    with handle_errors(), db.read(actor="cli") as tx:
        page = service.list_accounts(tx, PageRequest(limit=limit), customer_id=customer, code=code)
    print_accounts(list(page.data))


@app.command("open-account")
def open_account(
    code: str = typer.Option(...),
    currency: str = typer.Option(...),
    kind: str = typer.Option(..., help="asset, liability, revenue, expense or equity"),
    customer: str | None = typer.Option(None, help="Owning customer (omit for a system account)"),
    reference: str = typer.Option(""),
    no_negative: bool = typer.Option(False, help="debits must not exceed credits (a wallet)"),
    shards: int = typer.Option(1, help="Balance shards for a hot system account"),
) -> None:
    """Get or create an account."""
    db = open_database()
    spec = AccountSpec(
        code=code,
        currency=currency,
        kind=kind,
        customer_id=customer,
        reference=reference,
        debits_must_not_exceed_credits=no_negative,
        balance_shards=shards,
    )
    with handle_errors(), db.transaction(actor="cli") as tx:
        account = service.open_account(tx, spec)
    print_accounts([account])


@app.command("close")
def close(account_id: str) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        account = service.close_account(tx, account_id)
    print_accounts([account])


def print_balances(rows: list[tuple[str, Balance]], *, title: str | None = None) -> None:
    """One line per account: posted and pending (net on the account's normal side) and what is
    available (posted minus holds going out)."""
    table = Table("account", "posted", "pending", "available", title=title)
    for label, balance in rows:
        table.add_row(
            label,
            balance.posted.format(),
            balance.pending.format(),
            balance.available.format(),
        )
    console.print(table)


@app.command("balance")
def balance(
    account_id: str,
    as_of: str | None = typer.Option(None, help="A past instant, ISO 8601 with offset"),
    known_at: str | None = typer.Option(None, help="Only entries written by then"),
) -> None:
    db = open_database()
    with handle_errors(), db.read(actor="cli") as tx:
        account = service.get_account(tx, account_id)
        result = service.balance(
            tx, account_id, _instant(as_of, "as_of"), known_at=_instant(known_at, "known_at")
        )
    label = f"{account.id} {account.code} ({account.owner_id or 'system'})"
    print_balances([(label, result)])


@app.command("entries")
def entries(
    account_id: str,
    limit: int = typer.Option(20, min=1, max=100),
    starting_after: str | None = typer.Option(None, help="Cursor: an entry id (lent_…)"),
) -> None:
    """An account's entries, newest first."""
    db = open_database()
    with handle_errors(), db.read(actor="cli") as tx:
        page = service.entries(
            tx, account_id, PageRequest(limit=limit, starting_after=starting_after)
        )
    table = Table()
    table.add_column("entry", no_wrap=True)
    table.add_column("transfer", no_wrap=True)
    for name in ("direction", "phase", "amount", "effective"):
        table.add_column(name)
    for entry in page.data:
        assert entry.id is not None
        table.add_row(
            service.entry_public_id(entry.id),
            entry.transfer_id,
            entry.direction,
            entry.phase,
            entry.amount.format(),
            entry.effective_at.isoformat(),
        )
    console.print(table)
    if page.has_more and page.data and page.data[-1].id is not None:
        console.print(f"more: --starting-after {service.entry_public_id(page.data[-1].id)}")


def print_transfer(transfer: Transfer) -> None:
    title = f"{transfer.id} ({transfer.kind}, {transfer.reason_code})"
    if transfer.hold_status:
        title += f" hold {transfer.hold_status}"
    table = Table(title=title)
    table.add_column("account", no_wrap=True, min_width=30)
    for name in ("direction", "phase", "amount"):
        table.add_column(name)
    for entry in transfer.entries:
        table.add_row(entry.account_id, entry.direction, entry.phase, entry.amount.format())
    console.print(table)


def _run_one(op: LedgerOp) -> None:
    db = open_database()
    with handle_errors():
        with db.transaction(actor="cli") as tx:
            result: TransferResult = service.create_transfer(tx, op)
        transfer = result.raise_for_error()
        print_transfer(transfer)
        if result.status != "created":
            console.print(f"({result.status}: nothing new was written)")


def _legs(pairs: list[str], direction: Direction, currency: str) -> list[Leg]:
    legs = []
    for pair in pairs:
        account_id, _, amount = pair.partition(":")
        if not amount.lstrip("-").isdigit():
            fail(InvalidRequest(CommonCode.AMOUNT_INVALID, f"{pair}: use ACCOUNT:AMOUNT_MINOR"))
        legs.append(Leg(account_id, direction, int(amount), currency))
    return legs


@app.command("transfer")
def transfer(
    transfer_id: str = typer.Option(..., "--id", help="Your id: retrying it is safe"),
    debit: list[str] = typer.Option(..., help="ACCOUNT:AMOUNT_MINOR (repeatable)"),
    credit: list[str] = typer.Option(..., help="ACCOUNT:AMOUNT_MINOR (repeatable)"),
    currency: str = typer.Option(...),
    reason: str = typer.Option(..., help="reason code, e.g. manual_adjustment"),
    pending: bool = typer.Option(False, help="Create a hold"),
    timeout: int | None = typer.Option(None, help="Hold timeout in seconds"),
) -> None:
    """Move money between accounts (or hold it with --pending)."""
    legs = _legs(debit, Direction.DEBIT, currency) + _legs(credit, Direction.CREDIT, currency)
    _run_one(
        TransferRequest(
            id=transfer_id,
            legs=legs,
            reason_code=reason,
            pending=pending,
            timeout_seconds=timeout,
        )
    )


@app.command("show")
def show(transfer_id: str) -> None:
    db = open_database()
    with handle_errors(), db.read(actor="cli") as tx:
        print_transfer(service.get_transfer(tx, transfer_id))


@app.command("post")
def post(
    hold_id: str,
    transfer_id: str = typer.Option(..., "--id"),
    amount: int | None = typer.Option(None, help="Post less than held (minor units)"),
) -> None:
    _run_one(PostPending(id=transfer_id, pending_id=hold_id, amount_minor=amount))


@app.command("void")
def void(hold_id: str, transfer_id: str = typer.Option(..., "--id")) -> None:
    _run_one(VoidPending(id=transfer_id, pending_id=hold_id))


@app.command("reverse")
def reverse(
    original_id: str,
    transfer_id: str = typer.Option(..., "--id"),
    reason: str = typer.Option(...),
    amount: int | None = typer.Option(None, help="Reverse part of it (minor units)"),
) -> None:
    _run_one(
        ReverseTransfer(
            id=transfer_id, transfer_id=original_id, reason_code=reason, amount_minor=amount
        )
    )


@app.command("expire-holds")
def expire_holds() -> None:
    """Release every hold whose timeout has passed (the scheduled job does this every minute)."""
    db = open_database()
    expired = 0
    for _ in range(EXPIRY_BATCHES_PER_RUN_MAX):
        with db.transaction(actor="cli") as tx:
            results = service.expire_due_holds(tx)
        expired += sum(1 for r in results if r.status == "created")
        if len(results) < EXPIRY_BATCH_MAX:
            break
    console.print(f"{expired} hold(s) expired")


def register(groups: CliGroups) -> None:
    groups.root.add_typer(app, name="ledger")
