"""The console's request plumbing: who is signed in, what role a page needs, rendering, and
turning errors into HTML pages.

A page declares the least role that may read it::

    @router.get("/customers/{customer_id}")
    def customer_page(customer_id: str, ctx: ConsoleContext = Depends(signed_in(Role.VIEWER))):
        with ctx.read() as tx:
            ...
        return ctx.render("customers/show.html", customer=...)

Routers are made with :func:`console_router`; its route class renders every expected error as
an HTML page (a redirect to sign-in for a missing session, 403 for a role too low, 404…), and
adds the console's security headers to every response.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tallybook.console import anomalies, audit, sessions
from tallybook.console.errors import ConsoleCode
from tallybook.console.roles import Role, may_run, roles_for
from tallybook.console.sessions import Identity
from tallybook.console.templating import ENV
from tallybook.db import Database, Tx
from tallybook.http.errors import request_id_of
from tallybook.kit.errors import AuthenticationFailed, PermissionDenied, TallybookError
from tallybook.kit.settings import Settings

log = logging.getLogger(__name__)

SECURITY_HEADERS: Final = {
    # Inline SVG is markup, not script, so a strict policy costs the console nothing.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
NO_STORE: Final = {"Cache-Control": "no-store"}
SIGN_IN_PATH: Final = "/console/sign-in"
SECURE_COOKIES_ENV: Final = "TALLYBOOK_CONSOLE_SECURE_COOKIES"
HOME_PATH: Final = "/console"


class SignInRequired(Exception):
    """No live session: the route class redirects to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def database_of(request: Request) -> Database:
    db = request.app.state.db
    assert isinstance(db, Database)
    return db


def secret_of(request: Request) -> bytes:
    settings = getattr(request.app.state, "settings", None)
    configured = settings.extra.get(sessions.SECRET_ENV) if isinstance(settings, Settings) else None
    return sessions.server_secret(database_of(request), configured)


def cookie_secure(request: Request) -> bool:
    """``Secure`` cookies over HTTPS, or always with ``TALLYBOOK_CONSOLE_SECURE_COOKIES=1``
    (behind a proxy that terminates TLS and forwards plain HTTP)."""
    settings = getattr(request.app.state, "settings", None)
    forced = isinstance(settings, Settings) and settings.extra.get(SECURE_COOKIES_ENV) == "1"
    return forced or request.url.scheme == "https"


def safe_next(value: str | None) -> str:
    """Only paths inside the console (no scheme, no host, no ``//``) are followed."""
    if not value or not value.startswith(HOME_PATH):
        return HOME_PATH
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "//" in value or "\\" in value:
        return HOME_PATH
    return value


