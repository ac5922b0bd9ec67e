"""HTTP routes of subscriptions: ``/v1/subscriptions`` (create, change, cancel, resume, list by
customer) and bulk migrations between plan versions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from tallybook.catalog.domain import ChangePolicy
from tallybook.customers import service as customers
from tallybook.db import Tx
from tallybook.http.edge import Edge, make_router, page_params, require
from tallybook.http.errors import ERROR_RESPONSES
from tallybook.http.responses import ListEnvelope, list_envelope
from tallybook.kit.errors import NotFound
from tallybook.kit.pagination import Page, PageRequest
from tallybook.subscriptions import service
from tallybook.subscriptions.schemas import (
    ChangeOut,
    ChargeOut,
    MigrationBody,
    MigrationOut,
    PeriodOut,
    PhaseOut,
    PreviewBody,
    SubscriptionCancelBody,
    SubscriptionChangeBody,
    SubscriptionCreateBody,
    SubscriptionOut,
    SubscriptionUpdateBody,
    SubscriptionUpdateOut,
)

READ = require("subscriptions:read")
WRITE = require("subscriptions:write")

router = make_router("/v1/subscriptions", tags=["subscriptions"])


@router.post("", response_model=SubscriptionUpdateOut, responses=ERROR_RESPONSES)
def create_subscription(body: SubscriptionCreateBody, edge: Edge = Depends(WRITE)) -> Response:
    """Subscribe a customer to a published plan version, starting now. The answer lists the
    charges recorded for the first period (none during a trial)."""

    def run(tx: Tx) -> SubscriptionUpdateOut:
        result = service.create(tx, body.to_request(), preview=body.preview)
        return SubscriptionUpdateOut.of(result, created=True)

    return edge.write(run, fingerprint=body)


# Declared before the "/{subscription_id}" routes so that "migrate" is never read as an id.
@router.post("/migrate", response_model=MigrationOut, responses=ERROR_RESPONSES)
def migrate(body: MigrationBody, edge: Edge = Depends(WRITE)) -> Response:
    """Move subscriptions from one version of a plan to another (at period end by default),
    up to `limit` per call; continue with `starting_after` while `has_more`."""

    def run(tx: Tx) -> MigrationOut:
        outcome = service.migrate(
            tx,
            body.from_plan_version,
            body.to_plan_version,
            policy=ChangePolicy(body.policy),
            after_id=body.starting_after,
            limit=body.limit,
        )
        return MigrationOut.of(outcome)

    return edge.write(run, fingerprint=body)


@router.get("", response_model=ListEnvelope[SubscriptionOut], responses=ERROR_RESPONSES)
def list_subscriptions(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    customer: str | None = Query(None, description="Customer id or external id"),
    status: str | None = Query(None),
    plan_version: str | None = Query(None),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        customer_id = None
        if customer is not None:
            try:
                customer_id = customers.resolve(tx, customer).id
            except NotFound:
                raise NotFound("customer", customer, param="customer") from None
        result = service.list_page(
            tx, page, customer_id=customer_id, status=status, plan_version_id=plan_version
        )
        items = [SubscriptionOut.of(s) for s in result.data]
        return list_envelope(result, "/v1/subscriptions", items)

    return edge.read(run)


@router.get("/{subscription_id}", response_model=SubscriptionOut, responses=ERROR_RESPONSES)
def get_subscription(subscription_id: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: SubscriptionOut.of(service.view(tx, subscription_id)))


@router.post("/{subscription_id}", response_model=SubscriptionOut, responses=ERROR_RESPONSES)
def update_subscription(
    subscription_id: str, body: SubscriptionUpdateBody, edge: Edge = Depends(WRITE)
) -> Response:
    """Update metadata. Plans change through `/change`, the end through `/cancel`."""
    return edge.write(
        lambda tx: SubscriptionOut.of(service.update_metadata(tx, subscription_id, body.metadata)),
        fingerprint=body,
    )


@router.post(
    "/{subscription_id}/change", response_model=SubscriptionUpdateOut, responses=ERROR_RESPONSES
)
def change_subscription(
    subscription_id: str, body: SubscriptionChangeBody, edge: Edge = Depends(WRITE)
) -> Response:
    """Move to another plan version: now with proration, now without, or at period end, by
    the current version's policy for the direction (upgrade, downgrade, same price) unless
    `policy` says otherwise. With `preview: true` nothing is written and the answer holds
    exactly the lines that the same call without it would record."""

    def run(tx: Tx) -> SubscriptionUpdateOut:
        result = service.change_plan(tx, subscription_id, body.to_request(), preview=body.preview)
        return SubscriptionUpdateOut.of(result)

    return edge.write(run, fingerprint=body)


@router.post(
    "/{subscription_id}/cancel", response_model=SubscriptionUpdateOut, responses=ERROR_RESPONSES
)
def cancel_subscription(
    subscription_id: str, body: SubscriptionCancelBody, edge: Edge = Depends(WRITE)
) -> Response:
    """At period end (revocable with `resume` until then) or now, crediting the unused
    prepaid part or not."""

    def run(tx: Tx) -> SubscriptionUpdateOut:
        result = service.cancel(tx, subscription_id, body.to_request(), preview=body.preview)
        return SubscriptionUpdateOut.of(result)

    return edge.write(run, fingerprint=body)


@router.post(
    "/{subscription_id}/resume", response_model=SubscriptionUpdateOut, responses=ERROR_RESPONSES
)
def resume_subscription(
    subscription_id: str, body: PreviewBody | None = None, edge: Edge = Depends(WRITE)
) -> Response:
    """Revoke a cancellation scheduled for period end, or resume a paused subscription."""
    preview = body.preview if body is not None else False

    def run(tx: Tx) -> SubscriptionUpdateOut:
        return SubscriptionUpdateOut.of(service.resume(tx, subscription_id, preview=preview))

    return edge.write(run, fingerprint=body)


@router.post(
    "/{subscription_id}/end_trial",
    response_model=SubscriptionUpdateOut,
    responses=ERROR_RESPONSES,
)
def end_trial(
    subscription_id: str, body: PreviewBody | None = None, edge: Edge = Depends(WRITE)
) -> Response:
    """Convert a trialing subscription now: its first period starts and is charged."""
    preview = body.preview if body is not None else False

    def run(tx: Tx) -> SubscriptionUpdateOut:
        return SubscriptionUpdateOut.of(service.end_trial(tx, subscription_id, preview=preview))

    return edge.write(run, fingerprint=body)


@router.post(
    "/{subscription_id}/scheduled_change/cancel",
    response_model=SubscriptionOut,
    responses=ERROR_RESPONSES,
)
def cancel_scheduled_change(subscription_id: str, edge: Edge = Depends(WRITE)) -> Response:
    """Withdraw the plan change scheduled for period end."""
    return edge.write(
        lambda tx: SubscriptionOut.of(service.cancel_scheduled_change(tx, subscription_id))
    )


@router.get(
    "/{subscription_id}/phases", response_model=ListEnvelope[PhaseOut], responses=ERROR_RESPONSES
)
def list_phases(subscription_id: str, edge: Edge = Depends(READ)) -> Response:
    """The subscription's history: each span on one plan version, oldest first."""

    def run(tx: Tx) -> dict[str, Any]:
        items = [PhaseOut.of(p) for p in service.phases(tx, subscription_id)]
        return list_envelope(
            Page(items, False), f"/v1/subscriptions/{subscription_id}/phases", items
        )

    return edge.read(run)


