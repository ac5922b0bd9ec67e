"""The FastAPI application: every domain's routes, the console, health and metrics."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.routing import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.responses import RedirectResponse, Response

from tallybook import __version__
from tallybook.db import Database
from tallybook.db.hot import HotReads
from tallybook.entitlements.mirror import Mirror
from tallybook.entitlements.settings import mirror_enabled
from tallybook.http.errors import install_error_handlers
from tallybook.http.middleware import EdgeMiddleware
from tallybook.http.responses import json_response
from tallybook.kit.settings import Settings
from tallybook.observability.metrics import REGISTRY

#: Batched event ingestion accepts bigger bodies than the rest of the API.
EVENTS_BODY_BYTES_MAX: Final = 4 * 1024 * 1024 + 64 * 1024

API_DESCRIPTION: Final = """
tallybook's REST API follows Stripe's conventions: prefixed ids, an `object` field on every
resource, list envelopes with `has_more` and cursor pagination (`limit`, `starting_after`,
`ending_before`), an `Idempotency-Key` header on every POST, and one error shape:

```json
{"error": {"type": "invalid_request_error", "code": "parameter_missing",
           "message": "…", "param": "external_id", "request_id": "req_…"}}
```

Authenticate with an API key: `Authorization: Bearer tbk_…` (create one with
`tallybook apikey create`). Amounts are integer minor units with an ISO 4217 currency;
quantities and unit prices are decimal strings.
"""


def domain_routers() -> list[APIRouter]:
    from tallybook.catalog import endpoints as catalog
    from tallybook.customers import endpoints as customers
    from tallybook.entitlements import endpoints as entitlements
    from tallybook.grants import endpoints as grants
    from tallybook.invoicing import endpoints as invoicing
    from tallybook.ledger import endpoints as ledger
    from tallybook.metering import endpoints as metering
    from tallybook.payments import endpoints as payments
    from tallybook.reconciliation import endpoints as reconciliation
    from tallybook.simulation import endpoints as simulation
    from tallybook.subscriptions import endpoints as subscriptions
    from tallybook.webhooks import endpoints as webhooks

    routers: list[APIRouter] = []
    for module in (
        customers,
        ledger,
        metering,
        catalog,
        subscriptions,
        entitlements,
        grants,
        invoicing,
        payments,
        webhooks,
        reconciliation,
        simulation,
    ):
        routers.extend(module.routers)
    return routers


_frozen = False


def freeze_start_up_objects() -> None:
    """Once per process: move what exists at start-up (modules, the app and its routes, some
    120,000 objects) to the garbage collector's permanent generation. A full collection
    stops the event loop while it walks every tracked object; it walked these for about
    40 ms each time, and they live as long as the process anyway."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def create_app(db: Database, settings: Settings | None = None) -> Any:
    """Build the ASGI app around ``db``. Returns the middleware-wrapped app; the FastAPI
    instance is at ``.app`` (and ``app.state.db`` holds the database).

    While it serves (its lifespan: uvicorn, or a ``with TestClient(app)`` block) a PostgreSQL
    app holds a hot-read pool (``db.hot``) at ``app.state.hot_reads`` for its lanes (without
    one they run their reads on worker threads), and the check's mirror
    (``entitlements.mirror``) at ``app.state.entitlements_mirror`` unless
    ``TALLYBOOK_ENTITLEMENTS_MIRROR=off``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hot = HotReads(db.url) if db.is_postgres else None
        mirror = Mirror(db.url) if hot is not None and mirror_enabled(app.state.settings) else None
        if hot is not None:
            await hot.open()
        if mirror is not None:
            await mirror.open()
        app.state.hot_reads = hot
        app.state.entitlements_mirror = mirror
        freeze_start_up_objects()
        try:
            yield
        finally:
            app.state.hot_reads = None
            app.state.entitlements_mirror = None
            if mirror is not None:
                await mirror.close()
            if hot is not None:
                await hot.close()

    api = FastAPI(
        lifespan=lifespan,
        title="tallybook",
        version=__version__,
        description=API_DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    api.state.db = db
    api.state.settings = settings or Settings.from_env()
    install_error_handlers(api)
    for router in domain_routers():
        api.include_router(router)

    from tallybook.console.app import router as console_router

    api.include_router(console_router)

    @api.get("/healthz", tags=["operations"], summary="Liveness and database reachability")
    def healthz(request: Request) -> Response:
        database: Database = request.app.state.db
        with database.read(actor="system:healthz") as tx:
            tx.session.execute(text("SELECT 1"))
        return json_response({"status": "ok", "version": __version__})

    @api.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @api.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/docs")

    from tallybook.entitlements.endpoints import lanes as entitlement_lanes

    return EdgeMiddleware(
        api,
        body_limits=[("/v1/events", EVENTS_BODY_BYTES_MAX)],
        lanes=entitlement_lanes(api.state),
    )


def app_from_env() -> Any:
    """The app of one ``tallybook serve --workers N`` process, configured from the environment."""
    from tallybook.observability.logging import configure_logging

    settings = Settings.from_env()
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    return create_app(Database(settings.database_url), settings)


def fastapi_of(app: Any) -> FastAPI:
    inner = app.app if isinstance(app, EdgeMiddleware) else app
    assert isinstance(inner, FastAPI)
    return inner


def openapi_document(db: Database | None = None) -> dict[str, Any]:
    """The OpenAPI document as served at /openapi.json (needs no live database)."""
    database = db or Database("sqlite://")
    document = fastapi_of(create_app(database)).openapi()
    return dict(document)
