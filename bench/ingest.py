"""Metering ingestion end to end over HTTP, beside the raw COPY baseline measured in the same run.

    .venv/bin/python bench/ingest.py                 # 200k events, batches of 1,000
    .venv/bin/python bench/ingest.py --events 50000  # quicker

What it does:

1. creates its own PostgreSQL database (``tb_bench_ingest_<random>``), migrates it, creates
   customers, two meters (``tokens``: sum grouped by ``model``; ``requests``: count) and an
   API key;
2. starts ``tallybook serve`` on it (one uvicorn process);
3. runs a separate client process that sends batches of 1,000 CloudEvents over keep-alive HTTP
   connections: ~10% of each batch re-sends events of the last answered batch (client retries,
   duplicates), event
   ids are half time-ordered (UUIDv7 layout) and half random UUIDv4, customers follow a
   heavy-tailed (Zipf) mix, and each batch is stamped with its send time;
4. reads ``tallybook_metering_lag_seconds`` from ``/metrics`` and the client's own send → answer
   times (an upper bound of event time → commit, since the commit precedes the answer);
5. truncates the events table and COPYs the same accepted rows into it: the raw baseline;
6. prints both figures and their ratio, and drops the database.
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import json
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
TALLYBOOK = str(ROOT / ".venv" / "bin" / "tallybook")
ADMIN_URL = os.environ.get("TALLYBOOK_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
MODELS = ("gpt-large", "gpt-small", "embed", "rerank")


def uuid7() -> str:
    """A time-ordered id (UUIDv7 layout: 48 bits of Unix ms, then random)."""
    ms = time.time_ns() // 1_000_000
    value = (ms << 80) | (7 << 76) | (secrets.randbits(12) << 64) | (2 << 62) | secrets.randbits(62)
    return str(uuid.UUID(int=value))


# Client -------------------------------------------------------------------------------------------


def client(args: argparse.Namespace) -> None:
    """Runs in its own process; prints one JSON line of results."""
    rng = random.Random(args.seed)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(args.customers)]
    cumulative = list(_accumulate(weights))
    batches_total = args.events // args.batch
    fresh_per_batch = args.batch - int(args.batch * args.duplicates)
    lock = threading.Lock()
    state: dict[str, Any] = {"next": 0, "previous": [], "latencies": [], "accepted": 0, "sent": 0}
    previous_lock = threading.Lock()

    def fresh_event() -> bytes:
        event_id = uuid7() if rng.random() < 0.5 else str(uuid.uuid4())
        customer = bisect.bisect_left(cumulative, rng.random() * cumulative[-1])
        body = {
            "specversion": "1.0",
            "id": event_id,
            "source": "bench-client",
            "type": "llm.request",
            "subject": f"bench-{customer:05d}",
            "time": "__TIME__",
            "data": {"tokens": rng.randrange(1, 4000), "model": rng.choice(MODELS)},
        }
        return json.dumps(body, separators=(",", ":")).encode()

    # Templates are built before the clock starts, so the client spends its time sending.
    templates = [[fresh_event() for _ in range(fresh_per_batch)] for _ in range(batches_total)]

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=120)
        headers = {
            "Authorization": f"Bearer {args.key}",
            "Content-Type": "application/cloudevents-batch+json",
        }
        while True:
            with lock:
                index = state["next"]
                if index >= batches_total:
                    break
                state["next"] += 1
            sent_at = time.time()
            stamp = datetime.fromtimestamp(sent_at, UTC).isoformat().replace("+00:00", "Z")
            fresh = [t.replace(b"__TIME__", stamp.encode()) for t in templates[index]]
            with previous_lock:
                # Retries re-send events of a batch that was already answered (committed).
                resend = list(state["previous"])
            events = fresh + resend
            body = b"[" + b",".join(events) + b"]"
            connection.request("POST", "/v1/events", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            answered = time.time()
            if response.status != 200:
                raise SystemExit(f"HTTP {response.status}: {payload[:300]!r}")
            result = json.loads(payload)
            with previous_lock:
                state["previous"] = fresh[: args.batch - fresh_per_batch]
            with lock:
                state["latencies"].append(answered - sent_at)
                state["accepted"] += result["accepted"]
                state["sent"] += len(events)
                state.setdefault("duplicates", 0)
                state["duplicates"] += result["duplicates"]
                state.setdefault("rejected", 0)
                state["rejected"] += result["rejected"] + result["conflicts"]
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies = sorted(state["latencies"])
    print(
        json.dumps(
            {
                "elapsed": elapsed,
                "sent": state["sent"],
                "accepted": state["accepted"],
                "duplicates": state.get("duplicates", 0),
                "rejected": state.get("rejected", 0),
                "batches": len(latencies),
                "latency_p50": statistics.median(latencies),
                "latency_p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                "latency_max": latencies[-1],
            }
        )
    )


def _accumulate(values: list[float]) -> Any:
    total = 0.0
    for value in values:
        total += value
        yield total


# Orchestration ------------------------------------------------------------------------------------


def _database_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def setup_database(url: str, customers: int) -> str:
    from tallybook.auth.service import create_api_key
    from tallybook.catalog.meters import MeterInput
    from tallybook.customers import service as customers_service
    from tallybook.db import Database
    from tallybook.db.migrate import upgrade
    from tallybook.metering import service

    db = Database(url)
    upgrade(db.engine)
    with db.transaction(actor="bench") as tx:
        for index in range(customers):
            customers_service.create(
                tx, customers_service.CustomerInput(external_id=f"bench-{index:05d}")
            )
        service.define_meter(
            tx,
            MeterInput(
                key="tokens",
                event_type="llm.request",
                aggregation="sum",
                value_path="tokens",
                group_by={"model": "model"},
            ),
        )
        service.define_meter(
            tx, MeterInput(key="requests", event_type="llm.request", aggregation="count")
        )
        _, secret = create_api_key(tx, name="bench", scopes=["events:write"])
    db.dispose()
    return secret


def start_server(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TALLYBOOK_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [TALLYBOOK, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("tallybook serve did not start")


def lag_histogram(port: int) -> dict[float, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    buckets = {}
    for match in re.finditer(
        r'^tallybook_metering_lag_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', text, re.M
    ):
        bound = float("inf") if match.group(1) == "+Inf" else float(match.group(1))
        buckets[bound] = float(match.group(2))
    return buckets


def quantile(buckets: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding the q-quantile."""
    total = buckets.get(float("inf"), 0.0)
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return bound
    return float("inf")


