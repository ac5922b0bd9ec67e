"""``tallybook features|plans|subscriptions …``: thin commands over the catalog and
subscription services (the same calls the API makes)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tallybook.catalog import features as features_service
from tallybook.catalog import plans as plans_service
from tallybook.catalog.domain import ChangePolicy
from tallybook.cli.context import console, handle_errors, open_database, progress_bar
from tallybook.cli.groups import CliGroups
from tallybook.customers import service as customers
from tallybook.kit.money import Money
from tallybook.kit.pagination import PageRequest
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.domain import CancelAt, CancelRequest, ChangeRequest, CreateRequest
from tallybook.subscriptions.views import ChangeResult

features_app = typer.Typer(help="Features plans can grant.", no_args_is_help=True)
plans_app = typer.Typer(help="Plans and their versions.", no_args_is_help=True)
subscriptions_app = typer.Typer(help="Subscriptions.", no_args_is_help=True)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _amount(amount_minor: int, currency: str) -> str:
    return Money(amount_minor, currency).format()


def _print_result(result: ChangeResult) -> None:
    sub = result.subscription
    title = "preview (nothing written)" if result.preview else sub.id
    console.print(f"[bold]{title}[/bold]  {sub.status}  plan version {sub.plan_version_id}")
    if sub.current_period_start_at and sub.current_period_end_at:
        console.print(f"period {sub.current_period_start_at} → {sub.current_period_end_at}")
    if result.change is not None:
        change = result.change
        console.print(
            f"change {change.kind} {change.status} ({change.direction or '-'}, "
            f"{change.policy or '-'}) effective {change.effective_at}"
        )
    table = Table("kind", "description", "service window", "amount")
    for line in result.lines:
        table.add_row(
            line.kind,
            line.description,
            f"{line.service_start_at} → {line.service_end_at}",
            _amount(line.amount_minor, line.currency),
        )
    console.print(table)
    console.print(f"total {_amount(result.total_minor, sub.currency)}")


# Features ---------------------------------------------------------------------------------


@features_app.command("create")
def create_feature(
    key: str = typer.Option(...),
    name: str = typer.Option(...),
    type: str = typer.Option("boolean", help="boolean, config or metered"),
    meter_id: str | None = typer.Option(None, help="The meter a metered feature counts"),
    description: str | None = typer.Option(None),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        feature = features_service.create(
            tx,
            features_service.FeatureInput(
                key=key, name=name, type=type, meter_id=meter_id, description=description
            ),
        )
    console.print(f"{feature.id}  {feature.key}  {feature.type}")


@features_app.command("list")
def list_features(type: str | None = typer.Option(None), limit: int = 100) -> None:
    db = open_database()
    with db.read() as tx:
        page = features_service.list_page(tx, PageRequest(limit=min(limit, 100)), type=type)
        table = Table("id", "key", "name", "type", "meter")
        for f in page.data:
            table.add_row(f.id, f.key, f.name, f.type, f.meter_id or "")
    console.print(table)


# Plans ------------------------------------------------------------------------------------


@plans_app.command("create")
def create_plan(
    key: str = typer.Option(...),
    name: str = typer.Option(...),
    description: str | None = typer.Option(None),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        plan = plans_service.create_plan(
            tx, plans_service.PlanInput(key=key, name=name, description=description)
        )
    console.print(f"{plan.id}  {plan.key}")


@plans_app.command("list")
def list_plans(limit: int = 100) -> None:
    db = open_database()
    with db.read() as tx:
        page = plans_service.list_plans(tx, PageRequest(limit=min(limit, 100)))
        table = Table("id", "key", "name", "versions")
        for plan in page.data:
            versions = plans_service.list_versions(tx, plan.id)
            summary = ", ".join(f"v{v.version} {v.status}" for v in versions)
            table.add_row(plan.id, plan.key, plan.name, summary)
    console.print(table)


@plans_app.command("show")
def show_plan(plan: str) -> None:
    """A plan's versions with their prices."""
    db = open_database()
    with handle_errors(), db.read() as tx:
        found = plans_service.resolve_plan(tx, plan)
        console.print(f"[bold]{found.name}[/bold] ({found.key}, {found.id})")
        for version in plans_service.list_versions(tx, found.id):
            terms = plans_service.version_terms(tx, version.id)
            console.print(
                f"v{version.version} {version.id} {version.status} {version.currency} every "
                f"{terms.interval.describe()}"
            )
            table = Table("price", "key", "type", "terms")
            for price in terms.prices:
                detail = json.dumps(price.to_dict(), default=str, sort_keys=True)
                table.add_row(price.id, price.key, str(price.type), detail)
            console.print(table)


@plans_app.command("version-create")
def create_version(
    plan: str,
    file: Path = typer.Option(..., help="JSON: the same body as POST /v1/plans/{plan}/versions"),
    publish: bool = typer.Option(False, help="Publish it at once"),
) -> None:
    definition: dict[str, Any] = json.loads(file.read_text(), parse_float=Decimal)
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        found = plans_service.resolve_plan(tx, plan)
        version = plans_service.create_version(tx, found.id, definition)
        if publish:
            plans_service.publish(tx, version.id)
    console.print(f"{version.id}  v{version.version}  {version.status}")


@plans_app.command("publish")
def publish_version(plan: str, version: str) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        found = plans_service.resolve_version(tx, plans_service.resolve_plan(tx, plan), version)
        published = plans_service.publish(tx, found.id)
    console.print(f"{published.id}  v{published.version}  {published.status}")


