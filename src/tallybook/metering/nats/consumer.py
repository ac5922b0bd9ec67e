"""``tallybook worker metering``: a durable pull consumer that writes batches to the database.

Each fetched batch goes through the same pipeline as ``POST /v1/events`` in one transaction;
its messages are acknowledged only after that transaction committed. A worker killed before
the commit leaves its messages unacknowledged: JetStream redelivers them after ``ack_wait``.
A worker killed after the commit but before the acks gets them redelivered too, and the
database reports them as duplicates: every event is counted exactly once either way.
Rejected events go to the dead-letter table (and are acknowledged: the database keeps them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from tallybook.db import Database
from tallybook.metering.cloudevents import DECODER, parse_time
from tallybook.metering.ingest import IngestResult, ingest_events
from tallybook.metering.limits import BATCH_EVENTS_MAX
from tallybook.metering.nats.stream import (
    RECEIVED_AT_HEADER,
    StreamSpec,
    ensure_consumer,
    ensure_stream,
)
from tallybook.metering.settings import MeteringSettings

log = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS: Final = 1.0
RETRY_DELAY_SECONDS: Final = 2.0


@dataclass
class ConsumerStats:
    batches: int = 0
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    failures: int = 0
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _decode(message: Any, now: datetime) -> tuple[Any, datetime]:
    headers = message.headers or {}
    received = parse_time(headers.get(RECEIVED_AT_HEADER)) or now
    try:
        return DECODER.decode(message.data), received
    except Exception:  # not JSON: the pipeline rejects it (event_invalid) into a dead letter
        return message.data.decode("utf-8", "replace"), received


def commit_batch(db: Database, messages: list[Any], settings: MeteringSettings) -> IngestResult:
    """One transaction for one fetched batch (runs in a worker thread)."""
    now = db.clock.now()
    decoded = [_decode(message, now) for message in messages]
    with db.transaction(actor="system:metering-worker") as tx:
        return ingest_events(
            tx,
            [event for event, _ in decoded],
            settings=settings,
            received_at=[received for _, received in decoded],
            path="nats",
        )


async def run_consumer(
    db: Database,
    settings: MeteringSettings,
    *,
    stop: asyncio.Event,
    batch_size: int = BATCH_EVENTS_MAX,
    setup: bool = True,
    on_committed: Callable[[list[Any], IngestResult], Any] | None = None,
    stats: ConsumerStats | None = None,
) -> ConsumerStats:
    """Consume until ``stop`` is set. ``on_committed`` runs after each commit, before the acks
    (tests use it to kill a worker at the worst moment)."""
    import nats

    stats = stats or ConsumerStats()
    spec = StreamSpec.of(settings)
    nc = await nats.connect(settings.nats_url, connect_timeout=5, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream()
        if setup:
            await ensure_stream(js, spec)
            await ensure_consumer(js, spec)
        subscription = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        log.info(
            "metering consumer started", extra={"stream": spec.stream, "durable": spec.durable}
        )
        while not stop.is_set():
            try:
                messages = await subscription.fetch(batch_size, timeout=FETCH_TIMEOUT_SECONDS)
            except TimeoutError:  # nats.errors.TimeoutError is one too
                continue
            if not messages:
                continue
            try:
                result = await asyncio.to_thread(commit_batch, db, messages, settings)
            except Exception as exc:  # the database is down or refused: redeliver later
                stats.failures += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("metering batch failed; messages will be redelivered")
                for message in messages:
                    await message.nak(delay=RETRY_DELAY_SECONDS)
                await asyncio.sleep(RETRY_DELAY_SECONDS)
                continue
            if on_committed is not None:
                outcome = on_committed(messages, result)
                if asyncio.iscoroutine(outcome):
                    await outcome
            for message in messages:
                await message.ack()
            await nc.flush()
            stats.batches += 1
            stats.events += len(messages)
            stats.accepted += result.accepted
            stats.duplicates += result.duplicates
            stats.rejected += result.rejected
    finally:
        # Acks were flushed after each batch; anything unacknowledged is redelivered anyway.
        await nc.close()
    log.info("metering consumer stopped", extra={"events": stats.events})
    return stats
