"""The anomaly pages: the list with counts, and each page from the registry."""

from __future__ import annotations

from fastapi import Depends
from starlette.responses import Response

from tallybook.console import anomalies
from tallybook.console.errors import ConsoleCode
from tallybook.console.web import ConsoleContext, console_router, signed_in
from tallybook.kit.errors import NotFound, PermissionDenied

router = console_router()


@router.get("/anomalies")
def anomalies_index(ctx: ConsoleContext = Depends(signed_in())) -> Response:
    with ctx.read() as tx:
        counts = {badge.key: badge for badge in anomalies.badges(tx)}
        return ctx.render(
            "anomalies/index.html", tx=tx, pages=anomalies.anomaly_pages(), counts=counts
        )


@router.get("/anomalies/{key}")
def anomaly_page(key: str, ctx: ConsoleContext = Depends(signed_in())) -> Response:
    page = anomalies.page_by_key(key)
    if page is None:
        raise NotFound("anomaly page", key, param=None)
    if not ctx.role.at_least(page.role):
        raise PermissionDenied(ConsoleCode.ROLE_TOO_LOW, f"this page needs the {page.role} role")
    if page.is_slot:
        return ctx.render("anomalies/slot.html", page=page)
    assert page.context is not None and page.template is not None
    with ctx.read() as tx:
        context = dict(page.context(tx, ctx))
        return ctx.render(page.template, tx=tx, page=page, **context)
