"""``/v1/reconciliation/runs`` and ``/v1/reconciliation/discrepancies`` (read-only: runs are
made by the daily job or ``tallybook reconcile``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from tallybook.db import Tx
from tallybook.http.edge import Edge, make_router, page_params, require
from tallybook.http.errors import ERROR_RESPONSES
from tallybook.http.responses import ListEnvelope, list_envelope
from tallybook.kit.pagination import PageRequest
from tallybook.reconciliation import service
from tallybook.reconciliation.schemas import DiscrepancyOut, RunOut

router = make_router("/v1/reconciliation", tags=["reconciliation"])
READ = require("reconciliation:read")


@router.get("/runs", response_model=ListEnvelope[RunOut], responses=ERROR_RESPONSES)
def list_runs(edge: Edge = Depends(READ), page: PageRequest = Depends(page_params)) -> Response:
    """Reconciliation runs, newest first (one per day)."""

    def run(tx: Tx) -> dict[str, Any]:
        result = service.list_runs(tx, page)
        return list_envelope(result, "/v1/reconciliation/runs", [RunOut.of(r) for r in result.data])

    return edge.read(run)


@router.get(
    "/discrepancies", response_model=ListEnvelope[DiscrepancyOut], responses=ERROR_RESPONSES
)
def list_discrepancies(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    status: str = Query("open", description="open, resolved or all"),
    kind: str | None = Query(None, description="Only this kind of discrepancy"),
) -> Response:
    """Discrepancies found by reconciliation, newest first; open ones by default."""

    def run(tx: Tx) -> dict[str, Any]:
        result = service.page_discrepancies(tx, page, status=status, kind=kind)
        return list_envelope(
            result,
            "/v1/reconciliation/discrepancies",
            [DiscrepancyOut.of(d) for d in result.data],
        )

    return edge.read(run)


@router.get(
    "/discrepancies/{discrepancy_id}", response_model=DiscrepancyOut, responses=ERROR_RESPONSES
)
def get_discrepancy(discrepancy_id: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: DiscrepancyOut.of(service.get_discrepancy(tx, discrepancy_id)))


routers: list[APIRouter] = [router]
