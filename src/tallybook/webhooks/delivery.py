"""Sending webhooks: FIFO per endpoint, the Standard Webhooks retry schedule, a delivery log.

Each endpoint's oldest pending delivery is its head; later deliveries wait behind it, so a
receiver sees events in the order they happened. A head is leased (claimed and committed)
before the HTTP call and its outcome recorded after, so a crash mid-call only causes a retry,
never a lost event (receivers deduplicate on ``webhook-id``, which is the event id).

A delivery that fails through the whole schedule (about three days) is marked failed, the
endpoint is disabled (``disabled_by = failures``) and keeps queueing events until a person
re-enables it. ``410 Gone`` disables at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import httpx
import orjson
from sqlalchemy import and_, exists, select
from sqlalchemy.orm import aliased

from tallybook.db import Database, Tx
from tallybook.kit.clock import isoformat_z
from tallybook.kit.ids import new_id
from tallybook.observability.metrics import counter, histogram
from tallybook.webhooks import service, signing
from tallybook.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tallybook.work.models import DomainEvent

log = logging.getLogger(__name__)

#: Delay before attempt n+1 after attempt n failed (Standard Webhooks' example schedule).
RETRY_DELAYS_SECONDS: Final = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
ATTEMPTS_MAX: Final = len(RETRY_DELAYS_SECONDS) + 1
TIMEOUT_SECONDS: Final = 10.0
LEASE_SECONDS: Final = 60
RESPONSE_EXCERPT_LENGTH_MAX: Final = 2048
CLAIM_BATCH_MAX: Final = 100
CONCURRENCY_MAX: Final = 8
USER_AGENT: Final = "tallybook-webhooks/1"

DELIVERIES = counter(
    "tallybook_webhook_deliveries_total", "Outbound webhook attempts by outcome", ("outcome",)
)
DELIVERY_SECONDS = histogram("tallybook_webhook_delivery_seconds", "Outbound webhook latency")


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    delivery_id: str
    endpoint_id: str
    url: str
    secrets: list[str]
    event_id: str
    body: bytes
    attempt: int


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    status_code: int | None
    error: str | None
    duration_ms: int
    excerpt: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def event_body(event: DomainEvent) -> bytes:
    return orjson.dumps(
        {
            "id": event.id,
            "type": event.type,
            "timestamp": isoformat_z(event.created_at),
            "data": event.data,
        }
    )


def claim_heads(tx: Tx, *, limit: int = CLAIM_BATCH_MAX) -> list[DeliveryJob]:
    now = tx.now()
    older = aliased(WebhookDelivery)
    blocked = exists().where(
        and_(
            older.endpoint_id == WebhookDelivery.endpoint_id,
            older.status == service.PENDING,
            older.event_id < WebhookDelivery.event_id,
        )
    )
    query = (
        select(WebhookDelivery, WebhookEndpoint, DomainEvent)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(DomainEvent, DomainEvent.id == WebhookDelivery.event_id)
        .where(
            WebhookDelivery.status == service.PENDING,
            WebhookDelivery.next_attempt_at <= now,
            WebhookEndpoint.status == service.ENABLED,
            ~blocked,
        )
        .order_by(WebhookDelivery.event_id)
        .limit(limit)
    )
    if tx.is_postgres:
        query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
    jobs = []
    for delivery, endpoint, event in tx.session.execute(query):
        delivery.next_attempt_at = now + timedelta(seconds=LEASE_SECONDS)
        delivery.attempts += 1
        jobs.append(
            DeliveryJob(
                delivery_id=delivery.id,
                endpoint_id=endpoint.id,
                url=endpoint.url,
                secrets=service.live_secrets(endpoint, now),
                event_id=event.id,
                body=event_body(event),
                attempt=delivery.attempts,
            )
        )
    return jobs


def send(
    client: httpx.Client, job: DeliveryJob, *, wall_clock: Callable[[], float]
) -> AttemptOutcome:
    timestamp = int(wall_clock())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": job.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.signature_header(
            job.secrets, job.event_id, timestamp, job.body
        ),
    }
    started = time.perf_counter()
    try:
        response = client.post(job.url, content=job.body, headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        duration_ms = int((time.perf_counter() - started) * 1000)
        return AttemptOutcome(None, f"{type(exc).__name__}: {exc}"[:1000], duration_ms, None)
    duration_ms = int((time.perf_counter() - started) * 1000)
    excerpt = response.text[:RESPONSE_EXCERPT_LENGTH_MAX].replace("\x00", "")
    error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return AttemptOutcome(response.status_code, error, duration_ms, excerpt)


def record(tx: Tx, job: DeliveryJob, outcome: AttemptOutcome) -> str:
    """Log the attempt and move the delivery on. Returns the delivery's new status."""
    now = tx.now()
    tx.session.add(
        WebhookAttempt(
            id=new_id("wha"),
            delivery_id=job.delivery_id,
            endpoint_id=job.endpoint_id,
            attempted_at=now,
            status_code=outcome.status_code,
            duration_ms=outcome.duration_ms,
            error=outcome.error,
            response_excerpt=outcome.excerpt,
        )
    )
    delivery = tx.session.get(WebhookDelivery, job.delivery_id)
    endpoint = tx.session.get(WebhookEndpoint, job.endpoint_id)
    assert delivery is not None and endpoint is not None
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    if outcome.succeeded:
        delivery.status = service.SUCCEEDED
        delivery.delivered_at = now
        endpoint.consecutive_failures = 0
        DELIVERIES.labels("succeeded").inc()
        return delivery.status
    endpoint.consecutive_failures += 1
    DELIVERIES.labels("failed").inc()
    if outcome.status_code == 410:
        service.disable_endpoint(
            tx, endpoint.id, reason="the endpoint answered 410 Gone", by="failures"
        )
        delivery.next_attempt_at = now
        return delivery.status
    if delivery.attempts >= ATTEMPTS_MAX:
        delivery.status = service.FAILED
        service.disable_endpoint(
            tx,
            endpoint.id,
            reason=f"delivery of {delivery.event_id} failed {delivery.attempts} times",
            by="failures",
        )
        return delivery.status
    base = RETRY_DELAYS_SECONDS[delivery.attempts - 1]
    delay = base * (0.9 + 0.2 * random.random())
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    return delivery.status


def deliver_due(
    db: Database,
    *,
    client: httpx.Client | None = None,
    limit: int = CLAIM_BATCH_MAX,
    wall_clock: Callable[[], float] = time.time,
) -> dict[str, int]:
    """Claim the due heads, send them (in parallel across endpoints), record the outcomes."""
    with db.transaction(actor="system:webhooks") as tx:
        jobs = claim_heads(tx, limit=limit)
    counts = {"succeeded": 0, "failed": 0}
    if not jobs:
        return counts
    own_client = client is None
    http = client or httpx.Client(follow_redirects=False)
    try:
        with ThreadPoolExecutor(max_workers=min(CONCURRENCY_MAX, len(jobs))) as pool:
            outcomes = list(pool.map(lambda j: send(http, j, wall_clock=wall_clock), jobs))
    finally:
        if own_client:
            http.close()
    for job, outcome in zip(jobs, outcomes, strict=True):
        DELIVERY_SECONDS.observe(outcome.duration_ms / 1000)
        with db.transaction(actor="system:webhooks") as tx:
            record(tx, job, outcome)
        counts["succeeded" if outcome.succeeded else "failed"] += 1
    return counts