@router.get(
    "/{subscription_id}/periods",
    response_model=ListEnvelope[PeriodOut],
    responses=ERROR_RESPONSES,
)
def list_periods(subscription_id: str, edge: Edge = Depends(READ)) -> Response:
    """Billing periods as they happened (trial, short first period, cut short), oldest first."""

    def run(tx: Tx) -> dict[str, Any]:
        items = [PeriodOut.of(p) for p in service.periods(tx, subscription_id)]
        url = f"/v1/subscriptions/{subscription_id}/periods"
        return list_envelope(Page(items, False), url, items)

    return edge.read(run)


@router.get(
    "/{subscription_id}/changes",
    response_model=ListEnvelope[ChangeOut],
    responses=ERROR_RESPONSES,
)
def list_changes(subscription_id: str, edge: Edge = Depends(READ)) -> Response:
    """Plan changes and cancellations, applied, scheduled or withdrawn, newest first."""

    def run(tx: Tx) -> dict[str, Any]:
        items = [ChangeOut.of(c) for c in service.changes(tx, subscription_id)]
        url = f"/v1/subscriptions/{subscription_id}/changes"
        return list_envelope(Page(items, False), url, items)

    return edge.read(run)


@router.get(
    "/{subscription_id}/charges",
    response_model=ListEnvelope[ChargeOut],
    responses=ERROR_RESPONSES,
)
def list_charges(subscription_id: str, edge: Edge = Depends(READ)) -> Response:
    """In-advance fees and prorations, pending or invoiced, by service start."""

    def run(tx: Tx) -> dict[str, Any]:
        items = [ChargeOut.of(c) for c in service.charges(tx, subscription_id)]
        url = f"/v1/subscriptions/{subscription_id}/charges"
        return list_envelope(Page(items, False), url, items)

    return edge.read(run)


routers: list[APIRouter] = [router]
