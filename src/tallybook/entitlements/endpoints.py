"""HTTP routes of the entitlements domain: the check (the hot path), a customer's
entitlements, overrides, reservations, spend limits and the alerts fired. Scopes
``entitlements:read`` / ``entitlements:write``.

``POST /v1/entitlements/check`` reads its raw body with msgspec and renders a plain dict with
orjson (the pydantic layers cost more than the check itself); its schema is declared by hand.
It is a read: it never takes an ``Idempotency-Key`` and writes nothing, except the first time
a process sees an alert due (a limit refused, a spend threshold reached), which it records in
a short transaction of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Scope

from tallybook.db import Database, Tx
from tallybook.entitlements import alerts, check, overrides, repository, reservations, spend
from tallybook.entitlements.domain import Policies
from tallybook.entitlements.errors import EntitlementCode
from tallybook.entitlements.fast import fast_check, fast_check_async
from tallybook.entitlements.schemas import (
    AlertOut,
    EntitlementCheckOut,
    OverrideBody,
    OverrideOut,
    ReservationBody,
    ReservationOut,
    SettleBody,
    SpendLimitBody,
    SpendLimitOut,
    check_request_openapi,
    check_wire,
    decode_check,
)
from tallybook.entitlements.settings import policies_from
from tallybook.http.edge import (
    Edge,
    Reply,
    authenticate,
    cached_caller,
    make_router,
    page_params,
    require,
)
from tallybook.http.errors import ERROR_RESPONSES
from tallybook.http.middleware import Lane
from tallybook.http.responses import ListEnvelope, list_envelope, render_json
from tallybook.kit.errors import (
    AuthenticationFailed,
    CommonCode,
    Conflict,
    NotFound,
    TallybookError,
)
from tallybook.kit.pagination import Page, PageRequest

READ = require("entitlements:read")
WRITE = require("entitlements:write")

router = make_router("/v1/entitlements", tags=["entitlements"])
customer_router = make_router("/v1/customers", tags=["entitlements"])


# The check -----------------------------------------------------------------------------------


def _check(
    db: Database, actor: str, request_id: str | None, body: bytes, policies: Policies
) -> bytes:
    """The documented route's work, on a worker thread (the lane below answers in serving)."""
    decoded = decode_check(body)
    result = fast_check(
        db,
        decoded.customer,
        decoded.feature,
        quantity=decoded.quantity,
        policies=policies,
        actor=actor,
        request_id=request_id,
    )
    alerts.fire_for_check(db, result)
    return render_json(check_wire(result))


async def _check_async(state: Any, actor: str, request_id: str, body: bytes) -> bytes:
    decoded = decode_check(body)
    db: Database = state.db
    result = await fast_check_async(
        db,
        getattr(state, "hot_reads", None),
        decoded.customer,
        decoded.feature,
        quantity=decoded.quantity,
        policies=_policies(state),
        actor=actor,
        request_id=request_id,
        mirror=getattr(state, "entitlements_mirror", None),
    )
    due = alerts.unfired(result)
    if due:
        await asyncio.to_thread(alerts.fire, db, due)
    return render_json(check_wire(result))


#: What a lane runs once the caller holds ``entitlements:read``: (app state, actor, request
#: id, raw body) → JSON payload.
LaneWork = Callable[[Any, str, str, bytes], Awaitable[bytes]]


class CheckLane:
    """``POST /v1/entitlements/check`` as a lane of the edge (``http.middleware``): answered
    before FastAPI routes anything.

    The check is the hottest read of the API; FastAPI's routing (every route's pattern tried
    in turn), middleware stack, dependency injection and thread hop cost several times what
    the check itself costs (profiled). The lane does the same things by hand, on the event
    loop: the bearer key through the edge's cache (a miss is verified on a worker thread), the
    ``entitlements:read`` scope, the raw body decoded by msgspec, the check's statements on
    the hot-read pool (``db.hot``; a worker thread without it), errors in the one error shape.
    The documented route below (same path, same behaviour) is what OpenAPI shows.
    """

    def __init__(self, state: Any, work: LaneWork | None = None) -> None:
        self.state = state
        #: The check; the benchmark's baseline swaps in a primary-key read.
        self.work = work or _check_async

    async def __call__(self, scope: Scope, body: bytes, request_id: str) -> tuple[int, bytes]:
        try:
            secret = _bearer(scope)
            caller = cached_caller(secret)
            if caller is None:
                caller = await asyncio.to_thread(authenticate, self.state.db, secret)
            caller.require("entitlements:read")
            return 200, await self.work(self.state, caller.actor, request_id, body)
        except TallybookError as error:
            return error.status, render_json(error.to_wire(request_id))


