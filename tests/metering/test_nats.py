"""The scale-out path against the real JetStream server: ingestion nodes publish, consumers
commit then acknowledge; a consumer dying mid-batch (task or process) loses nothing and counts
nothing twice, whatever JetStream redelivers."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tallybook.api.app import create_app
from tallybook.auth.service import create_api_key
from tallybook.db import Database
from tallybook.http.edge import clear_caller_cache
from tallybook.kit.settings import Settings
from tallybook.metering import service
from tallybook.metering.ingest import IngestResult
from tallybook.metering.models import MeteringEvent
from tallybook.metering.nats.consumer import ConsumerStats, run_consumer
from tallybook.metering.nats.publisher import EventPublisher
from tallybook.metering.nats.stream import StreamSpec, ensure_consumer, ensure_stream
from tallybook.metering.settings import MeteringSettings
from tests.conftest import TEST_EPOCH
from tests.fixtures.databases import database_url_of
from tests.fixtures.factories import create_customer, create_meter
from tests.metering.helpers import event
from tests.metering.nats_support import (
    consumer_state,
    delete_stream,
    env_of,
    require_nats,
    run_async,
    unique_settings,
    wait_for,
)

pytestmark = [pytest.mark.nats, pytest.mark.pg_only]

TALLYBOOK = os.path.join(os.path.dirname(sys.executable), "tallybook")


@pytest.fixture
def nats_settings() -> Iterator[MeteringSettings]:
    require_nats()
    settings = unique_settings()
    yield settings
    run_async(delete_stream(settings))


@pytest.fixture
def world(pg_db: Database) -> dict[str, Any]:
    with pg_db.transaction() as tx:
        customers = [create_customer(tx, external_id=f"c{i}") for i in range(3)]
        tokens = create_meter(tx, key="tokens")
    return {"customers": customers, "tokens": tokens}


def events_for(count: int, *, start: int = 0) -> list[dict[str, Any]]:
    return [
        event(
            f"e{i}",
            subject=f"c{i % 3}",
            time=TEST_EPOCH - timedelta(minutes=i % 600),
            data={"tokens": i},
        )
        for i in range(start, start + count)
    ]


def expected_tokens(ids: range, customer: int) -> Decimal:
    return Decimal(sum(i for i in ids if i % 3 == customer))


def stored_count(db: Database) -> int:
    with db.read() as tx:
        return int(tx.session.scalar(select(func.count()).select_from(MeteringEvent)) or 0)


def assert_totals(db: Database, world: dict[str, Any], ids: range) -> None:
    with db.read() as tx:
        for c, customer in enumerate(world["customers"]):
            value = service.usage_total(
                tx,
                meter_id=world["tokens"].id,
                customer_id=customer.id,
                start=TEST_EPOCH - timedelta(days=2),
                end=TEST_EPOCH + timedelta(hours=1),
            )
            assert value == expected_tokens(ids, c)


async def publish(settings: MeteringSettings, events: list[Any], at: Any = TEST_EPOCH) -> None:
    publisher = EventPublisher(settings.nats_url, StreamSpec.of(settings))
    try:
        for start in range(0, len(events), 1000):
            await publisher.publish(events[start : start + 1000], at)
    finally:
        await publisher.close()


async def consume_until(
    db: Database, settings: MeteringSettings, stored: int, **kwargs: Any
) -> ConsumerStats:
    stop = asyncio.Event()
    task = asyncio.create_task(run_consumer(db, settings, stop=stop, **kwargs))

    async def done() -> bool:
        if task.done():
            task.result()
        pending, unacked = await consumer_state(settings)
        return pending == 0 and unacked == 0 and stored_count(db) >= stored

    await wait_for(done, what="the consumer to drain the stream")
    stop.set()
    return await task


def test_published_events_are_committed_exactly_once(
    pg_db: Database, world: dict[str, Any], nats_settings: MeteringSettings
) -> None:
    events = events_for(1500)
    # Client retries: the same events published again (JetStream drops most inside its
    # duplicate window; the database catches whatever gets through) plus a bad event.
    bad = event("bad", subject="nobody", data={"tokens": 1})

    async def scenario() -> ConsumerStats:
        await publish(nats_settings, events + events[:200] + [bad])
        return await consume_until(pg_db, nats_settings, 1500, batch_size=400)

    stats = run_async(scenario())
    assert stored_count(pg_db) == 1500
    assert stats.accepted == 1500 and stats.rejected == 1
    assert_totals(pg_db, world, range(1500))
    with pg_db.read() as tx:
        letters = service.list_dead_letters(tx).data
        assert [(d.event_id, d.code) for d in letters] == [("bad", "customer_not_found")]


def test_a_consumer_dying_after_commit_before_ack_counts_nothing_twice(
    pg_db: Database, world: dict[str, Any], nats_settings: MeteringSettings
) -> None:
    events = events_for(900)

    async def scenario() -> None:
        import nats

        nc = await nats.connect(nats_settings.nats_url)
        spec = StreamSpec.of(nats_settings)
        await ensure_stream(nc.jetstream(), spec)
        # A short ack wait so redelivery happens within the test.
        await ensure_consumer(nc.jetstream(), spec, ack_wait_seconds=1.0)
        await nc.close()
        await publish(nats_settings, events)

        class Crash(Exception):
            pass

        def crash_after_commit(messages: list[Any], result: IngestResult) -> None:
            raise Crash(f"killed after committing {len(messages)} events, before any ack")

        stop = asyncio.Event()
        with pytest.raises(Crash):
            await run_consumer(
                pg_db, nats_settings, stop=stop, batch_size=300, on_committed=crash_after_commit
            )
        assert stored_count(pg_db) == 300
        # A fresh consumer gets the unacknowledged batch again, then the rest.
        stats = await consume_until(pg_db, nats_settings, 900, batch_size=300)
        assert stats.duplicates >= 300
        assert stats.accepted == 600

    run_async(scenario())
    assert stored_count(pg_db) == 900
    assert_totals(pg_db, world, range(900))


def test_worker_processes_killed_mid_batch(
    pg_db: Database, world: dict[str, Any], nats_settings: MeteringSettings
) -> None:
    """``tallybook worker metering`` processes killed with SIGKILL at random moments while a
    backlog drains: after restarts every event is counted exactly once."""
    total = 12_000
    rng = random.Random(5)

    async def prepare() -> None:
        import nats

        nc = await nats.connect(nats_settings.nats_url)
        spec = StreamSpec.of(nats_settings)
        await ensure_stream(nc.jetstream(), spec)
        await ensure_consumer(nc.jetstream(), spec, ack_wait_seconds=2.0)
        await nc.close()
        await publish(nats_settings, events_for(total))

    run_async(prepare())
    env = {
        **os.environ,
        **env_of(nats_settings),
        "DATABASE_URL": database_url_of(pg_db),
        "TALLYBOOK_LOG_LEVEL": "WARNING",
        # The test clock's "now" is in the past of the wall clock: allow its events.
        "TALLYBOOK_LATE_EVENT_MAX_DAYS": "36500",
    }

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [TALLYBOOK, "worker", "metering", "--batch-size", "500"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    kills = 0
    while kills < 4:
        worker = start()
        before = stored_count(pg_db)
        deadline = time.monotonic() + 30
        # Wait until it is clearly working, then kill it at a random moment.
        while stored_count(pg_db) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.4))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
        if stored_count(pg_db) >= total:
            break
    worker = start()
    try:

        async def drained() -> bool:
            pending, unacked = await consumer_state(nats_settings)
            return pending == 0 and unacked == 0 and stored_count(pg_db) >= total

        run_async(wait_for(drained, seconds=120, what="the restarted worker to drain"))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert stored_count(pg_db) == total
    assert_totals(pg_db, world, range(total))


def test_ingestion_node_in_nats_mode(
    pg_db: Database, world: dict[str, Any], nats_settings: MeteringSettings
) -> None:
    clear_caller_cache()
    app = create_app(pg_db, Settings(extra=env_of(nats_settings)))
    with pg_db.transaction() as tx:
        _, secret = create_api_key(tx, name="node", scopes=["admin"])
    with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as client:
        import json

        response = client.post(
            "/v1/events",
            content=json.dumps(events_for(10), default=str),
            headers={"content-type": "application/cloudevents-batch+json"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["queued"] == 10
        assert {r["status"] for r in body["results"]} == {"queued"}
        # Nothing is in the database until a consumer commits it.
        assert stored_count(pg_db) == 0
        run_async(consume_until(pg_db, nats_settings, 10))
        assert_totals(pg_db, world, range(10))
        status = client.get("/v1/metering/status").json()
        assert status["ingest_mode"] == "nats"
        assert status["queue"]["pending"] == 0
    clear_caller_cache()
