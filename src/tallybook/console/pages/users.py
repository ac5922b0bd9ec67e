"""Console users (admins only): the list, and audited role changes, disabling and enabling.
Creating users and setting passwords is done from the command line
(``tallybook console users …``), so a password never travels through a web form of ours."""

from __future__ import annotations

from typing import Final

from fastapi import Depends, Form
from starlette.responses import Response

from tallybook.console import tables, users
from tallybook.console.actions import ActionForm, Done, action_form, respond, run_action
from tallybook.console.errors import ConsoleCode
from tallybook.console.models import ConsoleUser
from tallybook.console.roles import Role, parse_role
from tallybook.console.web import ConsoleContext, console_router, signed_in
from tallybook.db import Tx
from tallybook.kit.errors import Conflict

router = console_router()

BACK: Final = "/console/users"

COLUMNS: Final[list[tables.Column[ConsoleUser]]] = [
    tables.Column("email", "Email", value=lambda u: u.email),
    tables.Column("name", "Name", value=lambda u: u.display_name.lower()),
    tables.Column("role", "Role", value=lambda u: Role(u.role).rank),
    tables.Column("status", "Status", value=lambda u: u.status),
    tables.Column("last", "Last sign-in", value=lambda u: u.last_sign_in_at),
    tables.Column("actions", ""),
]


@router.get("/users")
def users_page(ctx: ConsoleContext = Depends(signed_in(Role.ADMIN))) -> Response:
    with ctx.read() as tx:
        everyone = users.list_users(tx)
        table = tables.from_list(
            ctx.request, everyone, columns=COLUMNS, default_sort=tables.Sort("email", False)
        )
        return ctx.render("users.html", tx=tx, table=table, roles=list(Role))


def _not_self(ctx: ConsoleContext, user: ConsoleUser, what: str) -> None:
    # An admin locking themselves out is a support ticket nobody can answer.
    if user.id == ctx.identity.actor:
        raise Conflict(ConsoleCode.USER_SELF, f"you cannot {what} yourself", param="user")


@router.post("/users/{user_id}/role")
def set_role(
    user_id: str,
    ctx: ConsoleContext = Depends(signed_in()),
    form: ActionForm = Depends(action_form),
    role: str = Form(""),
) -> Response:
    def perform(tx: Tx) -> Done:
        user = users.get(tx, user_id)
        _not_self(ctx, user, "change the role of")
        previous = user.role
        users.set_role(tx, user, parse_role(role))
        return Done(
            f"{user.email} is now {user.role}",
            details={"email": user.email, "from": previous, "to": user.role},
        )

    outcome = run_action(
        ctx,
        form,
        action="console_user.set_role",
        object_type="console_user",
        object_id=user_id,
        perform=perform,
        details={"role": role},
    )
    return respond(ctx, outcome, back=BACK)


@router.post("/users/{user_id}/disable")
def disable(
    user_id: str,
    ctx: ConsoleContext = Depends(signed_in()),
    form: ActionForm = Depends(action_form),
) -> Response:
    def perform(tx: Tx) -> Done:
        user = users.get(tx, user_id)
        _not_self(ctx, user, "disable")
        users.disable(tx, user)
        return Done(f"{user.email} is disabled and signed out", details={"email": user.email})

    outcome = run_action(
        ctx,
        form,
        action="console_user.disable",
        object_type="console_user",
        object_id=user_id,
        perform=perform,
    )
    return respond(ctx, outcome, back=BACK)


@router.post("/users/{user_id}/enable")
def enable(
    user_id: str,
    ctx: ConsoleContext = Depends(signed_in()),
    form: ActionForm = Depends(action_form),
) -> Response:
    def perform(tx: Tx) -> Done:
        user = users.enable(tx, users.get(tx, user_id))
        return Done(f"{user.email} is enabled", details={"email": user.email})

    outcome = run_action(
        ctx,
        form,
        action="console_user.enable",
        object_type="console_user",
        object_id=user_id,
        perform=perform,
    )
    return respond(ctx, outcome, back=BACK)
