"""Every console action (a POST that changes something) goes through :func:`run_action`.

It checks, in order:

1. the form's CSRF token (refusals are recorded),
2. the role against the permission table (refusals are recorded),
3. the one-time action token: a second submit of the same form finds the first one's audit
   entry and does nothing again,
4. a non-empty reason,

then calls the domain service and writes the audit entry **in the same transaction**. A domain
error rolls the change back (to a savepoint) and is recorded as ``failed``. A route then answers
with :func:`respond`: back to the page with the outcome shown (succeeded or failed), or a 403
page (refused).

A route is a few lines::

    @router.post("/webhooks/{endpoint_id}/enable")
    def enable(endpoint_id: str, ctx: ConsoleContext = Depends(signed_in()),
               form: ActionForm = Depends(action_form)) -> Response:
        outcome = run_action(
            ctx, form, action="webhook_endpoint.enable",
            object_type="webhook_endpoint", object_id=endpoint_id,
            perform=lambda tx: Done(f"Re-enabled {service.enable_endpoint(tx, endpoint_id).url}"),
        )
        return respond(ctx, outcome, back="/console/webhooks")
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import Form
from sqlalchemy import text
from starlette.responses import Response

from tallybook.console import anomalies, audit
from tallybook.console.audit import Actor, Outcome
from tallybook.console.errors import ConsoleCode
from tallybook.console.roles import PERMISSIONS, roles_for
from tallybook.console.sessions import tokens_match
from tallybook.console.web import ConsoleContext, redirect, render_page
from tallybook.db import Tx
from tallybook.kit.errors import (
    CommonCode,
    IdempotencyError,
    InvalidRequest,
    PermissionDenied,
    TallybookError,
)
from tallybook.kit.invariant import invariant
from tallybook.observability.metrics import counter

log = logging.getLogger(__name__)

ACTION_TOKEN_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
REASON_LENGTH_MAX: Final = audit.REASON_LENGTH_MAX

ACTIONS = counter(
    "tallybook_console_actions_total",
    "Console actions by action and outcome",
    ("action", "outcome"),
)


@dataclass(frozen=True, slots=True)
class ActionForm:
    """The fields every action form carries (see the ``action_form`` template macro)."""

    reason: str
    csrf_token: str
    action_token: str


def action_form(
    reason: str = Form(""), csrf_token: str = Form(""), action_token: str = Form("")
) -> ActionForm:
    return ActionForm(reason=reason.strip(), csrf_token=csrf_token, action_token=action_token)


@dataclass(frozen=True, slots=True)
class Done:
    """What a successful action tells the person, and what the audit entry should keep."""

    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    entry_id: str
    outcome: Outcome
    message: str
    error_code: str | None = None
    #: True when this was a repeat of an already submitted form (nothing was done again).
    repeated: bool = False


def _actor(ctx: ConsoleContext) -> Actor:
    return Actor(id=ctx.identity.actor, name=ctx.identity.actor_name, role=ctx.identity.role.value)


def run_action(
    ctx: ConsoleContext,
    form: ActionForm,
    *,
    action: str,
    object_type: str,
    object_id: str | None,
    perform: Callable[[Tx], Done],
    customer_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> ActionOutcome:
    invariant(action in PERMISSIONS, f"console action {action!r} is not in the permission table")
    base: dict[str, Any] = {
        "actor": _actor(ctx),
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "customer_id": customer_id,
    }
    if not tokens_match(ctx.csrf_token, form.csrf_token):
        return _refuse(
            ctx,
            base,
            form,
            ConsoleCode.CSRF_INVALID,
            "the form's security token is missing or wrong; reload the page",
        )
    if not ctx.can(action):
        allowed = " or ".join(roles_for(action)) or "no role"
        return _refuse(
            ctx,
            base,
            form,
            ConsoleCode.ACTION_REFUSED,
            f"{action} needs the {allowed} role; you are {ctx.identity.role}",
        )
    if not ACTION_TOKEN_PATTERN.match(form.action_token):
        raise InvalidRequest(
            ConsoleCode.ACTION_TOKEN_INVALID,
            "the form has no valid action token; reload the page",
            param="action_token",
        )
    if not form.reason:
        raise InvalidRequest(
            ConsoleCode.REASON_MISSING, "give a reason: it is kept in the audit log", param="reason"
        )
    if len(form.reason) > REASON_LENGTH_MAX:
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID,
            f"a reason has at most {REASON_LENGTH_MAX} characters",
            param="reason",
        )
    try:
        outcome = _perform(ctx, form, base, perform, details or {})
    except TallybookError:
        raise  # a named refusal of the form itself (a reused token): nothing was attempted
    except Exception as crash:
        # Nothing was changed (the transaction rolled back), but the attempt is still recorded;
        # without the token, so the same form may be submitted again.
        with ctx.db.transaction(actor=ctx.identity.actor, request_id=ctx.request_id) as tx:
            audit.record(
                tx,
                **base,
                reason=form.reason,
                outcome=Outcome.FAILED,
                error_code="internal_error",
                message=type(crash).__name__,
                details={**(details or {}), "action_token": form.action_token},
            )
        ACTIONS.labels(action, "crashed").inc()
        raise
    anomalies.forget_badges()
    return outcome


def _refuse(
    ctx: ConsoleContext, base: dict[str, Any], form: ActionForm, code: str, message: str
) -> ActionOutcome:
    # Every refused attempt is its own entry (no token: repeats are recorded too).
    with ctx.db.transaction(actor=ctx.identity.actor, request_id=ctx.request_id) as tx:
        entry = audit.record(
            tx,
            **base,
            reason=form.reason[:REASON_LENGTH_MAX],
            outcome=Outcome.REFUSED,
            error_code=code,
            message=message,
            details={"action_token": form.action_token[:64]},
        )
        entry_id = entry.id
    ACTIONS.labels(base["action"], Outcome.REFUSED.value).inc()
    log.warning(
        "console action refused",
        extra={"action": base["action"], "code": code, "actor": ctx.identity.actor},
    )
    return ActionOutcome(entry_id, Outcome.REFUSED, message, error_code=code)


def _perform(
    ctx: ConsoleContext,
    form: ActionForm,
    base: dict[str, Any],
    perform: Callable[[Tx], Done],
    details: Mapping[str, Any],
) -> ActionOutcome:
    with ctx.db.transaction(actor=ctx.identity.actor, request_id=ctx.request_id) as tx:
        if tx.is_postgres:
            # Two submits of one form wait for each other here; the second then finds the
            # first one's entry. (SQLite write transactions are serial already.)
            tx.session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:token, 0))"),
                {"token": form.action_token},
            )
        earlier = audit.by_token(tx, form.action_token)
        if earlier is not None:
            if (earlier.actor, earlier.action, earlier.object_id) != (
                base["actor"].id,
                base["action"],
                base["object_id"],
            ):
                raise IdempotencyError(
                    ConsoleCode.ACTION_TOKEN_REUSED,
                    "this form token belongs to another action; reload the page",
                    param="action_token",
                )
            return ActionOutcome(
                earlier.id,
                Outcome(earlier.outcome),
                earlier.message or "",
                error_code=earlier.error_code,
                repeated=True,
            )
        savepoint = tx.session.begin_nested()
        try:
            done = perform(tx)
            savepoint.commit()
        except TallybookError as error:
            savepoint.rollback()
            entry = audit.record(
                tx,
                **base,
                reason=form.reason,
                outcome=Outcome.FAILED,
                error_code=error.code,
                message=error.message,
                action_token=form.action_token,
                details=details,
            )
            tx.session.flush()
            ACTIONS.labels(base["action"], Outcome.FAILED.value).inc()
            return ActionOutcome(entry.id, Outcome.FAILED, error.message, error_code=error.code)
        entry = audit.record(
            tx,
            **base,
            reason=form.reason,
            outcome=Outcome.SUCCEEDED,
            message=done.message,
            action_token=form.action_token,
            details={**details, **done.details},
        )
        tx.session.flush()
        ACTIONS.labels(base["action"], Outcome.SUCCEEDED.value).inc()
        log.info(
            "console action",
            extra={"action": base["action"], "entry": entry.id, "actor": ctx.identity.actor},
        )
        return ActionOutcome(entry.id, Outcome.SUCCEEDED, done.message)


def with_done(url: str, entry_id: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "done"] + [("done", entry_id)]
    return urlunsplit(("", "", parts.path, urlencode(query), ""))


def respond(ctx: ConsoleContext, outcome: ActionOutcome, *, back: str) -> Response:
    """Succeeded or failed: back to ``back`` where the outcome is shown (Post/Redirect/Get).
    Refused: a 403 page naming the refusal and its audit entry."""
    if outcome.outcome == Outcome.REFUSED:
        error = PermissionDenied(outcome.error_code or ConsoleCode.ACTION_REFUSED, outcome.message)
        return render_page(
            ctx.request,
            "error.html",
            ctx=ctx,
            status_code=403,
            error=error,
            back=back,
            audit_entry=outcome.entry_id,
        )
    return redirect(with_done(back, outcome.entry_id))
