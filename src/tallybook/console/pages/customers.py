"""Customer search, the customer page (details, panels, timeline) and the full timeline."""

from __future__ import annotations

from typing import Any, Final

from fastapi import Depends
from starlette.responses import Response

from tallybook.console import panels, tables, timeline
from tallybook.console.roles import roles_for
from tallybook.console.web import (
    ConsoleContext,
    console_router,
    here_of,
    new_action_token,
    redirect,
    signed_in,
)
from tallybook.customers import service as customers
from tallybook.customers.models import Customer
from tallybook.db import Tx
from tallybook.kit.pagination import PageRequest

router = console_router()

BROWSE_PAGE_SIZE: Final = 25
TIMELINE_ON_PAGE: Final = 15
TIMELINE_PAGE_SIZE: Final = 50

SEARCH_COLUMNS: Final[list[tables.Column[Customer]]] = [
    tables.Column("name", "Name", value=lambda c: (c.name or "").lower() or None),
    tables.Column("email", "Email", value=lambda c: (c.email or "").lower() or None),
    tables.Column("external_id", "External id", value=lambda c: c.external_id),
    tables.Column("currency", "Currency", value=lambda c: c.currency),
    tables.Column("created", "Created", value=lambda c: c.id),
]


def _exact(customer: Customer, text: str) -> bool:
    """Ids and external ids are unique: typing one exactly means that customer."""
    return text in (customer.id, customer.external_id)


@router.get("/customers")
def search(ctx: ConsoleContext = Depends(signed_in())) -> Response:
    text = ctx.request.query_params.get("q", "").strip()
    after = ctx.request.query_params.get("after") or None
    with ctx.read() as tx:
        if not text:
            page = customers.list_page(
                tx, PageRequest(limit=BROWSE_PAGE_SIZE, starting_after=after)
            )
            return ctx.render(
                "customers/search.html",
                tx=tx,
                text=text,
                results=None,
                recent=list(page.data),
                next_after=page.data[-1].id if page.has_more and page.data else None,
            )
        found = customers.search(tx, text)
        exact = [c for c in found if _exact(c, text)]
        if len(found) == 1 or exact:
            return redirect(f"/console/customers/{(exact or found)[0].id}")
        table = tables.from_list(
            ctx.request, found, columns=SEARCH_COLUMNS, default_sort=tables.Sort("created")
        )
        return ctx.render(
            "customers/search.html",
            tx=tx,
            text=text,
            results=table,
            capped=len(found) >= customers.SEARCH_RESULTS_MAX,
            recent=None,
            next_after=None,
        )


def _page_context(ctx: ConsoleContext, tx: Tx) -> dict[str, Any]:
    """What panel templates may use besides their own context."""
    return {
        "now": tx.now(),
        "csrf_token": ctx.csrf_token,
        "ctx": ctx,
        "request": ctx.request,
        "can": ctx.can,
        "roles_for": roles_for,
        "new_action_token": new_action_token,
        "here": here_of(ctx.request),
    }


@router.get("/customers/{customer_id}")
def customer_page(customer_id: str, ctx: ConsoleContext = Depends(signed_in())) -> Response:
    with ctx.read() as tx:
        customer = customers.resolve(tx, customer_id)
        rendered = panels.render_panels(tx, customer, ctx.role, _page_context(ctx, tx))
        recent = timeline.load(tx, customer.id, limit=TIMELINE_ON_PAGE)
        return ctx.render(
            "customers/show.html", tx=tx, customer=customer, panels=rendered, timeline=recent
        )


@router.get("/customers/{customer_id}/timeline")
def customer_timeline(customer_id: str, ctx: ConsoleContext = Depends(signed_in())) -> Response:
    params = ctx.request.query_params
    kind = params.get("type", "").strip()
    with ctx.read() as tx:
        customer = customers.resolve(tx, customer_id)
        page = timeline.load(
            tx,
            customer.id,
            limit=TIMELINE_PAGE_SIZE,
            cursor=params.get("before"),
            types=[kind] if kind else None,
        )
        return ctx.render(
            "customers/timeline.html",
            tx=tx,
            customer=customer,
            timeline=page,
            kind=kind,
            first_page=not params.get("before"),
        )