@plans_app.command("migrate")
def migrate(
    plan: str,
    from_version: str = typer.Option(..., "--from", help="Version number or id"),
    to_version: str = typer.Option(..., "--to", help="Version number or id"),
    policy: str = typer.Option("period_end", help="prorate_now, now_without_proration, period_end"),
) -> None:
    """Move every subscription on one version to another, in batches."""
    db = open_database()
    with handle_errors(), db.read() as tx:
        found = plans_service.resolve_plan(tx, plan)
        source = plans_service.resolve_version(tx, found, from_version).id
        target = plans_service.resolve_version(tx, found, to_version).id
    after: str | None = None
    migrated = skipped = 0
    with progress_bar() as progress:
        task = progress.add_task("migrating", total=None)
        while True:
            with handle_errors(), db.transaction(actor="cli") as tx:
                outcome = subscriptions.migrate(
                    tx, source, target, policy=ChangePolicy(policy), after_id=after
                )
            migrated += len(outcome.migrated)
            skipped += len(outcome.skipped)
            progress.update(task, completed=migrated + skipped)
            if not outcome.has_more:
                break
            after = outcome.next_after
    console.print(f"migrated {migrated}, skipped {skipped}")


# Subscriptions ------------------------------------------------------------------------------


@subscriptions_app.command("create")
def create_subscription(
    customer: str = typer.Option(..., help="Customer id or external id"),
    plan: str | None = typer.Option(None, help="Plan key or id (its latest published version)"),
    plan_version: str | None = typer.Option(None),
    anchor: str | None = typer.Option(None, help="Billing anchor, ISO 8601 with offset"),
    trial_days: int | None = typer.Option(None),
    preview: bool = typer.Option(False, help="Show what it would charge; write nothing"),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        result = subscriptions.create(
            tx,
            CreateRequest(
                customer=customer,
                plan=plan,
                plan_version_id=plan_version,
                billing_anchor=_when(anchor),
                trial_period_days=trial_days,
            ),
            preview=preview,
        )
        _print_result(result)


@subscriptions_app.command("list")
def list_subscriptions(customer: str | None = typer.Option(None), limit: int = 50) -> None:
    db = open_database()
    with handle_errors(), db.read() as tx:
        customer_id = customers.resolve(tx, customer).id if customer else None
        page = subscriptions.list_page(
            tx, PageRequest(limit=min(limit, 100)), customer_id=customer_id
        )
        table = Table("id", "customer", "status", "plan version", "period end")
        for sub in page.data:
            table.add_row(
                sub.id,
                sub.customer_id,
                sub.status,
                sub.plan_version_id,
                str(sub.current_period_end_at or ""),
            )
    console.print(table)


@subscriptions_app.command("show")
def show_subscription(subscription_id: str) -> None:
    """A subscription with its phases, periods and charges."""
    db = open_database()
    with handle_errors(), db.read() as tx:
        sub = subscriptions.view(tx, subscription_id)
        console.print(
            f"[bold]{sub.id}[/bold] {sub.status} {sub.currency} customer {sub.customer_id}"
        )
        phases = Table("phase", "plan version", "start", "end")
        for phase in subscriptions.phases(tx, sub.id):
            phases.add_row(
                phase.id, phase.plan_version_id, str(phase.start_at), str(phase.end_at or "")
            )
        periods = Table("period", "kind", "start", "end", "status")
        for period in subscriptions.periods(tx, sub.id):
            periods.add_row(
                period.id or "",
                period.kind,
                str(period.start_at),
                str(period.end_at),
                period.status,
            )
        charges = Table("charge", "kind", "description", "amount", "status")
        for charge in subscriptions.charges(tx, sub.id):
            charges.add_row(
                charge.id,
                charge.kind,
                charge.description,
                _amount(charge.amount_minor, charge.currency),
                charge.status,
            )
    console.print(phases, periods, charges)


@subscriptions_app.command("change")
def change_subscription(
    subscription_id: str,
    plan: str | None = typer.Option(None),
    plan_version: str | None = typer.Option(None),
    policy: str | None = typer.Option(None, help="prorate_now, now_without_proration, period_end"),
    preview: bool = typer.Option(False),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        request = ChangeRequest(
            plan=plan,
            plan_version_id=plan_version,
            policy=ChangePolicy(policy) if policy else None,
        )
        _print_result(subscriptions.change_plan(tx, subscription_id, request, preview=preview))


@subscriptions_app.command("cancel")
def cancel_subscription(
    subscription_id: str,
    now: bool = typer.Option(False, help="Now instead of at period end"),
    credit: bool | None = typer.Option(None, "--credit/--no-credit", help="Credit unused time"),
    preview: bool = typer.Option(False),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        request = CancelRequest(
            at=CancelAt.NOW if now else CancelAt.PERIOD_END, credit_unused=credit
        )
        _print_result(subscriptions.cancel(tx, subscription_id, request, preview=preview))


@subscriptions_app.command("resume")
def resume_subscription(subscription_id: str) -> None:
    """Revoke a cancellation at period end, or resume a paused subscription."""
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        _print_result(subscriptions.resume(tx, subscription_id))


def register(groups: CliGroups) -> None:
    groups.root.add_typer(features_app, name="features")
    groups.root.add_typer(plans_app, name="plans")
    groups.root.add_typer(subscriptions_app, name="subscriptions")
