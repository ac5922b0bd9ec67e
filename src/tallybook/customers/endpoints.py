from __future__ import annotations

from typing import Any

from fastapi import Depends, Query
from starlette.responses import Response

from tallybook.customers import service
from tallybook.customers.schemas import CustomerCreateBody, CustomerOut, CustomerUpdateBody
from tallybook.db import Tx
from tallybook.http.edge import Edge, make_router, page_params, require
from tallybook.http.errors import ERROR_RESPONSES
from tallybook.http.responses import ListEnvelope, list_envelope
from tallybook.kit.pagination import PageRequest

router = make_router("/v1/customers", tags=["customers"])

READ = require("customers:read")
WRITE = require("customers:write")


@router.post("", response_model=CustomerOut, responses=ERROR_RESPONSES)
def create_customer(body: CustomerCreateBody, edge: Edge = Depends(WRITE)) -> Response:
    return edge.write(
        lambda tx: CustomerOut.of(service.create(tx, body.to_input())), fingerprint=body
    )


@router.get("", response_model=ListEnvelope[CustomerOut], responses=ERROR_RESPONSES)
def list_customers(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    email: str | None = Query(None),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = service.list_page(tx, page, email=email)
        return list_envelope(result, "/v1/customers", [CustomerOut.of(c) for c in result.data])

    return edge.read(run)


@router.get("/{customer_id}", response_model=CustomerOut, responses=ERROR_RESPONSES)
def get_customer(customer_id: str, edge: Edge = Depends(READ)) -> Response:
    """Accepts our id (`cus_…`) or your `external_id`."""
    return edge.read(lambda tx: CustomerOut.of(service.resolve(tx, customer_id)))


@router.post("/{customer_id}", response_model=CustomerOut, responses=ERROR_RESPONSES)
def update_customer(
    customer_id: str, body: CustomerUpdateBody, edge: Edge = Depends(WRITE)
) -> Response:
    def run(tx: Tx) -> CustomerOut:
        customer = service.resolve(tx, customer_id)
        return CustomerOut.of(service.update(tx, customer.id, body.to_update()))

    return edge.write(run, fingerprint=body)


routers = [router]
