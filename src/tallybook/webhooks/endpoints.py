"""``/v1/webhook_endpoints`` and ``/v1/webhook_deliveries``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from tallybook.db import Tx
from tallybook.http.edge import Edge, make_router, page_params, require
from tallybook.http.errors import ERROR_RESPONSES
from tallybook.http.responses import ListEnvelope, list_envelope
from tallybook.kit.pagination import PageRequest
from tallybook.webhooks import service
from tallybook.webhooks.schemas import (
    DeliveryOut,
    EndpointCreateBody,
    EndpointDisableBody,
    EndpointOut,
    EndpointUpdateBody,
)

endpoints_router = make_router("/v1/webhook_endpoints", tags=["webhooks"])
deliveries_router = make_router("/v1/webhook_deliveries", tags=["webhooks"])
READ = require("webhooks:read")
WRITE = require("webhooks:write")


@endpoints_router.post("", response_model=EndpointOut, responses=ERROR_RESPONSES)
def create_endpoint(body: EndpointCreateBody, edge: Edge = Depends(WRITE)) -> Response:
    """Create an endpoint. The response carries its signing `secret` (`whsec_…`) once."""

    def run(tx: Tx) -> EndpointOut:
        endpoint = service.create_endpoint(
            tx,
            service.EndpointInput(
                url=body.url, event_types=body.event_types, description=body.description
            ),
        )
        return EndpointOut.of(endpoint, with_secret=True)

    return edge.write(run, fingerprint=body)


@endpoints_router.get("", response_model=ListEnvelope[EndpointOut], responses=ERROR_RESPONSES)
def list_endpoints(
    edge: Edge = Depends(READ), page: PageRequest = Depends(page_params)
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = service.list_endpoints(tx, page)
        return list_envelope(
            result, "/v1/webhook_endpoints", [EndpointOut.of(e) for e in result.data]
        )

    return edge.read(run)


@endpoints_router.get("/{endpoint_id}", response_model=EndpointOut, responses=ERROR_RESPONSES)
def get_endpoint(endpoint_id: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: EndpointOut.of(service.get_endpoint(tx, endpoint_id)))


@endpoints_router.post("/{endpoint_id}", response_model=EndpointOut, responses=ERROR_RESPONSES)
def update_endpoint(
    endpoint_id: str, body: EndpointUpdateBody, edge: Edge = Depends(WRITE)
) -> Response:
    return edge.write(
        lambda tx: EndpointOut.of(
            service.update_endpoint(
                tx,
                endpoint_id,
                url=body.url,
                event_types=body.event_types,
                description=body.description,
            )
        ),
        fingerprint=body,
    )


@endpoints_router.post(
    "/{endpoint_id}/enable", response_model=EndpointOut, responses=ERROR_RESPONSES
)
def enable_endpoint(endpoint_id: str, edge: Edge = Depends(WRITE)) -> Response:
    """Re-enable (for example after it was disabled by repeated failures); queued events
    are then delivered in order."""
    return edge.write(lambda tx: EndpointOut.of(service.enable_endpoint(tx, endpoint_id)))


@endpoints_router.post(
    "/{endpoint_id}/disable", response_model=EndpointOut, responses=ERROR_RESPONSES
)
def disable_endpoint(
    endpoint_id: str, body: EndpointDisableBody, edge: Edge = Depends(WRITE)
) -> Response:
    return edge.write(
        lambda tx: EndpointOut.of(service.disable_endpoint(tx, endpoint_id, reason=body.reason)),
        fingerprint=body,
    )


@endpoints_router.post(
    "/{endpoint_id}/rotate_secret", response_model=EndpointOut, responses=ERROR_RESPONSES
)
def rotate_secret(endpoint_id: str, edge: Edge = Depends(WRITE)) -> Response:
    """A new secret; for 24 hours deliveries are signed with both the new and the old one."""
    return edge.write(
        lambda tx: EndpointOut.of(service.rotate_secret(tx, endpoint_id), with_secret=True)
    )


@endpoints_router.get(
    "/{endpoint_id}/deliveries",
    response_model=ListEnvelope[DeliveryOut],
    responses=ERROR_RESPONSES,
)
def list_deliveries(
    endpoint_id: str,
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    status: str | None = Query(None, description="pending, succeeded or failed"),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = service.list_deliveries(tx, endpoint_id, page, status=status)
        return list_envelope(
            result,
            f"/v1/webhook_endpoints/{endpoint_id}/deliveries",
            [DeliveryOut.of(d) for d in result.data],
        )

    return edge.read(run)


@deliveries_router.get("/{delivery_id}", response_model=DeliveryOut, responses=ERROR_RESPONSES)
def get_delivery(delivery_id: str, edge: Edge = Depends(READ)) -> Response:
    """A delivery with its attempt log."""
    return edge.read(
        lambda tx: DeliveryOut.of(
            service.get_delivery(tx, delivery_id), service.attempts_of(tx, delivery_id)
        )
    )


@deliveries_router.post(
    "/{delivery_id}/retry", response_model=DeliveryOut, responses=ERROR_RESPONSES
)
def retry_delivery(delivery_id: str, edge: Edge = Depends(WRITE)) -> Response:
    return edge.write(lambda tx: DeliveryOut.of(service.retry_delivery(tx, delivery_id)))


routers: list[APIRouter] = [endpoints_router, deliveries_router]
