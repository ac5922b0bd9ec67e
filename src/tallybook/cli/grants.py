"""``tallybook grants …``, ``tallybook promotions …`` and ``tallybook entitlements …``: thin
commands over the grants and entitlements services (the same calls the API makes). Writes are
recorded as the actor ``cli:<os user>`` (who issued a grant or an override, besides why)."""

from __future__ import annotations

import getpass
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import typer
from rich.table import Table

from tallybook.cli.context import console, fail, handle_errors, open_database
from tallybook.cli.groups import CliGroups
from tallybook.entitlements import alerts, check, overrides, reservations, spend
from tallybook.entitlements import repository as entitlements_repository
from tallybook.entitlements.domain import CheckResult
from tallybook.entitlements.fast import fast_check
from tallybook.entitlements.settings import policies_from
from tallybook.grants import promotions
from tallybook.grants import service as grants
from tallybook.grants.issuance import GrantView
from tallybook.kit.assets import minor_to_quantity
from tallybook.kit.errors import CommonCode, InvalidRequest
from tallybook.kit.money import Money
from tallybook.kit.pagination import PageRequest
from tallybook.kit.settings import Settings

grants_app = typer.Typer(help="Credit grants (money or usage units).", no_args_is_help=True)
recurring_app = typer.Typer(help="Recurring grants.", no_args_is_help=True)
rules_app = typer.Typer(help="Credits included in a plan version.", no_args_is_help=True)
promotions_app = typer.Typer(help="Promotion codes.", no_args_is_help=True)
entitlements_app = typer.Typer(
    help="Entitlements: checks, overrides, limits.", no_args_is_help=True
)
overrides_app = typer.Typer(help="Per-customer overrides.", no_args_is_help=True)
spend_app = typer.Typer(help="Spend limits.", no_args_is_help=True)
reservations_app = typer.Typer(help="Reservations for work in flight.", no_args_is_help=True)


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli"


