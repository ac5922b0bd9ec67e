"""``tallybook console users …``: console users from the command line (recorded in the audit
log with the actor ``cli`` and the role ``system``)."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from tallybook.cli.context import console, err_console, handle_errors, open_database
from tallybook.cli.groups import CliGroups
from tallybook.console import audit, users
from tallybook.console.models import ConsoleUser
from tallybook.console.roles import parse_role
from tallybook.db import Tx

console_app = typer.Typer(help="The support and finance console.", no_args_is_help=True)
users_app = typer.Typer(help="Console users and their roles.", no_args_is_help=True)
console_app.add_typer(users_app, name="users")

ROLES_HELP = "viewer, support, finance or admin (see docs/console.md for what each may do)"


def _password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _record(tx: Tx, action: str, user: ConsoleUser, reason: str, **details: str) -> None:
    audit.record_system(
        tx,
        action=action,
        object_type="console_user",
        object_id=user.id,
        reason=reason,
        details={"email": user.email, **details},
    )


@users_app.command("create")
def create(
    email: str = typer.Option(..., help="The sign-in name"),
    name: str = typer.Option(..., "--name", help="Display name"),
    role: str = typer.Option(..., help=ROLES_HELP),
    password_stdin: bool = typer.Option(False, help="Read the password from standard input"),
    reason: str = typer.Option("created from the command line", help="Kept in the audit log"),
) -> None:
    """Create a console user (asks for the password unless --password-stdin)."""
    with handle_errors():
        parsed = parse_role(role)
    password = _password(password_stdin)
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        user = users.create_user(tx, email=email, display_name=name, role=parsed, password=password)
        _record(tx, "console_user.create", user, reason, role=user.role)
    console.print(f"{user.id}  {user.email}  {user.role}")


@users_app.command("list")
def list_users() -> None:
    db = open_database()
    with db.read() as tx:
        table = Table("id", "email", "name", "role", "status", "last sign-in")
        for user in users.list_users(tx):
            table.add_row(
                user.id,
                user.email,
                user.display_name,
                user.role,
                user.status,
                user.last_sign_in_at.isoformat() if user.last_sign_in_at else "",
            )
    console.print(table)


@users_app.command("set-role")
def set_role(
    email: str,
    role: str = typer.Argument(..., help=ROLES_HELP),
    reason: str = typer.Option(..., help="Why (kept in the audit log)"),
) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        user = users.get_by_email(tx, email)
        previous = user.role
        users.set_role(tx, user, parse_role(role))
        _record(tx, "console_user.set_role", user, reason, to=user.role, **{"from": previous})
    console.print(f"{user.email}: {previous} → {user.role}")


@users_app.command("disable")
def disable(
    email: str, reason: str = typer.Option(..., help="Why (kept in the audit log)")
) -> None:
    """Disable a user and end their sessions at once."""
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        user = users.disable(tx, users.get_by_email(tx, email))
        _record(tx, "console_user.disable", user, reason)
    console.print(f"{user.email}: disabled")


@users_app.command("enable")
def enable(email: str, reason: str = typer.Option(..., help="Why (kept in the audit log)")) -> None:
    """Enable a disabled (or locked) user."""
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        user = users.enable(tx, users.get_by_email(tx, email))
        _record(tx, "console_user.enable", user, reason)
    console.print(f"{user.email}: enabled")


@users_app.command("set-password")
def set_password(
    email: str,
    password_stdin: bool = typer.Option(False, help="Read the password from standard input"),
    reason: str = typer.Option(
        "password reset from the command line", help="Kept in the audit log"
    ),
) -> None:
    """Set a new password (unlocks the account and ends its sessions)."""
    password = _password(password_stdin)
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        user = users.set_password(tx, users.get_by_email(tx, email), password)
        _record(tx, "console_user.set_password", user, reason)
    err_console.print(f"{user.email}: password set; sessions ended")


def register(groups: CliGroups) -> None:
    groups.root.add_typer(console_app, name="console")
