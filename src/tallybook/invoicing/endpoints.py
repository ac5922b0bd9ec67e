"""HTTP routes of the invoicing domain (mounted by tallybook.api.app)."""

from __future__ import annotations

from fastapi import APIRouter

from tallybook.http.edge import make_router

routers: list[APIRouter] = [make_router("/v1", tags=["invoicing"])]