def copy_baseline(url: str) -> tuple[int, float]:
    """TRUNCATE the events table, then COPY the same rows back into it."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT source, event_id, type, subject, customer_id, time, data, content_hash, "
            "received_at, late, meters_seen FROM metering_events ORDER BY seq"
        ).fetchall()
        connection.execute("TRUNCATE metering_events")
        connection.commit()
        buffer = []
        for row in rows:
            fields = []
            for value in row:
                if value is None:
                    fields.append("\\N")
                elif isinstance(value, bool):
                    fields.append("t" if value else "f")
                elif isinstance(value, datetime):
                    fields.append(value.isoformat())
                else:
                    fields.append(
                        str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                    )
            buffer.append("\t".join(fields))
        payload = ("\n".join(buffer) + "\n").encode()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            with cursor.copy(
                "COPY metering_events (source, event_id, type, subject, customer_id, time, data, "
                "content_hash, received_at, late, meters_seen) FROM STDIN"
            ) as copy:
                for offset in range(0, len(payload), 1 << 20):
                    copy.write(payload[offset : offset + (1 << 20)])
        connection.commit()
        return len(rows), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--duplicates", type=float, default=0.10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="tallybook serve --workers")
    parser.add_argument("--port", type=int, default=18_000 + random.randrange(1000))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="Keep the database")
    args = parser.parse_args()
    if args.client:
        client(args)
        return

    name = f"tb_bench_ingest_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(name)
    server = None
    try:
        key = setup_database(url, args.customers)
        server = start_server(url, args.port, args.workers)
        before = lag_histogram(args.port)
        command = [
            sys.executable,
            __file__,
            "--client",
            "--key",
            key,
            *("--port", str(args.port), "--events", str(args.events), "--batch", str(args.batch)),
            *("--customers", str(args.customers), "--duplicates", str(args.duplicates)),
            *("--concurrency", str(args.concurrency), "--seed", str(args.seed)),
        ]
        output = subprocess.run(command, capture_output=True, text=True, check=False)
        if output.returncode != 0:
            raise SystemExit(f"client failed: {output.stderr[-2000:]}")
        result = json.loads(output.stdout.strip().splitlines()[-1])
        after = lag_histogram(args.port)
        lag = {bound: after.get(bound, 0) - before.get(bound, 0) for bound in after}
        server.terminate()
        server.wait(timeout=30)
        server = None
        copied, copy_seconds = copy_baseline(url)
    finally:
        if server is not None:
            server.kill()
        if not args.keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    http_rate = result["sent"] / result["elapsed"]
    copy_rate = copied / copy_seconds
    print(f"metering ingestion, end to end over HTTP ({name})")
    print(
        f"  events sent          {result['sent']:>10,}  in {result['batches']} batches of "
        f"{args.batch} ({args.concurrency} connections, {args.workers} server process(es))"
    )
    print(
        f"  accepted / duplicate {result['accepted']:>10,} / {result['duplicates']:,}"
        f"  (rejected or conflicts: {result['rejected']})"
    )
    print(f"  end to end           {http_rate:>10,.0f} events/s")
    print(f"  raw COPY baseline    {copy_rate:>10,.0f} rows/s  ({copied:,} rows, same table)")
    print(f"  ratio                {http_rate / copy_rate:>10.1%} of raw COPY")
    print(
        f"  batch answer time    p50 {result['latency_p50'] * 1000:.0f} ms, "
        f"p99 {result['latency_p99'] * 1000:.0f} ms, max {result['latency_max'] * 1000:.0f} ms"
    )
    print(
        f"  metering lag (event time → commit): p50 ≤ {quantile(lag, 0.5)} s, "
        f"p99 ≤ {quantile(lag, 0.99)} s (histogram bucket bounds); "
        f"client-observed p99 ≤ {result['latency_p99']:.3f} s"
    )


if __name__ == "__main__":
    main()
