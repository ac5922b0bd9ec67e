"""Sign in (a console user, or an API key with a console scope) and sign out."""

from __future__ import annotations

import secrets
from typing import Final

from fastapi import Depends, Form, Request
from starlette.responses import Response

from tallybook.auth.service import verify_secret
from tallybook.console import audit, sessions, users
from tallybook.console.audit import Actor, Outcome
from tallybook.console.errors import ConsoleCode
from tallybook.console.roles import SCOPE_ROLES, role_for_scopes
from tallybook.console.web import (
    ConsoleContext,
    console_router,
    cookie_secure,
    database_of,
    redirect,
    render_page,
    safe_next,
    secret_of,
    signed_in,
)
from tallybook.db import Tx
from tallybook.http.errors import request_id_of
from tallybook.kit.errors import AuthenticationFailed

router = console_router()

SIGN_IN_ACTION: Final = "console.sign_in"
SIGN_OUT_ACTION: Final = "console.sign_out"
ATTEMPTED_NAME_LENGTH_MAX: Final = 200


def _browser_nonce(request: Request) -> tuple[str, bool]:
    """The sign-in cookie's value, and whether it must be (re)set."""
    nonce = request.cookies.get(sessions.SIGN_IN_COOKIE_NAME)
    if nonce and 16 <= len(nonce) <= 64:
        return nonce, False
    return secrets.token_urlsafe(24), True


def _sign_in_page(
    request: Request,
    *,
    error: str | None = None,
    status_code: int = 200,
    email: str = "",
    next_path: str | None = None,
) -> Response:
    nonce, fresh = _browser_nonce(request)
    response = render_page(
        request,
        "sign_in.html",
        status_code=status_code,
        error=error,
        email=email,
        next=safe_next(next_path or request.query_params.get("next")),
        sign_in_token=sessions.sign_in_form_token(secret_of(request), nonce),
        scope_roles=SCOPE_ROLES,
    )
    if fresh:
        response.set_cookie(
            sessions.SIGN_IN_COOKIE_NAME,
            nonce,
            max_age=3600,
            path=sessions.COOKIE_PATH,
            httponly=True,
            samesite="lax",
            secure=cookie_secure(request),
        )
    return response


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    return _sign_in_page(request)


def _record_sign_in(
    tx: Tx,
    actor: Actor,
    outcome: Outcome,
    *,
    session_id: str | None,
    code: str | None = None,
    message: str | None = None,
) -> None:
    audit.record(
        tx,
        actor=actor,
        action=SIGN_IN_ACTION,
        object_type="console_session",
        object_id=session_id,
        reason="",
        outcome=outcome,
        error_code=code,
        message=message,
    )


@router.post("/sign-in")
def sign_in(
    request: Request,
    email: str = Form(""),
    password: str = Form(""),
    api_key: str = Form(""),
    next: str = Form("/console"),
    sign_in_token: str = Form(""),
) -> Response:
    db = database_of(request)
    secret = secret_of(request)
    nonce = request.cookies.get(sessions.SIGN_IN_COOKIE_NAME) or ""
    if not nonce or not sessions.tokens_match(
        sessions.sign_in_form_token(secret, nonce), sign_in_token
    ):
        return _sign_in_page(
            request,
            error="The sign-in form expired. Please try again.",
            status_code=400,
            email=email,
            next_path=next,
        )
    client = request.client.host if request.client else None
    agent = request.headers.get("user-agent")
    token: str | None = None
    error: str | None = None
    with db.transaction(actor="system:console", request_id=request_id_of(request)) as tx:
        if api_key.strip():
            token, error = _sign_in_with_key(tx, api_key.strip(), client, agent)
        else:
            token, error = _sign_in_with_password(tx, email, password, client, agent)
    if token is None:
        return _sign_in_page(request, error=error, status_code=401, email=email, next_path=next)
    response = redirect(safe_next(next))
    response.set_cookie(
        sessions.COOKIE_NAME,
        sessions.sign_token(secret, token),
        max_age=sessions.SESSION_HOURS_MAX * 3600,
        path=sessions.COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request),
    )
    return response


def _sign_in_with_password(
    tx: Tx, email: str, password: str, client: str | None, agent: str | None
) -> tuple[str | None, str | None]:
    attempted = email.strip().lower()[:ATTEMPTED_NAME_LENGTH_MAX]
    try:
        user = users.authenticate(tx, email, password)
    except AuthenticationFailed as failure:
        known = users.find_by_email(tx, attempted)
        actor = Actor(
            id=known.id if known else "anonymous",
            name=attempted or "(blank)",
            role=known.role if known else "none",
        )
        _record_sign_in(
            tx, actor, Outcome.REFUSED, session_id=None, code=failure.code, message=failure.message
        )
        return None, failure.message.capitalize() + "."
    session_id, token = sessions.start_session(
        tx, user_id=user.id, remote_addr=client, user_agent=agent
    )
    _record_sign_in(
        tx, Actor(user.id, user.email, user.role), Outcome.SUCCEEDED, session_id=session_id
    )
    return token, None


def _sign_in_with_key(
    tx: Tx, secret: str, client: str | None, agent: str | None
) -> tuple[str | None, str | None]:
    try:
        caller = verify_secret(tx, secret)
    except AuthenticationFailed as failure:
        actor = Actor(id="anonymous", name=secret[:12] + "…", role="none")
        _record_sign_in(
            tx, actor, Outcome.REFUSED, session_id=None, code=failure.code, message=failure.message
        )
        return None, "That API key is not valid (or was revoked)."
    role = role_for_scopes(caller.scopes)
    if role is None:
        message = "That API key has no console scope (console:read, console:write or admin)."
        _record_sign_in(
            tx,
            Actor(caller.id, caller.name, "none"),
            Outcome.REFUSED,
            session_id=None,
            code=ConsoleCode.SIGN_IN_FAILED,
            message=message,
        )
        return None, message
    session_id, token = sessions.start_session(
        tx, api_key_id=caller.id, remote_addr=client, user_agent=agent
    )
    _record_sign_in(
        tx, Actor(caller.id, caller.name, role.value), Outcome.SUCCEEDED, session_id=session_id
    )
    return token, None


@router.post("/sign-out")
def sign_out(ctx: ConsoleContext = Depends(signed_in()), csrf_token: str = Form("")) -> Response:
    if sessions.tokens_match(ctx.csrf_token, csrf_token):
        with ctx.db.transaction(actor=ctx.identity.actor, request_id=ctx.request_id) as tx:
            sessions.end_session(tx, ctx.identity.session_id)
            actor = Actor(ctx.identity.actor, ctx.identity.actor_name, ctx.identity.role.value)
            audit.record(
                tx,
                actor=actor,
                action=SIGN_OUT_ACTION,
                object_type="console_session",
                object_id=ctx.identity.session_id,
                reason="",
                outcome=Outcome.SUCCEEDED,
            )
    response = redirect("/console/sign-in")
    response.delete_cookie(sessions.COOKIE_NAME, path=sessions.COOKIE_PATH)
    return response