def _instant(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(
            InvalidRequest(
                CommonCode.PARAMETER_INVALID, f"{name}: not an ISO 8601 time", param=name
            )
        )
    return None


def _amount(view_minor: int, asset: str, kind: str) -> str:
    if kind == "usage":
        return f"{minor_to_quantity(view_minor)} {asset}"
    return Money(view_minor, asset).format()


def _print_grants(views: list[GrantView]) -> None:
    """One line per grant (they grep and paste whole, whatever the terminal's width)."""
    for view in views:
        grant = view.grant
        console.print(
            f"{grant.id}  {grant.customer_id}  {grant.kind}/{grant.source}  "
            f"issued {_amount(grant.amount_minor, grant.asset, grant.kind)}  "
            f"remaining {_amount(view.remaining_minor, grant.asset, grant.kind)}  "
            f"priority {grant.priority}  expires {grant.expires_at or 'never'}  {grant.status}",
            soft_wrap=True,
            highlight=False,
        )


# Grants --------------------------------------------------------------------------------------


@grants_app.command("create")
def create_grant(
    customer: str = typer.Option(..., help="Customer id or external id"),
    reason: str = typer.Option(..., help="Why (recorded with who issued it)"),
    amount_minor: int | None = typer.Option(None, help="Monetary: minor units"),
    currency: str | None = typer.Option(None, help="Monetary: default the customer's"),
    meter: str | None = typer.Option(None, help="Usage: meter id or key"),
    quantity: str | None = typer.Option(None, help="Usage: units"),
    source: str = typer.Option("goodwill", help="promotion, purchase, goodwill or plan"),
    priority: int = typer.Option(50, help="0 burns first, 100 last"),
    effective_at: str | None = typer.Option(None, help="ISO 8601 (default now)"),
    expires_at: str | None = typer.Option(None, help="ISO 8601 (default never)"),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        grant = grants.issue_grant(
            tx,
            grants.GrantInput(
                customer=customer,
                kind="usage" if meter is not None else "monetary",
                amount_minor=amount_minor,
                currency=currency,
                meter=meter,
                quantity=Decimal(quantity) if quantity is not None else None,
                source=source,
                priority=priority,
                effective_at=_instant(effective_at, "effective_at"),
                expires_at=_instant(expires_at, "expires_at"),
                reason=reason,
            ),
        )
        _print_grants([grants.view(tx, grant)])


@grants_app.command("list")
def list_grants(
    customer: str | None = typer.Option(None),
    status: str | None = typer.Option(None, help="active, voided or expired"),
    limit: int = typer.Option(50, max=100),
) -> None:
    db = open_database()
    with handle_errors(), db.read(actor=actor()) as tx:
        page = grants.list_views(tx, PageRequest(limit=limit), customer=customer, status=status)
        _print_grants(list(page.data))


@grants_app.command("show")
def show_grant(grant_id: str) -> None:
    db = open_database()
    with handle_errors(), db.read(actor=actor()) as tx:
        view = grants.get_view(tx, grant_id)
        _print_grants([view])
        console.print(f"issued by {view.grant.issued_by}: {view.grant.reason}")
        console.print(f"ledger wallet {view.grant.account_id}; held {view.held_minor}")


@grants_app.command("void")
def void_grant(grant_id: str, reason: str = typer.Option(...)) -> None:
    """End a grant now; its remainder returns to its source through the ledger."""
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        grant = grants.void_grant(tx, grant_id, reason=reason)
        _print_grants([grants.view(tx, grant)])


@recurring_app.command("create")
def create_recurring(
    customer: str = typer.Option(...),
    reason: str = typer.Option(...),
    amount_minor: int | None = typer.Option(None),
    currency: str | None = typer.Option(None),
    meter: str | None = typer.Option(None),
    quantity: str | None = typer.Option(None),
    source: str = typer.Option("promotion"),
    priority: int = typer.Option(50),
    interval: str = typer.Option("month", help="day, week, month or year"),
    interval_count: int = typer.Option(1),
    anchor_at: str | None = typer.Option(None),
    ends_at: str | None = typer.Option(None),
    expiry: str = typer.Option("next_instance", help="next_instance, after_days or never"),
    expires_after_days: int | None = typer.Option(None),
    rollover: str = typer.Option("none", help="none or capped"),
    rollover_cap: str | None = typer.Option(None, help="capped: minor units (money) or units"),
) -> None:
    usage = meter is not None
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        row = grants.create_recurring(
            tx,
            grants.RecurringInput(
                customer=customer,
                kind="usage" if usage else "monetary",
                amount_minor=amount_minor,
                currency=currency,
                meter=meter,
                quantity=Decimal(quantity) if quantity is not None else None,
                source=source,
                priority=priority,
                interval=interval,
                interval_count=interval_count,
                anchor_at=_instant(anchor_at, "anchor_at"),
                ends_at=_instant(ends_at, "ends_at"),
                expiry=expiry,
                expires_after_days=expires_after_days,
                rollover=rollover,
                rollover_cap_minor=int(rollover_cap) if rollover_cap and not usage else None,
                rollover_cap_quantity=Decimal(rollover_cap) if rollover_cap and usage else None,
                reason=reason,
            ),
        )
        console.print(f"{row.id}  next instance {row.next_index} at {row.next_issue_at}")


@recurring_app.command("list")
def list_recurring(customer: str | None = typer.Option(None), limit: int = 50) -> None:
    db = open_database()
    with handle_errors(), db.read(actor=actor()) as tx:
        page = grants.list_recurring(tx, PageRequest(limit=min(limit, 100)), customer=customer)
        table = Table("id", "customer", "amount", "every", "rollover", "next", "status")
        for row in page.data:
            table.add_row(
                row.id,
                row.customer_id,
                _amount(row.amount_minor, row.asset, row.kind),
                f"{row.interval_count} {row.interval_unit}",
                row.rollover,
                str(row.next_issue_at or "-"),
                row.status,
            )
    console.print(table)


@recurring_app.command("cancel")
def cancel_recurring(recurring_id: str, reason: str = typer.Option(...)) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        row = grants.cancel_recurring(tx, recurring_id, reason=reason)
    console.print(f"{row.id}  {row.status}")


@rules_app.command("create")
def create_rule(
    plan_version: str = typer.Option(...),
    reason: str = typer.Option(...),
    amount_minor: int | None = typer.Option(None),
    meter: str | None = typer.Option(None),
    quantity: str | None = typer.Option(None),
    interval: str = typer.Option("month"),
    interval_count: int = typer.Option(1),
    expiry: str = typer.Option("next_instance"),
    rollover: str = typer.Option("none"),
    rollover_cap: str | None = typer.Option(None),
) -> None:
    usage = meter is not None
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        rule = grants.create_rule(
            tx,
            grants.PlanCreditRuleInput(
                plan_version_id=plan_version,
                kind="usage" if usage else "monetary",
                amount_minor=amount_minor,
                meter=meter,
                quantity=Decimal(quantity) if quantity is not None else None,
                interval=interval,
                interval_count=interval_count,
                expiry=expiry,
                rollover=rollover,
                rollover_cap_minor=int(rollover_cap) if rollover_cap and not usage else None,
                rollover_cap_quantity=Decimal(rollover_cap) if rollover_cap and usage else None,
                reason=reason,
            ),
        )
    console.print(f"{rule.id}  plan version {rule.plan_version_id}")


@rules_app.command("sync")
def sync_rule(rule_id: str) -> None:
    """Start the schedules of every subscription on the rule's plan version now."""
    db = open_database()
    started, after = 0, None
    with handle_errors():
        while True:
            with db.transaction(actor=actor()) as tx:
                count, after = grants.sync(tx, rule_id, after_subscription_id=after)
            started += count
            if after is None:
                break
    console.print(f"{started} schedule(s) started")


@rules_app.command("archive")
def archive_rule(rule_id: str) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        rule = grants.archive_rule(tx, rule_id)
    console.print(f"{rule.id}  {rule.status}")


# Promotion codes -----------------------------------------------------------------------------


@promotions_app.command("create")
def create_code(
    code: str = typer.Option(...),
    percent_off: str | None = typer.Option(None),
    amount_off_minor: int | None = typer.Option(None),
    currency: str | None = typer.Option(None),
    credit: str | None = typer.Option(
        None, help='Credit codes: JSON, e.g. {"amount_minor": 1000, "currency": "USD"}'
    ),
    duration: str = typer.Option("once", help="once, repeating or forever"),
    duration_periods: int | None = typer.Option(None),
    eligible_plan: list[str] = typer.Option([], help="Plan id or key (repeatable)"),
    expires_at: str | None = typer.Option(None),
    max_redemptions: int | None = typer.Option(None),
    max_per_customer: int | None = typer.Option(None),
) -> None:
    kind = "credit" if credit else ("percent_off" if percent_off else "amount_off")
    template = promotions.CreditTemplate(**json.loads(credit)) if credit else None
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        row = promotions.create_code(
            tx,
            promotions.PromotionCodeInput(
                code=code,
                kind=kind,
                percent_off=Decimal(percent_off) if percent_off else None,
                amount_off_minor=amount_off_minor,
                currency=currency,
                duration=duration,
                duration_periods=duration_periods,
                eligible_plans=eligible_plan,
                expires_at=_instant(expires_at, "expires_at"),
                max_redemptions=max_redemptions,
                max_redemptions_per_customer=max_per_customer,
                credit=template,
            ),
        )
    console.print(f"{row.id}  {row.code}  {row.kind}")


@promotions_app.command("list")
def list_codes(limit: int = 50) -> None:
    db = open_database()
    with db.read(actor=actor()) as tx:
        page = promotions.list_codes(tx, PageRequest(limit=min(limit, 100)))
        table = Table("id", "code", "kind", "value", "duration", "redeemed", "max", "status")
        for row in page.data:
            value = (
                f"{row.percent_off}%"
                if row.percent_off is not None
                else (
                    Money(row.amount_off_minor, row.currency).format()
                    if row.amount_off_minor is not None and row.currency
                    else json.dumps(row.credit)
                )
            )
            table.add_row(
                row.id,
                row.code,
                row.kind,
                value,
                row.duration,
                str(row.times_redeemed),
                str(row.max_redemptions or "-"),
                row.status,
            )
    console.print(table)


@promotions_app.command("redeem")
def redeem(
    code: str,
    customer: str = typer.Option(...),
    subscription: str | None = typer.Option(None),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        row = promotions.redeem(tx, code, customer=customer, subscription=subscription)
    console.print(
        f"{row.id}  redeemed by {row.customer_id}"
        + (f"; grant {row.grant_id}" if row.grant_id else "")
    )


@promotions_app.command("deactivate")
def deactivate(code: str) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        row = promotions.set_active(tx, code, active=False)
    console.print(f"{row.code}  {row.status}")


# Entitlements --------------------------------------------------------------------------------


def _print_checks(results: list[CheckResult]) -> None:
    """One line per feature: allowed or not and why, then the numbers of metered ones."""
    for r in results:
        verdict = "allowed" if r.allowed else "[red]refused[/red]"
        line = f"{r.feature.key}  {verdict}  {r.reason}  (from {r.source})"
        if r.used is not None:
            limit = "unlimited" if r.limit is None else str(r.limit)
            line += (
                f"  used {r.used} of {limit}, reserved {r.reserved}, remaining "
                f"{r.remaining if r.remaining is not None else '-'}; resets {r.resets_at}"
            )
        if r.config is not None:
            line += f"  config {json.dumps(r.config)}"
        console.print(line, soft_wrap=True, highlight=False)


@entitlements_app.command("check")
def check_command(
    customer: str,
    feature: str,
    quantity: str | None = typer.Option(None),
) -> None:
    """May this customer use this feature now (this many more units)? Exits 1 when not."""
    db = open_database()
    with handle_errors():
        result = fast_check(
            db,
            customer,
            feature,
            quantity=quantity,
            policies=policies_from(Settings.from_env()),
            actor=actor(),
        )
        alerts.fire_for_check(db, result)
    _print_checks([result])
    if not result.allowed:
        raise typer.Exit(1)


@entitlements_app.command("list")
def list_entitlements(customer: str) -> None:
    db = open_database()
    with handle_errors(), db.read(actor=actor()) as tx:
        results = check.check_all(tx, customer, policies=policies_from(Settings.from_env()))
    _print_checks(results)


@overrides_app.command("create")
def create_override(
    customer: str = typer.Option(...),
    feature: str = typer.Option(...),
    reason: str = typer.Option(...),
    enabled: bool | None = typer.Option(None, "--enabled/--disabled"),
    config: str | None = typer.Option(None, help="Config features: JSON"),
    limit: str | None = typer.Option(None),
    unlimited: bool = typer.Option(False),
    enforcement: str | None = typer.Option(None, help="hard or soft"),
    expires_at: str | None = typer.Option(None),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        row = overrides.create_override(
            tx,
            overrides.OverrideInput(
                customer=customer,
                feature=feature,
                enabled=enabled,
                config=json.loads(config) if config else None,
                limit=Decimal(limit) if limit else None,
                unlimited=unlimited,
                enforcement=enforcement,
                expires_at=_instant(expires_at, "expires_at"),
                reason=reason,
            ),
        )
    console.print(f"{row.id}  until {row.expires_at or 'revoked'}")


@overrides_app.command("list")
def list_overrides(customer: str | None = typer.Option(None), limit: int = 50) -> None:
    db = open_database()
    with handle_errors(), db.read(actor=actor()) as tx:
        page = overrides.list_overrides(tx, PageRequest(limit=min(limit, 100)), customer=customer)
        table = Table("id", "customer", "feature", "value", "expires", "status", "by", "reason")
        for row in page.data:
            value: Any = (
                row.enabled
                if row.enabled is not None
                else ("unlimited" if row.unlimited else row.limit_quantity or row.config)
            )
            table.add_row(
                row.id,
                row.customer_id,
                row.feature_id,
                str(value),
                str(row.expires_at or "-"),
                row.status,
                row.created_by,
                row.reason,
            )
    console.print(table)


@overrides_app.command("revoke")
def revoke_override(override_id: str) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        row = overrides.revoke_override(tx, override_id)
    console.print(f"{row.id}  {row.status}")


@spend_app.command("set")
def set_spend_limit(
    customer: str,
    amount_minor: int = typer.Option(...),
    threshold: list[int] = typer.Option([], help="Alert percentage (repeatable)"),
    reason: str | None = typer.Option(None),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        found = check.resolve_customer(tx, customer)
        row = spend.set_spend_limit(
            tx,
            found,
            spend.SpendLimitInput(
                amount_minor=amount_minor, thresholds=threshold or None, reason=reason
            ),
        )
        text = f"{row.customer_id}  {Money(row.amount_minor, row.currency)}  alerts at {row.thresholds}%"
    console.print(text)


@spend_app.command("show")
def show_spend_limit(customer: str) -> None:
    db = open_database()
    with handle_errors(), db.read(actor=actor()) as tx:
        found = check.resolve_customer(tx, customer)
        row = entitlements_repository.spend_limit(tx, found.id)
        if row is None:
            console.print("no spend limit")
            return
        facts = spend.spend_facts_for(
            tx,
            found,
            meter_id=None,
            quantity=None,
            facts=check.subscription_facts(tx, found.id, tx.now()),
            now=tx.now(),
        )
        limit = Money(row.amount_minor, row.currency)
    spent = Money(facts.spend_minor, limit.currency).format() if facts else "n/a (no period)"
    console.print(f"limit {limit}; spent this period {spent}")


@spend_app.command("remove")
def remove_spend_limit(customer: str) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        removed = spend.remove_spend_limit(tx, check.resolve_customer(tx, customer))
    console.print("removed" if removed else "no spend limit")


@reservations_app.command("create")
def create_reservation(
    customer: str = typer.Option(...),
    feature: str | None = typer.Option(None),
    quantity: str | None = typer.Option(None),
    amount_minor: int | None = typer.Option(None),
    timeout_seconds: int = typer.Option(900),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        outcome = reservations.reserve(
            tx,
            reservations.ReservationInput(
                customer=customer,
                feature=feature,
                quantity=quantity,
                amount_minor=amount_minor,
                timeout_seconds=timeout_seconds,
            ),
            policies=policies_from(Settings.from_env()),
        )
    if outcome.reservation is None:
        assert outcome.check is not None
        console.print(f"[red]refused[/red]: {outcome.check.reason}")
        raise typer.Exit(1)
    console.print(f"{outcome.reservation.id}  expires {outcome.reservation.expires_at}")


@reservations_app.command("settle")
def settle_reservation(
    reservation_id: str,
    quantity: str | None = typer.Option(None),
    amount_minor: int | None = typer.Option(None),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        row = reservations.settle(tx, reservation_id, quantity=quantity, amount_minor=amount_minor)
    console.print(f"{row.id}  {row.status}")


@reservations_app.command("release")
def release_reservation(reservation_id: str) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor=actor()) as tx:
        row = reservations.release(tx, reservation_id)
    console.print(f"{row.id}  {row.status}")


@reservations_app.command("list")
def list_reservations(
    customer: str | None = typer.Option(None), status: str | None = typer.Option(None)
) -> None:
    db = open_database()
    with handle_errors(), db.read(actor=actor()) as tx:
        page = reservations.list_reservations(
            tx, PageRequest(limit=100), customer=customer, status=status
        )
        table = Table("id", "customer", "feature", "quantity", "amount", "status", "expires")
        for row in page.data:
            table.add_row(
                row.id,
                row.customer_id,
                row.feature_id or "-",
                str(row.quantity or "-"),
                str(row.amount_minor or "-"),
                row.status,
                str(row.expires_at),
            )
    console.print(table)


def register(groups: CliGroups) -> None:
    grants_app.add_typer(recurring_app, name="recurring")
    grants_app.add_typer(rules_app, name="plan-rules")
    entitlements_app.add_typer(overrides_app, name="overrides")
    entitlements_app.add_typer(spend_app, name="spend-limit")
    entitlements_app.add_typer(reservations_app, name="reservations")
    groups.root.add_typer(grants_app, name="grants")
    groups.root.add_typer(promotions_app, name="promotions")
    groups.root.add_typer(entitlements_app, name="entitlements")