@dataclass(frozen=True, slots=True)
class ConsoleContext:
    request: Request
    db: Database
    identity: Identity
    secret: bytes
    session_token: str

    @property
    def csrf_token(self) -> str:
        return sessions.csrf_token(self.secret, self.session_token)

    @property
    def request_id(self) -> str | None:
        return request_id_of(self.request)

    @property
    def role(self) -> Role:
        return self.identity.role

    def can(self, action: str) -> bool:
        return may_run(self.identity.role, action)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self.db.read(actor=self.identity.actor, request_id=self.request_id) as tx:
            yield tx

    def render(
        self, template: str, *, tx: Tx | None = None, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        """Render inside the layout. Pass the page's open ``tx`` when the context holds ORM
        objects (they must be read before the transaction ends), so the layout reuses it."""
        return render_page(
            self.request, template, ctx=self, tx=tx, status_code=status_code, **context
        )


def render_page(
    request: Request,
    template: str,
    *,
    ctx: ConsoleContext | None = None,
    tx: Tx | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` inside the layout. Signed in, the layout shows the nav with anomaly
    badges and, for ``?done=aud_…``, the outcome of the action just run."""
    if tx is None:
        db = database_of(request)
        actor = ctx.identity.actor if ctx is not None else "system:console"
        with db.read(actor=actor, request_id=request_id_of(request)) as own_tx:
            return _render(request, template, ctx, own_tx, status_code, context)
    return _render(request, template, ctx, tx, status_code, context)


def _render(
    request: Request,
    template: str,
    ctx: ConsoleContext | None,
    tx: Tx,
    status_code: int,
    context: dict[str, Any],
) -> HTMLResponse:
    notice = None
    badges: list[anomalies.Badge] = []
    if ctx is not None:
        badges = anomalies.badges(tx)
        done = request.query_params.get("done")
        if done:
            entry = audit.get(tx, done)
            if entry is not None and entry.actor == ctx.identity.actor:
                notice = entry
    path = request.url.path
    base: dict[str, Any] = {
        "request": request,
        "identity": ctx.identity if ctx is not None else None,
        "ctx": ctx,
        "now": tx.now(),
        "csrf_token": ctx.csrf_token if ctx is not None else "",
        "new_action_token": new_action_token,
        "can": ctx.can if ctx is not None else (lambda action: False),
        "roles_for": roles_for,
        "badges": badges,
        "anomaly_total": sum(b.count for b in badges),
        "notice": notice,
        "request_id": request_id_of(request),
        "q": request.query_params.get("q", "") if path.startswith("/console/customers") else "",
        "path": path,
        "here": here_of(request),
    }
    base.update(context)
    html = ENV.get_template(template).render(base)
    return HTMLResponse(html, status_code=status_code, headers=NO_STORE)


def new_action_token() -> str:
    """A fresh one-time token for an action form."""
    return secrets.token_urlsafe(18)


def here_of(request: Request) -> str:
    """This page's path and query without one-off parameters (a ``back`` for forms)."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "done"]
    return request.url.path + ("?" + urlencode(query) if query else "")


def signed_in(minimum: Role = Role.VIEWER) -> Callable[[Request], ConsoleContext]:
    """A dependency: the signed-in context, or a redirect to sign in, or 403 below ``minimum``."""

    def dependency(request: Request) -> ConsoleContext:
        db = database_of(request)
        secret = secret_of(request)
        token = sessions.unsign_cookie(secret, request.cookies.get(sessions.COOKIE_NAME))
        identity = None
        if token is not None:
            with db.read(actor="system:console") as tx:
                identity = sessions.resolve(tx, token)
        if identity is None or token is None:
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            raise SignInRequired(target if request.method == "GET" else HOME_PATH)
        ctx = ConsoleContext(
            request=request, db=db, identity=identity, secret=secret, session_token=token
        )
        request.state.console_ctx = ctx
        if not identity.role.at_least(minimum):
            raise PermissionDenied(
                ConsoleCode.ROLE_TOO_LOW,
                f"this page needs the {minimum} role or higher; you are signed in as "
                f"{identity.role}",
            )
        return ctx

    dependency.__name__ = f"signed_in_{minimum}"
    return dependency


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=NO_STORE)


def error_page(request: Request, error: TallybookError) -> HTMLResponse:
    ctx = getattr(request.state, "console_ctx", None)
    return render_page(
        request,
        "error.html",
        ctx=ctx if isinstance(ctx, ConsoleContext) else None,
        status_code=error.status,
        error=error,
        back=request.headers.get("referer"),
    )


class ConsoleRoute(APIRoute):
    """Console routes answer in HTML, including their errors, with security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired as missing:
                response = redirect(f"{SIGN_IN_PATH}?next={quote(missing.next_path, safe='/')}")
            except AuthenticationFailed:
                response = redirect(SIGN_IN_PATH)
            except TallybookError as error:
                response = error_page(request, error)
            except Exception:
                log.exception("console page failed", extra={"path": request.url.path})
                response = error_page(
                    request,
                    TallybookError(
                        "internal_error",
                        "Something went wrong on our side. The request id finds it in the logs.",
                        http_status=500,
                    ),
                )
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return route_handler


def console_router() -> APIRouter:
    return APIRouter(route_class=ConsoleRoute, include_in_schema=False)
