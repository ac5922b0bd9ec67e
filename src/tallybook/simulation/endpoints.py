"""``POST /v1/simulations``: a pricing simulation, computed in a read-only unit of work and
returned; nothing is stored (so no ``Idempotency-Key`` is needed: repeating it is harmless)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.responses import Response

from tallybook.http.edge import Edge, make_router, require
from tallybook.http.errors import ERROR_RESPONSES
from tallybook.simulation import service
from tallybook.simulation.schemas import SimulationBody, SimulationOut

router = make_router("/v1/simulations", tags=["simulations"])
#: Revenue per customer is invoice data.
READ = require("invoices:read")


@router.post("", response_model=SimulationOut, responses=ERROR_RESPONSES)
def create_simulation(body: SimulationBody, edge: Edge = Depends(READ)) -> Response:
    """Re-rate the chosen customers' last closed periods under a plan version (usually a
    draft) and report the revenue change per customer and in total. Nothing is written."""
    return edge.read(lambda tx: SimulationOut.of(service.simulate(tx, body.to_request())))


routers: list[APIRouter] = [router]
