"""HTTP routes of metering: ``/v1/events`` (ingestion, explainability, dead letters),
``/v1/meters``, ``/v1/customers/{id}/usage`` and ``/v1/metering/status``.

``POST /v1/events`` is the hot path: it reads the raw body, decodes it with msgspec (numbers
as Decimal), runs the pipeline in a worker thread and answers only after the commit. Its
request schema is declared by hand (``schemas.events_request_openapi``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import msgspec
from fastapi import Depends, Query, Request
from fastapi.routing import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from tallybook.customers import service as customers
from tallybook.db import Tx
from tallybook.http.edge import Edge, make_router, page_params, require
from tallybook.http.errors import ERROR_RESPONSES
from tallybook.http.responses import ListEnvelope, json_response, list_envelope, render_json
from tallybook.kit.clock import ensure_utc
from tallybook.kit.errors import CommonCode, IdempotencyError, InvalidRequest, TallybookError
from tallybook.kit.pagination import PageRequest
from tallybook.metering import service
from tallybook.metering.cloudevents import DECODER, parse_time
from tallybook.metering.errors import EventCode, MeteringCode
from tallybook.metering.ingest import CONFLICT, REJECTED, EventOutcome, IngestResult
from tallybook.metering.limits import BATCH_EVENTS_MAX
from tallybook.metering.nats.publisher import EventPublisher
from tallybook.metering.nats.stream import StreamSpec
from tallybook.metering.schemas import (
    DeadLetterOut,
    EventBatchOut,
    EventListOut,
    EventResultOut,
    MeterCreateBody,
    MeteredEventOut,
    MeteringStatusOut,
    MeterOut,
    ReplayBody,
    ReplayOut,
    UsageOut,
    batch_wire,
    events_request_openapi,
    outcome_wire,
    usage_wire,
)
from tallybook.metering.settings import INGEST_NATS, MeteringSettings
from tallybook.metering.usage import check_range

STRUCTURED: Final = "application/cloudevents+json"
BATCHED: Final = "application/cloudevents-batch+json"
PLAIN_JSON: Final = "application/json"

events_router = make_router("/v1/events", tags=["events"])
meters_router = make_router("/v1/meters", tags=["meters"])
usage_router = make_router("/v1", tags=["usage"])

EVENTS_READ = require("events:read")
EVENTS_WRITE = require("events:write")
CATALOG_READ = require("catalog:read")
CATALOG_WRITE = require("catalog:write")
USAGE_READ = require("usage:read")


#: Responses that carry event data: numbers keep their exact digits (orjson would quote them).
EXACT_JSON: Final = msgspec.json.Encoder(decimal_format="number")


def _exact_read(edge: Edge, fn: Any) -> Response:
    """Like ``Edge.read`` but rendered with msgspec so event ``data`` stays as sent."""
    with edge.db.read(actor=edge.caller.actor, request_id=edge.request_id) as tx:
        body = fn(tx)
    return Response(EXACT_JSON.encode(body), media_type="application/json")


def metering_settings(request: Request) -> MeteringSettings:
    state = request.app.state
    cached = getattr(state, "metering_settings", None)
    if cached is None:
        cached = MeteringSettings.from_settings(getattr(state, "settings", None))
        state.metering_settings = cached
    assert isinstance(cached, MeteringSettings)
    return cached


def _publisher(request: Request, settings: MeteringSettings) -> EventPublisher:
    state = request.app.state
    publisher = getattr(state, "metering_publisher", None)
    if publisher is None:
        publisher = EventPublisher(settings.nats_url, StreamSpec.of(settings))
        state.metering_publisher = publisher
    assert isinstance(publisher, EventPublisher)
    return publisher


# Ingestion -------------------------------------------------------------------------------------


def _decode_body(body: bytes, media: str) -> tuple[list[Any], bool]:
    """(events, structured?)"""
    if media not in (STRUCTURED, BATCHED, PLAIN_JSON):
        raise InvalidRequest(
            CommonCode.UNSUPPORTED_MEDIA_TYPE,
            f"send {STRUCTURED} (one event) or {BATCHED} (a JSON array)",
            param="Content-Type",
            http_status=415,
        )
    try:
        decoded = DECODER.decode(body)
    except msgspec.DecodeError:
        raise InvalidRequest(
            CommonCode.MALFORMED_JSON, "the request body is not valid JSON"
        ) from None
    structured = media == STRUCTURED or (media == PLAIN_JSON and not isinstance(decoded, list))
    if structured:
        return [decoded], True
    if not isinstance(decoded, list):
        raise InvalidRequest(
            MeteringCode.BATCH_INVALID, "a batch is a JSON array of events", param="body"
        )
    if len(decoded) > BATCH_EVENTS_MAX:
        raise InvalidRequest(
            MeteringCode.BATCH_TOO_LARGE,
            f"{len(decoded)} events; a batch holds at most {BATCH_EVENTS_MAX}",
            param="body",
        )
    return decoded, False


def _ingest_committed(edge: Edge, events: list[Any], settings: MeteringSettings) -> IngestResult:
    with edge.db.transaction(actor=edge.caller.actor, request_id=edge.request_id) as tx:
        return service.ingest_events(tx, events, settings=settings, path="http")


def _single_reply(outcome: EventOutcome, request_id: str | None) -> Response:
    if outcome.status in (REJECTED, CONFLICT):
        error_class = InvalidRequest if outcome.status == REJECTED else IdempotencyError
        error: TallybookError = error_class(
            outcome.code or EventCode.EVENT_INVALID,
            outcome.message or "rejected",
            param=outcome.param,
            details={"dead_letter_id": outcome.dead_letter_id} if outcome.dead_letter_id else None,
        )
        return json_response(error.to_wire(request_id), status_code=error.status)
    return Response(render_json(outcome_wire(outcome)), media_type="application/json")


@events_router.post(
    "",
    summary="Ingest usage events (CloudEvents 1.0, structured or batched)",
    response_model=EventBatchOut,
    responses={
        **ERROR_RESPONSES,
        415: {"description": "Unsupported content type"},
        503: {"description": "nats mode: the stream did not acknowledge; retry"},
        200: {
            "description": (
                "Batched mode: one result per event, in order. Structured mode: an "
                "`event_result` (accepted or duplicate), or the error of a rejected (400) or "
                "conflicting (409) event."
            ),
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/EventBatchOut"},
                            {"$ref": "#/components/schemas/EventResultOut"},
                        ]
                    }
                }
            },
        },
    },
    openapi_extra=events_request_openapi(),
)
async def ingest(request: Request, edge: Edge = Depends(EVENTS_WRITE)) -> Response:
    """Every event is answered: `accepted` (durable: committed before this response),
    `duplicate` (same source, id and content as a stored event: nothing changes), `conflict`
    (same source and id, different content) or `rejected` (a named `code` and `param`; the
    event is kept as a dead letter and can be replayed). Events in an already-invoiced period
    are accepted with `late: true`. In nats mode events are `queued` in JetStream instead."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    events, structured = _decode_body(await request.body(), media)
    settings = metering_settings(request)
    if settings.ingest_mode == INGEST_NATS:
        queued = await _publisher(request, settings).publish(events, edge.db.clock.now())
        results = [
            {
                "object": "event_result",
                "status": "queued",
                "source": e.get("source") if isinstance(e, dict) else None,
                "id": e.get("id") if isinstance(e, dict) else None,
                "late": False,
                "stream_seq": q.stream_seq,
            }
            for e, q in zip(events, queued, strict=True)
        ]
        body: Any = (
            results[0]
            if structured
            else {**batch_wire([], {}), "queued": len(results), "results": results}
        )
        return Response(render_json(body), media_type="application/json")
    result = await run_in_threadpool(_ingest_committed, edge, events, settings)
    if structured:
        return _single_reply(result.outcomes[0], edge.request_id)
    return Response(
        render_json(batch_wire(result.outcomes, result.counts)), media_type="application/json"
    )


