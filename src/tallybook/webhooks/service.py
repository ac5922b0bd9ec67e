"""Outbound webhooks: endpoints, fan-out of domain events to deliveries, the delivery log.

Delivery itself (HTTP) is in :mod:`tallybook.webhooks.delivery`; this module never leaves the
database.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from tallybook.db import Tx
from tallybook.kit.errors import Conflict, InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.webhooks import signing
from tallybook.webhooks.models import (
    WebhookAttempt,
    WebhookCursor,
    WebhookDelivery,
    WebhookEndpoint,
)
from tallybook.work.models import DomainEvent

EVENT_TYPE_PATTERN: Final = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_*]+)*)$")
EVENT_TYPES_MAX: Final = 100
URL_LENGTH_MAX: Final = 2000
#: Fan-out rescans this much of the event log behind its cursor, so an event whose
#: transaction committed late (its id and time were taken before a slower commit) is not missed.
FANOUT_OVERLAP: Final = timedelta(minutes=2)
FANOUT_BATCH_MAX: Final = 1000
ROTATION_OVERLAP_HOURS_DEFAULT: Final = 24

ENABLED: Final = "enabled"
DISABLED: Final = "disabled"
PENDING: Final = "pending"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"


class WebhookCode(StrEnum):
    URL_INVALID = "webhook_url_invalid"
    EVENT_TYPES_INVALID = "webhook_event_types_invalid"
    ENDPOINT_NOT_FOUND = "webhook_endpoint_not_found"
    DELIVERY_NOT_RETRYABLE = "webhook_delivery_not_retryable"


@dataclass(frozen=True, slots=True)
class EndpointInput:
    url: str
    event_types: Sequence[str] = ("*",)
    description: str | None = None


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > URL_LENGTH_MAX:
        raise InvalidRequest(
            WebhookCode.URL_INVALID, "url must be an absolute http(s) URL", param="url"
        )
    return url


def _check_event_types(event_types: Sequence[str]) -> list[str]:
    types = sorted(set(event_types))
    if not types or len(types) > EVENT_TYPES_MAX:
        raise InvalidRequest(
            WebhookCode.EVENT_TYPES_INVALID,
            f"give 1-{EVENT_TYPES_MAX} event types (or '*')",
            param="event_types",
        )
    for index, event_type in enumerate(types):
        if not EVENT_TYPE_PATTERN.match(event_type):
            raise InvalidRequest(
                WebhookCode.EVENT_TYPES_INVALID,
                f"'{event_type}' is not an event type such as 'invoice.finalized' or 'invoice.*'",
                param=f"event_types[{index}]",
            )
    return types


def event_type_matches(patterns: Sequence[str], event_type: str) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def create_endpoint(tx: Tx, data: EndpointInput) -> WebhookEndpoint:
    now = tx.now()
    endpoint = WebhookEndpoint(
        id=new_id("we"),
        url=_check_url(data.url),
        description=data.description,
        event_types=_check_event_types(data.event_types),
        secret=signing.new_secret(),
        status=ENABLED,
        consecutive_failures=0,
        created_at=now,
        updated_at=now,
    )
    tx.session.add(endpoint)
    tx.session.flush()
    return endpoint


def get_endpoint(tx: Tx, endpoint_id: str) -> WebhookEndpoint:
    endpoint = tx.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return endpoint


def list_endpoints(tx: Tx, request: PageRequest) -> Page[WebhookEndpoint]:
    query = select(WebhookEndpoint).order_by(WebhookEndpoint.id.desc())
    if request.starting_after:
        query = query.where(WebhookEndpoint.id < request.starting_after)
    rows = list(tx.session.scalars(query.limit(request.limit + 1)))
    return page_from_rows(rows, request)


def update_endpoint(
    tx: Tx,
    endpoint_id: str,
    *,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    description: str | None = None,
) -> WebhookEndpoint:
    endpoint = get_endpoint(tx, endpoint_id)
    if url is not None:
        endpoint.url = _check_url(url)
    if event_types is not None:
        endpoint.event_types = _check_event_types(event_types)
    if description is not None:
        endpoint.description = description
    endpoint.updated_at = tx.now()
    return endpoint


def disable_endpoint(tx: Tx, endpoint_id: str, *, reason: str, by: str = "user") -> WebhookEndpoint:
    endpoint = get_endpoint(tx, endpoint_id)
    endpoint.status = DISABLED
    endpoint.disabled_reason = reason[:500]
    endpoint.disabled_by = by
    endpoint.updated_at = tx.now()
    return endpoint


def enable_endpoint(tx: Tx, endpoint_id: str) -> WebhookEndpoint:
    """Re-enable by hand; queued deliveries resume in order, starting now."""
    endpoint = get_endpoint(tx, endpoint_id)
    endpoint.status = ENABLED
    endpoint.disabled_reason = None
    endpoint.disabled_by = None
    endpoint.consecutive_failures = 0
    endpoint.updated_at = tx.now()
    for delivery in tx.session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == PENDING
        )
    ):
        delivery.next_attempt_at = tx.now()
    return endpoint


def rotate_secret(
    tx: Tx, endpoint_id: str, *, overlap_hours: int = ROTATION_OVERLAP_HOURS_DEFAULT
) -> WebhookEndpoint:
    """New secret now; the old one keeps signing alongside it for ``overlap_hours``."""
    endpoint = get_endpoint(tx, endpoint_id)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = tx.now() + timedelta(hours=overlap_hours)
    endpoint.secret = signing.new_secret()
    endpoint.updated_at = tx.now()
    return endpoint


def live_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    secrets_live = [endpoint.secret]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > now
    ):
        secrets_live.append(endpoint.previous_secret)
    return secrets_live


# Fan-out -----------------------------------------------------------------------------------


def _receives(endpoint: WebhookEndpoint) -> bool:
    return endpoint.status == ENABLED or endpoint.disabled_by == "failures"


def fan_out(tx: Tx, *, batch_max: int = FANOUT_BATCH_MAX) -> int:
    """Queue a delivery per (endpoint, matching event) for events since the cursor.

    Idempotent: the overlap rescans recent events and ``(endpoint, event)`` is unique.
    Returns the number of deliveries created.
    """
    now = tx.now()
    cursor = tx.session.get(WebhookCursor, "fan_out")
    if cursor is None:
        cursor = WebhookCursor(name="fan_out", scanned_until=now - FANOUT_OVERLAP)
        tx.session.add(cursor)
    endpoints = [e for e in tx.session.scalars(select(WebhookEndpoint)) if _receives(e)]
    if not endpoints:
        cursor.scanned_until = now
        return 0
    since = cursor.scanned_until - FANOUT_OVERLAP
    events = list(
        tx.session.execute(
            select(DomainEvent.id, DomainEvent.type, DomainEvent.created_at)
            .where(DomainEvent.created_at >= since, DomainEvent.created_at <= now)
            .order_by(DomainEvent.created_at, DomainEvent.id)
            .limit(batch_max)
        )
    )
    rows = []
    for event_id, event_type, created_at in events:
        for endpoint in endpoints:
            if created_at < endpoint.created_at:
                continue
            if event_type_matches(endpoint.event_types, event_type):
                rows.append(
                    {
                        "id": new_id("whd"),
                        "endpoint_id": endpoint.id,
                        "event_id": event_id,
                        "event_type": event_type,
                        "status": PENDING,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
    created = 0
    if rows:
        insert = postgresql.insert if tx.is_postgres else sqlite.insert
        result = tx.session.execute(
            insert(WebhookDelivery)
            .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
            .returning(WebhookDelivery.id),
            rows,
        )
        created = len(result.all())
    cursor.scanned_until = events[-1][2] if len(events) == batch_max else now
    return created


# Delivery log -----------------------------------------------------------------------------


def get_delivery(tx: Tx, delivery_id: str) -> WebhookDelivery:
    delivery = tx.session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFound("webhook delivery", delivery_id)
    return delivery


def list_deliveries(
    tx: Tx, endpoint_id: str, request: PageRequest, *, status: str | None = None
) -> Page[WebhookDelivery]:
    get_endpoint(tx, endpoint_id)
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.event_id.desc())
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if request.starting_after:
        after = get_delivery(tx, request.starting_after)
        query = query.where(WebhookDelivery.event_id < after.event_id)
    rows = list(tx.session.scalars(query.limit(request.limit + 1)))
    return page_from_rows(rows, request)


def attempts_of(tx: Tx, delivery_id: str) -> list[WebhookAttempt]:
    return list(
        tx.session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.id)
        )
    )


def retry_delivery(tx: Tx, delivery_id: str) -> WebhookDelivery:
    """Send a failed (given-up) delivery again, now."""
    delivery = get_delivery(tx, delivery_id)
    if delivery.status == SUCCEEDED:
        raise Conflict(
            WebhookCode.DELIVERY_NOT_RETRYABLE, "this delivery already succeeded", param="id"
        )
    delivery.status = PENDING
    delivery.next_attempt_at = tx.now()
    return delivery


def failing_deliveries(tx: Tx, *, limit: int = 100) -> list[WebhookDelivery]:
    """Deliveries that gave up or are retrying (for the console's anomaly page)."""
    return list(
        tx.session.scalars(
            select(WebhookDelivery)
            .where(
                (WebhookDelivery.status == FAILED)
                | ((WebhookDelivery.status == PENDING) & (WebhookDelivery.attempts > 0))
            )
            .order_by(WebhookDelivery.event_id.desc())
            .limit(limit)
        )
    )
