"""The audit log page: every console action and sign-in, filterable and sortable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from fastapi import Depends
from starlette.responses import Response

from tallybook.console import audit, tables
from tallybook.console.audit import AuditFilter, Outcome
from tallybook.console.models import ConsoleAuditEntry
from tallybook.console.pages.auth import SIGN_IN_ACTION, SIGN_OUT_ACTION
from tallybook.console.roles import PERMISSIONS
from tallybook.console.web import ConsoleContext, console_router, signed_in

router = console_router()

PAGE_SIZE: Final = 50
#: Actions recorded outside the permission table (sign-ins, command-line user management).
OTHER_ACTIONS: Final = (
    SIGN_IN_ACTION,
    SIGN_OUT_ACTION,
    "console_user.create",
    "console_user.set_password",
)

COLUMNS: Final[list[tables.Column[ConsoleAuditEntry]]] = [
    tables.Column("time", "Time", sortable=True),
    tables.Column("actor", "Actor", sortable=True),
    tables.Column("action", "Action", sortable=True),
    tables.Column("object", "Object"),
    tables.Column("reason", "Reason"),
    tables.Column("outcome", "Outcome", sortable=True),
]


def known_actions() -> list[str]:
    return sorted({*PERMISSIONS, *OTHER_ACTIONS})


@router.get("/audit")
def audit_page(ctx: ConsoleContext = Depends(signed_in())) -> Response:
    params = ctx.request.query_params
    where = AuditFilter(
        actor=params.get("actor", "").strip() or None,
        action=params.get("action", "").strip() or None,
        customer_id=params.get("customer", "").strip() or None,
        object_id=params.get("object", "").strip() or None,
        outcome=params.get("outcome", "").strip() or None,
    )
    with ctx.read() as tx:

        def fetch(sort: tables.Sort, offset: int, limit: int) -> Sequence[ConsoleAuditEntry]:
            return audit.search(
                tx, where, sort=sort.key, descending=sort.descending, offset=offset, limit=limit
            )

        table = tables.from_query(
            ctx.request,
            fetch,
            columns=COLUMNS,
            default_sort=tables.Sort("time"),
            per_page=PAGE_SIZE,
        )
        return ctx.render(
            "audit.html",
            tx=tx,
            table=table,
            where=where,
            actions=known_actions(),
            outcomes=[o.value for o in Outcome],
        )