# Explainability ----------------------------------------------------------------------------------


def _instant(value: str, param: str) -> datetime:
    parsed = parse_time(value)
    if parsed is None:
        raise InvalidRequest(
            MeteringCode.USAGE_RANGE_INVALID,
            f"{param} must be an RFC 3339 timestamp with an offset",
            param=param,
        )
    return ensure_utc(parsed, param=param)


@events_router.get("", response_model=EventListOut, responses=ERROR_RESPONSES)
def list_events(
    request: Request,
    meter: str = Query(..., description="Meter id or key (latest version)"),
    customer: str = Query(..., description="Customer id or external_id"),
    start: str = Query(..., alias="from", description="RFC 3339, inclusive"),
    end: str = Query(..., alias="to", description="RFC 3339, exclusive"),
    after: str | None = Query(None, description="The `next_cursor` of the previous page"),
    limit: int = Query(100, ge=1, le=1000),
    edge: Edge = Depends(EVENTS_READ),
) -> Response:
    """The raw events a meter counts for a customer in `[from, to)`, oldest first, each with
    the value and dimensions it contributed (what invoice lines link to)."""
    start_at, end_at = _instant(start, "from"), _instant(end, "to")

    def run(tx: Tx) -> dict[str, Any]:
        meter_row = service.resolve_meter(tx, meter)
        customer_row = customers.resolve(tx, customer)
        page = service.list_events(
            tx,
            meter_id=meter_row.id,
            customer_id=customer_row.id,
            start=start_at,
            end=end_at,
            after=after,
            limit=limit,
        )
        return {
            "object": "list",
            "data": [MeteredEventOut.of(e).model_dump() for e in page.data],
            "has_more": page.has_more,
            "url": "/v1/events",
            "next_cursor": page.next_cursor,
        }

    return _exact_read(edge, run)


