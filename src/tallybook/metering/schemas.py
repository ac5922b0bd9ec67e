"""API shapes of metering: events in (documented by hand: the route decodes raw bodies with
msgspec), per-event answers, meters, usage, dead letters, status."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tallybook.catalog.meter_models import Meter
from tallybook.catalog.meters import MeterInput
from tallybook.kit.clock import isoformat_z
from tallybook.kit.quantity import quantity_text
from tallybook.metering.aggregate import Dims
from tallybook.metering.cloudevents import DECODER
from tallybook.metering.explain import MeteredEvent
from tallybook.metering.ingest import EventOutcome
from tallybook.metering.limits import BATCH_EVENTS_MAX
from tallybook.metering.models import DeadLetter
from tallybook.metering.status import MeteringStatus
from tallybook.metering.usage import UsageSeries

# Events in ------------------------------------------------------------------------------------


class CloudEventIn(BaseModel):
    """A CloudEvents 1.0 event in JSON (structured mode)."""

    model_config = ConfigDict(extra="allow", title="CloudEvent")

    specversion: Literal["1.0"]
    id: str = Field(max_length=255, description="Unique within `source`; dedup is on both")
    source: str = Field(max_length=255, description="Who produced the event (a URI-reference)")
    type: str = Field(max_length=200, description="Matched against meters' `event_type`")
    subject: str = Field(max_length=200, description="The customer's `external_id`")
    time: datetime | None = Field(None, description="RFC 3339; defaults to the receipt time")
    datacontenttype: str | None = Field(None, description="application/json when given")
    data: dict[str, Any] | None = Field(None, description="The usage payload meters read")


def events_request_openapi() -> dict[str, Any]:
    """The request body of ``POST /v1/events`` for the OpenAPI document."""
    event = CloudEventIn.model_json_schema()
    batch = {"type": "array", "items": event, "maxItems": BATCH_EVENTS_MAX}
    return {
        "requestBody": {
            "required": True,
            "description": (
                "One event (`application/cloudevents+json`) or a batch of up to "
                f"{BATCH_EVENTS_MAX} events (`application/cloudevents-batch+json`, at most "
                "4 MiB). `application/json` takes either an object or an array."
            ),
            "content": {
                "application/cloudevents+json": {"schema": event},
                "application/cloudevents-batch+json": {"schema": batch},
                "application/json": {"schema": {"anyOf": [event, batch]}},
            },
        }
    }


class EventResultOut(BaseModel):
    object: Literal["event_result"] = "event_result"
    status: Literal["accepted", "duplicate", "conflict", "rejected", "queued"]
    source: str | None
    id: str | None
    late: bool = Field(False, description="Accepted into an already-invoiced period")
    code: str | None = Field(None, description="Why it was rejected (or event_conflict)")
    param: str | None = Field(None, description="The offending field, e.g. `data.tokens`")
    message: str | None = None
    dead_letter_id: str | None = Field(None, description="Where a rejected event is kept")


class EventBatchOut(BaseModel):
    object: Literal["event_batch_result"] = "event_batch_result"
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int
    late: int
    queued: int = 0
    results: list[EventResultOut] = Field(description="One per event, in request order")


def outcome_wire(outcome: EventOutcome) -> dict[str, Any]:
    """Hot path: a plain dict in the ``EventResultOut`` shape (no pydantic per event)."""
    wire: dict[str, Any] = {
        "object": "event_result",
        "status": outcome.status,
        "source": outcome.source,
        "id": outcome.event_id,
        "late": outcome.late,
    }
    if outcome.code is not None:
        wire["code"] = outcome.code
        wire["param"] = outcome.param
        wire["message"] = outcome.message
    if outcome.dead_letter_id is not None:
        wire["dead_letter_id"] = outcome.dead_letter_id
    return wire


def batch_wire(outcomes: list[EventOutcome], counts: dict[str, int]) -> dict[str, Any]:
    return {
        "object": "event_batch_result",
        "accepted": counts.get("accepted", 0),
        "duplicates": counts.get("duplicate", 0),
        "conflicts": counts.get("conflict", 0),
        "rejected": counts.get("rejected", 0),
        "late": counts.get("late", 0),
        "queued": counts.get("queued", 0),
        "results": [outcome_wire(o) for o in outcomes],
    }


# Meters ----------------------------------------------------------------------------------------


class MeterFilterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Dotted path in `data`, e.g. `tier` or `$.usage.tier`")
    op: Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte"]
    value: Any = Field(
        description="A string, integer or boolean; a list for in/not_in; a number for gt/gte/lt/lte"
    )


class MeterCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="Stable name across versions, e.g. `tokens`")
    event_type: str = Field(description="The CloudEvents `type` this meter counts")
    aggregation: Literal["count", "sum", "max", "min", "unique_count", "latest"]
    value_path: str | None = Field(None, description="Path in `data` of the value (not for count)")
    filters: list[MeterFilterIn] = Field(default_factory=list)
    group_by: dict[str, str] | list[str] = Field(
        default_factory=dict, description="Dimension name → path in `data` (or a list of names)"
    )
    unit: str | None = Field(None, description="Shown on invoices; defaults to the key")
    name: str | None = None

    def to_input(self) -> MeterInput:
        return MeterInput(
            key=self.key,
            event_type=self.event_type,
            aggregation=self.aggregation,
            value_path=self.value_path,
            filters=[f.model_dump() for f in self.filters],
            group_by=self.group_by,
            unit=self.unit,
            name=self.name,
        )


class MeterOut(BaseModel):
    object: Literal["meter"] = "meter"
    id: str
    key: str
    version: int
    name: str
    event_type: str
    aggregation: str
    value_path: str | None
    filters: list[dict[str, Any]]
    group_by: dict[str, str]
    unit: str
    created_at: datetime
    archived_at: datetime | None
    backfilled: bool = Field(description="False while events stored before it are being counted")

    @classmethod
    def of(cls, meter: Meter) -> MeterOut:
        return cls(
            id=meter.id,
            key=meter.key,
            version=meter.version,
            name=meter.name,
            event_type=meter.event_type,
            aggregation=meter.aggregation,
            value_path=meter.value_path,
            filters=list(meter.filters),
            group_by=dict(sorted(meter.group_by.items())),
            unit=meter.unit,
            created_at=meter.created_at,
            archived_at=meter.archived_at,
            backfilled=meter.backfilled_at is not None,
        )


# Usage -----------------------------------------------------------------------------------------


class UsageGroupOut(BaseModel):
    dims: dict[str, str | None]
    value: str


class UsageWindowOut(BaseModel):
    start: datetime
    end: datetime
    value: str
    groups: list[UsageGroupOut] | None = None


class UsageMeterOut(BaseModel):
    id: str
    key: str
    version: int
    aggregation: str
    unit: str


class UsageOut(BaseModel):
    object: Literal["usage"] = "usage"
    customer_id: str
    meter: UsageMeterOut
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    window: str | None
    group_by: list[str] | None
    total: str = Field(description="Decimal text")
    groups: list[UsageGroupOut] | None = Field(None, description="Totals per group")
    windows: list[UsageWindowOut]

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


def groups_wire(groups: dict[Dims, Any] | None) -> list[dict[str, Any]] | None:
    if groups is None:
        return None
    return [{"dims": dict(dims), "value": quantity_text(value)} for dims, value in groups.items()]


def usage_wire(series: UsageSeries, *, with_windows: bool) -> dict[str, Any]:
    meter = series.meter
    return {
        "object": "usage",
        "customer_id": series.customer_id,
        "meter": {
            "id": meter.id,
            "key": meter.key,
            "version": meter.version,
            "aggregation": meter.aggregation,
            "unit": meter.unit,
        },
        "from": isoformat_z(series.start),
        "to": isoformat_z(series.end),
        "window": series.window.value if with_windows else None,
        "group_by": list(series.group_names) if series.group_names is not None else None,
        "total": quantity_text(series.total),
        "groups": groups_wire(series.total_groups),
        "windows": [
            {
                "start": isoformat_z(w.start),
                "end": isoformat_z(w.end),
                "value": quantity_text(w.value),
                "groups": groups_wire(w.groups),
            }
            for w in series.windows
        ]
        if with_windows
        else [],
    }


# Raw events ------------------------------------------------------------------------------------


class MeteredEventOut(BaseModel):
    object: Literal["event"] = "event"
    seq: int
    source: str
    id: str
    type: str
    subject: str
    customer_id: str
    time: datetime
    received_at: datetime
    late: bool
    data: dict[str, Any] | None
    value: str | None = Field(description="What it added (1 for count); null for unique count")
    value_key: str | None = Field(description="The distinct value, for unique count")
    dims: dict[str, str | None]

    @classmethod
    def of(cls, event: MeteredEvent) -> MeteredEventOut:
        return cls(
            seq=event.seq,
            source=event.source,
            id=event.event_id,
            type=event.type,
            subject=event.subject,
            customer_id=event.customer_id,
            time=event.time,
            received_at=event.received_at,
            late=event.late,
            data=event.data,
            value=quantity_text(event.value) if event.value is not None else None,
            value_key=event.value_key,
            dims=event.dims,
        )


class EventListOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[MeteredEventOut]
    has_more: bool
    url: str
    next_cursor: str | None = Field(description="Pass as `after` for the next page")


# Dead letters ----------------------------------------------------------------------------------


class DeadLetterOut(BaseModel):
    object: Literal["dead_letter"] = "dead_letter"
    id: str
    status: Literal["pending", "replayed", "discarded"]
    code: str
    param: str | None
    message: str
    source: str | None
    event_id: str | None
    type: str | None
    subject: str | None
    attempts: int
    received_at: datetime
    last_attempt_at: datetime
    resolved_at: datetime | None
    event: Any = Field(description="The event as received")

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterOut:
        try:
            event = DECODER.decode(letter.raw)
        except Exception:  # kept as text when it never was JSON
            event = letter.raw
        return cls(
            id=letter.id,
            status=letter.status,
            code=letter.code,
            param=letter.param,
            message=letter.message,
            source=letter.source,
            event_id=letter.event_id,
            type=letter.type,
            subject=letter.subject,
            attempts=letter.attempts,
            received_at=letter.received_at,
            last_attempt_at=letter.last_attempt_at,
            resolved_at=letter.resolved_at,
            event=event,
        )


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = Field(None, max_length=1000, description="These letters")
    code: str | None = Field(None, description="Or every pending letter with this code")
    limit: int = Field(1000, ge=1, le=1000)


class ReplayResultOut(BaseModel):
    dead_letter_id: str
    result: EventResultOut


class ReplayOut(BaseModel):
    object: Literal["dead_letter_replay"] = "dead_letter_replay"
    counts: dict[str, int]
    results: list[ReplayResultOut]


# Status ----------------------------------------------------------------------------------------


class LastEventOut(BaseModel):
    seq: int
    source: str
    id: str
    type: str
    customer_id: str
    time: datetime
    received_at: datetime


class MeteringStatusOut(BaseModel):
    object: Literal["metering_status"] = "metering_status"
    now: datetime
    ingest_mode: str
    last_event: LastEventOut | None
    seconds_since_last_event: float | None
    dead_letters: dict[str, int] = Field(description="By status")
    dead_letters_pending_by_code: dict[str, int]
    late_events_unbilled: int
    backfilling_meters: list[str]
    queue: dict[str, Any] | None = Field(None, description="JetStream consumer state (nats mode)")

    @classmethod
    def of(
        cls, status: MeteringStatus, *, ingest_mode: str, queue: dict[str, Any] | None
    ) -> MeteringStatusOut:
        last = status.last_event
        return cls(
            now=status.now,
            ingest_mode=ingest_mode,
            last_event=LastEventOut(
                seq=last.seq,
                source=last.source,
                id=last.event_id,
                type=last.type,
                customer_id=last.customer_id,
                time=last.time,
                received_at=last.received_at,
            )
            if last is not None
            else None,
            seconds_since_last_event=status.seconds_since_last_event,
            dead_letters=status.dead_letters_by_status,
            dead_letters_pending_by_code=status.dead_letters_pending_by_code,
            late_events_unbilled=status.late_events_unbilled,
            backfilling_meters=[m.id for m in status.backfilling],
            queue=queue,
        )
