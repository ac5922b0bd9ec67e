"""Outbound webhook endpoints: the list, one endpoint's delivery log, and two audited
actions: re-enable an endpoint (admin) and send a failed delivery again."""

from __future__ import annotations

from typing import Final

from fastapi import Depends, Form
from starlette.responses import Response

from tallybook.console import tables
from tallybook.console.actions import ActionForm, Done, action_form, respond, run_action
from tallybook.console.web import ConsoleContext, console_router, safe_next, signed_in
from tallybook.db import Tx
from tallybook.kit.pagination import PageRequest
from tallybook.webhooks import service
from tallybook.webhooks.models import WebhookEndpoint

router = console_router()

ENDPOINTS_SHOWN_MAX: Final = 100
DELIVERIES_PAGE_SIZE: Final = 50
DELIVERY_STATUSES: Final = (service.PENDING, service.SUCCEEDED, service.FAILED)

ENDPOINT_COLUMNS: Final[list[tables.Column[WebhookEndpoint]]] = [
    tables.Column("url", "URL", value=lambda e: e.url),
    tables.Column("status", "Status", value=lambda e: e.status),
    tables.Column("events", "Event types"),
    tables.Column(
        "failures", "Failures in a row", value=lambda e: e.consecutive_failures, numeric=True
    ),
    tables.Column("created", "Created", value=lambda e: e.created_at),
    tables.Column("action", ""),
]


@router.get("/webhooks")
def endpoints_page(ctx: ConsoleContext = Depends(signed_in())) -> Response:
    with ctx.read() as tx:
        page = service.list_endpoints(tx, PageRequest(limit=ENDPOINTS_SHOWN_MAX))
        table = tables.from_list(
            ctx.request,
            page.data,
            columns=ENDPOINT_COLUMNS,
            default_sort=tables.Sort("status", descending=False),
        )
        return ctx.render("webhooks/index.html", tx=tx, table=table, capped=page.has_more)


@router.get("/webhooks/{endpoint_id}")
def endpoint_page(endpoint_id: str, ctx: ConsoleContext = Depends(signed_in())) -> Response:
    params = ctx.request.query_params
    status = params.get("status") if params.get("status") in DELIVERY_STATUSES else None
    after = params.get("after") or None
    with ctx.read() as tx:
        endpoint = service.get_endpoint(tx, endpoint_id)
        deliveries = service.list_deliveries(
            tx,
            endpoint_id,
            PageRequest(limit=DELIVERIES_PAGE_SIZE, starting_after=after),
            status=status,
        )
        return ctx.render(
            "webhooks/show.html",
            tx=tx,
            endpoint=endpoint,
            deliveries=deliveries.data,
            next_after=deliveries.data[-1].id if deliveries.has_more and deliveries.data else None,
            status=status,
            statuses=DELIVERY_STATUSES,
        )


@router.post("/webhooks/{endpoint_id}/enable")
def enable_endpoint(
    endpoint_id: str,
    ctx: ConsoleContext = Depends(signed_in()),
    form: ActionForm = Depends(action_form),
    back: str = Form("/console/webhooks"),
) -> Response:
    def perform(tx: Tx) -> Done:
        before = service.get_endpoint(tx, endpoint_id)
        previous = {
            "status": before.status,
            "disabled_by": before.disabled_by,
            "disabled_reason": before.disabled_reason,
        }
        endpoint = service.enable_endpoint(tx, endpoint_id)
        return Done(
            f"Re-enabled {endpoint.url}", details={"url": endpoint.url, "previous": previous}
        )

    outcome = run_action(
        ctx,
        form,
        action="webhook_endpoint.enable",
        object_type="webhook_endpoint",
        object_id=endpoint_id,
        perform=perform,
    )
    return respond(ctx, outcome, back=safe_next(back))


@router.post("/webhook-deliveries/{delivery_id}/retry")
def retry_delivery(
    delivery_id: str,
    ctx: ConsoleContext = Depends(signed_in()),
    form: ActionForm = Depends(action_form),
    back: str = Form("/console/anomalies/failed-webhooks"),
) -> Response:
    def perform(tx: Tx) -> Done:
        delivery = service.retry_delivery(tx, delivery_id)
        return Done(
            f"Delivery of {delivery.event_id} queued again",
            details={
                "endpoint_id": delivery.endpoint_id,
                "event_id": delivery.event_id,
                "attempts_before": delivery.attempts,
            },
        )

    outcome = run_action(
        ctx,
        form,
        action="webhook_delivery.retry",
        object_type="webhook_delivery",
        object_id=delivery_id,
        perform=perform,
    )
    return respond(ctx, outcome, back=safe_next(back))