# Dead letters ----------------------------------------------------------------------------------


@events_router.get(
    "/dead_letters", response_model=ListEnvelope[DeadLetterOut], responses=ERROR_RESPONSES
)
def list_dead_letters(
    status: str | None = Query("pending", description="pending, replayed, discarded, or all"),
    code: str | None = Query(None, description="A rejection code"),
    page: PageRequest = Depends(page_params),
    edge: Edge = Depends(EVENTS_READ),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = service.list_dead_letters(
            tx, page, status=None if status == "all" else status, code=code
        )
        return list_envelope(
            result,
            "/v1/events/dead_letters",
            [DeadLetterOut.of(d).model_dump() for d in result.data],
        )

    return _exact_read(edge, run)


@events_router.get(
    "/dead_letters/{letter_id}", response_model=DeadLetterOut, responses=ERROR_RESPONSES
)
def get_dead_letter(letter_id: str, edge: Edge = Depends(EVENTS_READ)) -> Response:
    return _exact_read(
        edge, lambda tx: DeadLetterOut.of(service.get_dead_letter(tx, letter_id)).model_dump()
    )


@events_router.post("/dead_letters/replay", response_model=ReplayOut, responses=ERROR_RESPONSES)
def replay_dead_letters(
    body: ReplayBody, request: Request, edge: Edge = Depends(EVENTS_WRITE)
) -> Response:
    """Replay pending dead letters (these ids, this code, or the oldest) after fixing the
    cause, for example creating the missing customer."""
    settings = metering_settings(request)

    def run(tx: Tx) -> dict[str, Any]:
        result = service.replay_dead_letters(
            tx, ids=body.ids, code=body.code, limit=body.limit, settings=settings
        )
        return {
            "object": "dead_letter_replay",
            "counts": result.counts,
            "results": [
                {"dead_letter_id": letter_id, "result": outcome_wire(outcome)}
                for letter_id, outcome in result.outcomes
            ],
        }

    return edge.write(run, fingerprint=body)


@events_router.post(
    "/dead_letters/{letter_id}/replay", response_model=EventResultOut, responses=ERROR_RESPONSES
)
def replay_dead_letter(
    letter_id: str, request: Request, edge: Edge = Depends(EVENTS_WRITE)
) -> Response:
    settings = metering_settings(request)
    return edge.write(
        lambda tx: outcome_wire(service.replay_dead_letter(tx, letter_id, settings=settings))
    )


@events_router.post(
    "/dead_letters/{letter_id}/discard", response_model=DeadLetterOut, responses=ERROR_RESPONSES
)
def discard_dead_letter(letter_id: str, edge: Edge = Depends(EVENTS_WRITE)) -> Response:
    return edge.write(lambda tx: DeadLetterOut.of(service.discard_dead_letter(tx, letter_id)))


# Meters ----------------------------------------------------------------------------------------


@meters_router.post("", response_model=MeterOut, responses=ERROR_RESPONSES)
def create_meter(body: MeterCreateBody, edge: Edge = Depends(CATALOG_WRITE)) -> Response:
    """Define a meter, or the next version of an existing key. Re-sending the latest
    version's exact definition returns it unchanged."""
    return edge.write(
        lambda tx: MeterOut.of(service.define_meter(tx, body.to_input())), fingerprint=body
    )


@meters_router.get("", response_model=ListEnvelope[MeterOut], responses=ERROR_RESPONSES)
def list_meters(
    key: str | None = Query(None, description="Only the versions of this key"),
    include_archived: bool = Query(True),
    page: PageRequest = Depends(page_params),
    edge: Edge = Depends(CATALOG_READ),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = service.list_meters(tx, page, key=key, include_archived=include_archived)
        return list_envelope(result, "/v1/meters", [MeterOut.of(m) for m in result.data])

    return edge.read(run)


@meters_router.get("/{meter}", response_model=MeterOut, responses=ERROR_RESPONSES)
def get_meter(meter: str, edge: Edge = Depends(CATALOG_READ)) -> Response:
    """By id (`mtr_…`) or key (its latest version)."""
    return edge.read(lambda tx: MeterOut.of(service.resolve_meter(tx, meter, param="id")))


@meters_router.post("/{meter_id}/archive", response_model=MeterOut, responses=ERROR_RESPONSES)
def archive_meter(meter_id: str, edge: Edge = Depends(CATALOG_WRITE)) -> Response:
    """Hide a meter from new prices. It keeps counting, so published prices stay exact."""
    return edge.write(lambda tx: MeterOut.of(service.archive_meter(tx, meter_id)))


# Usage -----------------------------------------------------------------------------------------


def _group_by(values: list[str]) -> bool | list[str]:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        return False
    if names == ["*"]:
        return True
    return names


@usage_router.get(
    "/customers/{customer_id}/usage", response_model=UsageOut, responses=ERROR_RESPONSES
)
def customer_usage(
    customer_id: str,
    meter: str = Query(..., description="Meter id or key (latest version)"),
    start: str = Query(..., alias="from", description="RFC 3339, inclusive (any instant)"),
    end: str = Query(..., alias="to", description="RFC 3339, exclusive (any instant)"),
    window: str | None = Query(
        None, description="hour, day or month (UTC); omit for the total only"
    ),
    group_by: list[str] = Query(
        [], description="Dimension names (repeat or comma-separate; * = all)"
    ),
    edge: Edge = Depends(USAGE_READ),
) -> Response:
    """Exact usage of one meter for one customer: the total over `[from, to)` and, with
    `window`, per calendar window (the first and last clipped to the range)."""
    start_at, end_at = _instant(start, "from"), _instant(end, "to")
    check_range(start_at, end_at, params=("from", "to"))
    grouping = _group_by(group_by)

    def run(tx: Tx) -> dict[str, Any]:
        customer_row = customers.resolve(tx, customer_id)
        meter_row = service.resolve_meter(tx, meter)
        series = service.usage_series(
            tx,
            meter_id=meter_row.id,
            customer_id=customer_row.id,
            start=start_at,
            end=end_at,
            window=window or "month",
            group_by=grouping,
        )
        return usage_wire(series, with_windows=window is not None)

    return edge.read(run)


@usage_router.get("/metering/status", response_model=MeteringStatusOut, responses=ERROR_RESPONSES)
async def metering_status(request: Request, edge: Edge = Depends(EVENTS_READ)) -> Response:
    """The last committed event, dead-letter counts, unbilled late events, meters still
    backfilling, and in nats mode the stream consumer's backlog."""
    settings = metering_settings(request)

    queue = await _queue_state(settings) if settings.ingest_mode == INGEST_NATS else None

    def read() -> MeteringStatusOut:
        with edge.db.read(actor=edge.caller.actor, request_id=edge.request_id) as tx:
            status = service.metering_status(tx)
            return MeteringStatusOut.of(status, ingest_mode=settings.ingest_mode, queue=queue)

    return json_response(await run_in_threadpool(read))


async def _queue_state(settings: MeteringSettings) -> dict[str, Any]:
    import nats

    try:
        nc = await nats.connect(settings.nats_url, connect_timeout=2, max_reconnect_attempts=0)
    except Exception as exc:  # reported, not raised: the status page must still answer
        return {"error": f"{type(exc).__name__}: {exc}"}
    try:
        info = await nc.jetstream().consumer_info(settings.nats_stream, settings.nats_durable)
        return {
            "stream": settings.nats_stream,
            "consumer": settings.nats_durable,
            "pending": info.num_pending,
            "ack_pending": info.num_ack_pending,
            "redelivered": info.num_redelivered,
        }
    except Exception as exc:  # the stream or consumer may not exist yet
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        await nc.close()


routers: list[APIRouter] = [events_router, meters_router, usage_router]
