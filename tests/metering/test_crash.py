"""Crash safety: ``tallybook serve`` killed with SIGKILL at random moments while a client keeps
sending; after a restart the client re-sends everything, and every event is counted exactly
once (rollups included: an event and its rollup rows commit together or not at all)."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tallybook.auth.service import create_api_key
from tallybook.catalog.meter_models import Aggregation
from tallybook.db import Database
from tests.fixtures.databases import database_url_of
from tests.fixtures.factories import create_customer, create_meter

pytestmark = [pytest.mark.slow, pytest.mark.pg_only]

TALLYBOOK = os.path.join(os.path.dirname(sys.executable), "tallybook")
EVENTS = 16_000
BATCH = 400
KILLS = 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, db: Database) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url_of(db),
            "TALLYBOOK_LOG_LEVEL": "ERROR",
        }
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [TALLYBOOK, "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("tallybook serve did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def send(port: int, key: str, body: bytes) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request(
        "POST",
        "/v1/events",
        body=body,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/cloudevents-batch+json",
        },
    )
    response = connection.getresponse()
    payload = response.read()
    assert response.status == 200, payload[:500]
    result: dict[str, Any] = json.loads(payload)
    return result


def test_kill_9_during_ingestion_counts_every_event_once(pg_db: Database) -> None:
    rng = random.Random(20261101)
    with pg_db.transaction() as tx:
        customers = [create_customer(tx, external_id=f"crash-{i}") for i in range(20)]
        create_meter(tx, key="tokens", group_by={"model": "model"})
        create_meter(tx, key="requests", aggregation=Aggregation.COUNT)
        create_meter(tx, key="seats", aggregation=Aggregation.UNIQUE_COUNT, value_path="user")
        _, key = create_api_key(tx, name="crash", scopes=["events:write"])
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        {
            "specversion": "1.0",
            "id": f"crash-{i}",
            "source": "crash-test",
            "type": "llm.request",
            "subject": f"crash-{i % 20}",
            "time": (now - timedelta(minutes=i % 300)).isoformat(),
            "data": {"tokens": i % 997, "model": f"m{i % 3}", "user": f"u{i % 41}"},
        }
        for i in range(EVENTS)
    ]
    bodies = [json.dumps(events[i : i + BATCH]).encode() for i in range(0, EVENTS, BATCH)]
    server = Server(pg_db)
    try:
        for _ in range(KILLS):
            server.start()
            progress = {"batches": 0}
            stop = threading.Event()

            def client(
                port: int = server.port,
                stop: threading.Event = stop,
                progress: dict[str, int] = progress,
            ) -> None:
                order = list(range(len(bodies)))
                rng.shuffle(order)
                for index in order:
                    if stop.is_set():
                        return
                    try:
                        send(port, key, bodies[index])
                        progress["batches"] += 1
                    except (OSError, http.client.HTTPException):
                        return  # the server died mid-request

            sender = threading.Thread(target=client)
            sender.start()
            deadline = time.monotonic() + 30
            while progress["batches"] < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.05, 0.6))
            server.kill()
            stop.set()
            sender.join(timeout=60)
        # Restart and re-send everything.
        server.start()
        statuses: dict[str, int] = {}
        for body in bodies:
            for result in send(server.port, key, body)["results"]:
                statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    finally:
        server.stop()
    assert set(statuses) <= {"accepted", "duplicate"}
    assert sum(statuses.values()) == EVENTS
    assert statuses.get("duplicate", 0) > 0, "the kills should have left committed batches"
    with pg_db.engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM metering_events")).scalar()
        assert stored == EVENTS
        per_meter = dict(
            conn.execute(
                text(
                    "SELECT m.key, sum(r.event_count) FROM metering_rollups r "
                    "JOIN meters m ON m.id = r.meter_id GROUP BY m.key"
                )
            ).all()
        )
        assert per_meter == {"tokens": EVENTS, "requests": EVENTS, "seats": EVENTS}
        tokens = conn.execute(
            text(
                "SELECT r.customer_id, sum(r.quantity) FROM metering_rollups r "
                "JOIN meters m ON m.id = r.meter_id WHERE m.key = 'tokens' GROUP BY 1"
            )
        ).all()
        distinct = conn.execute(
            text(
                "SELECT v.customer_id, count(DISTINCT v.value_key) FROM metering_rollup_values v "
                "GROUP BY 1"
            )
        ).all()
    by_customer = {c.id: i for i, c in enumerate(customers)}
    for customer_id, total in tokens:
        c = by_customer[customer_id]
        assert total == sum(i % 997 for i in range(EVENTS) if i % 20 == c)
    for customer_id, users in distinct:
        c = by_customer[customer_id]
        assert users == len({i % 41 for i in range(EVENTS) if i % 20 == c})
