"""The console, mounted under ``/console`` by ``tallybook.api.app``.

Server-rendered (Jinja2), no front-end build: see docs/console.md. Each area's pages live in
``console/pages/`` with their own router; they are gathered here, with the vendored static
files and an HTML 404 for unknown console paths (registered last).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.responses import Response

from tallybook.console.errors import ConsoleCode
from tallybook.console.pages import (
    anomaly_pages,
    audit_log,
    auth,
    billing_actions,
    customers,
    home,
    invoices,
    simulation,
    users,
    webhooks,
)
from tallybook.console.templating import STATIC_FILES
from tallybook.console.web import ConsoleContext, ConsoleRoute, console_router, signed_in
from tallybook.kit.errors import NotFound, TallybookError

router = APIRouter(prefix="/console", include_in_schema=False)
# "/console" itself (a sub-router cannot declare an empty path).
router.add_api_route(
    "", home.home, methods=["GET"], route_class_override=ConsoleRoute, include_in_schema=False
)

_static = console_router()


@_static.get("/static/{name}")
def static_file(name: str) -> Response:
    found = STATIC_FILES.get(name)
    if found is None:
        raise NotFound("file", name, param=None)
    content, media_type, digest = found
    return Response(
        content,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=31536000, immutable", "ETag": f'"{digest}"'},
    )


_fallback = console_router()


@_fallback.get("/{path:path}")
def not_found(path: str, ctx: ConsoleContext = Depends(signed_in())) -> Response:
    raise TallybookError(
        ConsoleCode.PAGE_NOT_FOUND, f"No console page at /console/{path}", http_status=404
    )


for _module_router in (
    _static,
    auth.router,
    home.router,
    customers.router,
    invoices.router,
    billing_actions.router,
    anomaly_pages.router,
    webhooks.router,
    audit_log.router,
    simulation.router,
    users.router,
    _fallback,
):
    router.include_router(_module_router)