def _bearer(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            text: str = bytes(value).decode("latin-1")
            scheme, _, secret = text.partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
            break
    raise AuthenticationFailed(
        CommonCode.API_KEY_MISSING, "pass an API key as 'Authorization: Bearer tbk_…'"
    )


def _policies(state: Any) -> Policies:
    cached = getattr(state, "entitlement_policies", None)
    if cached is None:
        cached = policies_from(getattr(state, "settings", None))
        state.entitlement_policies = cached
    assert isinstance(cached, Policies)
    return cached


def policies_of(request: Request) -> Policies:
    return _policies(request.app.state)


def lanes(state: Any) -> dict[str, Lane]:
    """The lanes of this domain, for the edge (``api.app``)."""
    return {f"{router.prefix}/check": CheckLane(state)}


@router.post(
    "/check",
    summary="May this customer do this now?",
    response_model=EntitlementCheckOut,
    responses=ERROR_RESPONSES,
    openapi_extra=check_request_openapi(),
)
async def check_entitlement(request: Request, edge: Edge = Depends(READ)) -> Response:
    """Allowed or not, with a named `reason`, the limit, usage this period (read fresh: usage
    ingested before this call counts), open reservations, what remains and when it resets.
    `quantity` asks about that many more units. Hard limits refuse (`limit_exceeded`); soft
    limits allow and flag (`soft_limit_exceeded`); a spend limit refuses usage whose price would
    pass it (`spend_limit_exceeded`)."""
    body = await request.body()
    payload = await run_in_threadpool(
        _check, edge.db, edge.caller.actor, edge.request_id, body, policies_of(request)
    )
    return Response(payload, media_type="application/json")


@customer_router.get(
    "/{customer}/entitlements",
    response_model=ListEnvelope[EntitlementCheckOut],
    responses=ERROR_RESPONSES,
)
def customer_entitlements(customer: str, request: Request, edge: Edge = Depends(READ)) -> Response:
    """Every feature the customer holds from a plan or an override, each checked."""

    def run(tx: Tx) -> dict[str, Any]:
        results = check.check_all(tx, customer, policies=policies_of(request))
        page: Page[Any] = Page(data=results, has_more=False)
        return list_envelope(
            page, f"/v1/customers/{customer}/entitlements", [check_wire(r) for r in results]
        )

    return edge.read(run)


# Overrides -----------------------------------------------------------------------------------


@router.post("/overrides", response_model=OverrideOut, responses=ERROR_RESPONSES)
def create_override(body: OverrideBody, edge: Edge = Depends(WRITE)) -> Response:
    """A per-customer value for one feature, over every plan, until `expires_at` (or revoked).
    Replaces the customer's previous override of the feature."""
    return edge.write(
        lambda tx: OverrideOut.of(overrides.create_override(tx, body.to_input())),
        fingerprint=body,
    )


@router.get("/overrides", response_model=ListEnvelope[OverrideOut], responses=ERROR_RESPONSES)
def list_overrides(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    customer: str | None = Query(None),
    feature: str | None = Query(None),
    status: str | None = Query(None, description="active, revoked or replaced"),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        found = overrides.list_overrides(
            tx, page, customer=customer, feature=feature, status=status
        )
        return list_envelope(
            found, "/v1/entitlements/overrides", [OverrideOut.of(o) for o in found.data]
        )

    return edge.read(run)


@router.get("/overrides/{override_id}", response_model=OverrideOut, responses=ERROR_RESPONSES)
def get_override(override_id: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: OverrideOut.of(overrides.get_override(tx, override_id)))


@router.post(
    "/overrides/{override_id}/revoke", response_model=OverrideOut, responses=ERROR_RESPONSES
)
def revoke_override(override_id: str, edge: Edge = Depends(WRITE)) -> Response:
    """End it now: the plans apply again on the next check."""
    return edge.write(lambda tx: OverrideOut.of(overrides.revoke_override(tx, override_id)))


# Reservations --------------------------------------------------------------------------------


@router.post("/reservations", response_model=ReservationOut, responses=ERROR_RESPONSES)
def create_reservation(
    body: ReservationBody, request: Request, edge: Edge = Depends(WRITE)
) -> Response:
    """Set units of a metered feature and/or money from credit grants aside before an expensive
    request runs. Parallel reservations never jointly pass a hard limit or a grant's balance.
    Refused by the limits: 409 `reservation_refused` with the check in `details`."""

    def run(tx: Tx) -> Any:
        outcome = reservations.reserve(tx, body.to_input(), policies=policies_of(request))
        if outcome.refused:
            assert outcome.check is not None
            return Reply(
                Conflict(
                    EntitlementCode.RESERVATION_REFUSED,
                    f"refused: {outcome.check.reason}",
                    param="quantity",
                    details={"check": check_wire(outcome.check)},
                )
            )
        assert outcome.reservation is not None
        return ReservationOut.of(outcome.reservation)

    return edge.write(run, fingerprint=body)


@router.get("/reservations", response_model=ListEnvelope[ReservationOut], responses=ERROR_RESPONSES)
def list_reservations(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    customer: str | None = Query(None),
    status: str | None = Query(None, description="open, settled, released or expired"),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        found = reservations.list_reservations(tx, page, customer=customer, status=status)
        return list_envelope(
            found, "/v1/entitlements/reservations", [ReservationOut.of(r) for r in found.data]
        )

    return edge.read(run)


@router.get(
    "/reservations/{reservation_id}", response_model=ReservationOut, responses=ERROR_RESPONSES
)
def get_reservation(reservation_id: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: ReservationOut.of(reservations.get_reservation(tx, reservation_id)))


@router.post(
    "/reservations/{reservation_id}/settle",
    response_model=ReservationOut,
    responses=ERROR_RESPONSES,
)
def settle_reservation(
    reservation_id: str, body: SettleBody, edge: Edge = Depends(WRITE)
) -> Response:
    """Record what the work used (at most what was reserved; default all): usage through
    metering, money posted from the holds; the rest is released."""
    return edge.write(
        lambda tx: ReservationOut.of(
            reservations.settle(
                tx, reservation_id, quantity=body.quantity, amount_minor=body.amount_minor
            )
        ),
        fingerprint=body,
    )


@router.post(
    "/reservations/{reservation_id}/release",
    response_model=ReservationOut,
    responses=ERROR_RESPONSES,
)
def release_reservation(reservation_id: str, edge: Edge = Depends(WRITE)) -> Response:
    """Give it all back (the work did not run)."""
    return edge.write(lambda tx: ReservationOut.of(reservations.release(tx, reservation_id)))


# Spend limits and alerts ---------------------------------------------------------------------


@customer_router.get(
    "/{customer}/spend_limit", response_model=SpendLimitOut, responses=ERROR_RESPONSES
)
def get_spend_limit(customer: str, edge: Edge = Depends(READ)) -> Response:
    def run(tx: Tx) -> SpendLimitOut:
        found = check.resolve_customer(tx, customer)
        row = repository.spend_limit(tx, found.id)
        if row is None:
            raise NotFound("spend limit", customer, param="customer")
        return SpendLimitOut.of(row)

    return edge.read(run)


@customer_router.post(
    "/{customer}/spend_limit", response_model=SpendLimitOut, responses=ERROR_RESPONSES
)
def set_spend_limit(customer: str, body: SpendLimitBody, edge: Edge = Depends(WRITE)) -> Response:
    """Set (or change) the customer's maximum on-demand spend per billing period, and the
    percentages at which `limit.threshold_reached` fires."""

    def run(tx: Tx) -> SpendLimitOut:
        found = check.resolve_customer(tx, customer)
        data = spend.SpendLimitInput(
            amount_minor=body.amount_minor,
            currency=body.currency,
            thresholds=body.thresholds,
            reason=body.reason,
        )
        return SpendLimitOut.of(spend.set_spend_limit(tx, found, data))

    return edge.write(run, fingerprint=body)


@customer_router.delete(
    "/{customer}/spend_limit", response_model=SpendLimitOut, responses=ERROR_RESPONSES
)
def remove_spend_limit(customer: str, edge: Edge = Depends(WRITE)) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        found = check.resolve_customer(tx, customer)
        removed = spend.remove_spend_limit(tx, found)
        return {"object": "spend_limit", "customer": found.id, "deleted": removed}

    return edge.write(run)


@router.get("/alerts", response_model=ListEnvelope[AlertOut], responses=ERROR_RESPONSES)
def list_alerts(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    customer: str | None = Query(None),
) -> Response:
    """Alerts fired: spend thresholds reached and limits exceeded (each once per period)."""

    def run(tx: Tx) -> dict[str, Any]:
        customer_id = check.resolve_customer(tx, customer).id if customer else None
        rows = repository.alerts_page(tx, page, customer_id=customer_id)
        found = Page(data=rows[: page.limit], has_more=len(rows) > page.limit)
        return list_envelope(found, "/v1/entitlements/alerts", [AlertOut.of(a) for a in found.data])

    return edge.read(run)


routers: list[APIRouter] = [router, customer_router]
