"""The overview: search, what needs attention, and recent console activity."""

from __future__ import annotations

from typing import Final

from fastapi import Depends
from starlette.responses import Response

from tallybook.console import anomalies, audit
from tallybook.console.web import ConsoleContext, console_router, signed_in

router = console_router()

RECENT_ACTIONS: Final = 10


@router.get("/")
def home(ctx: ConsoleContext = Depends(signed_in())) -> Response:
    with ctx.read() as tx:
        recent = audit.search(tx, audit.AuditFilter(), limit=RECENT_ACTIONS)
        counts = {badge.key: badge for badge in anomalies.badges(tx)}
        return ctx.render(
            "home.html", tx=tx, pages=anomalies.anomaly_pages(), counts=counts, recent=recent
        )
