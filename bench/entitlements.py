"""Entitlement checks over HTTP for 10,000 customers while events are being ingested, beside a
raw baseline measured in the same run, and freshness (ingest answered → check sees it).

    .venv/bin/python bench/entitlements.py                        # 10,000 customers, 2 workers
    .venv/bin/python bench/entitlements.py --paced-rates 1000,2000,3000 --seconds 10
    .venv/bin/python bench/entitlements.py --keep                 # keep the database, then:
    .venv/bin/python bench/entitlements.py --reuse tb_bench_entitlements_<…>

What it does:

1. creates its own PostgreSQL database (``tb_bench_entitlements_<random>``), migrates it and
   builds 10,000 customers, each subscribed ten days ago (so the current period spans
   ten days of hourly rollups) to one of two plans with a metered feature (hard limit) and a
   boolean feature; ingests a history of usage (events in random hours of those ten days);
2. serves the API with ``--workers`` uvicorn processes, the app plus one extra lane for the
   baseline: ``POST /bench/baseline`` goes through the check's own lane (the edge, the bearer
   key, the scope, the raw body decoded by msgspec, the hot-read pool on the event loop) and
   reads one customer row by primary key, so the ratio isolates what the check itself costs;
3. drives the server with ``bench/loadgen.c`` (``--load-generator c``, the default: compiled
   on first use, one C thread, so the client takes a small share of one core; ``python``
   runs the older client processes instead) over 16 keep-alive connections: random
   customers, 90 % metered with a quantity, 10 % boolean. Meanwhile an ingest thread posts
   batches of usage events at ``--ingest-rate`` and a freshness probe posts one event for a
   customer and immediately checks that customer, measuring from the ingest's answer until a
   check shows the usage. Two kinds of rounds, baseline and check alternating: *saturated*
   (every connection sends its next request as soon as the last is answered: the most the
   server answers per second; latency there is mostly queueing, connections ÷ rate) and
   *paced* (open loop: request k is due at t0 + k / rate, whatever the server does; latency
   counts from when it was due, so a server falling behind shows in it: the latency at that
   rate);
4. prints checks per second and p50/p99/p99.9 latency beside the baseline's, the ratio, the
   CPU each round used per request answered (the server's processes and PostgreSQL's, read
   from ``/proc``; ingestion included, so the check's own cost is its difference from the
   baseline's), the freshness figures and which path answered
   (``tallybook_entitlements_checks_total``) and where state rows came from (kept by the
   mirror, or read: ``tallybook_entitlements_mirror_total``; one server process's counts),
   and drops the database (unless ``--keep``).

``TALLYBOOK_ENTITLEMENTS_MIRROR=off`` in the environment serves the checks without the
mirror (``entitlements.mirror``): every check reads its state row.

CPU per request is the figure to compare across runs: this machine's speed drifts by tens of
percent within an hour (a fixed Python loop took 0.44 to 0.71 s in five runs in a row), and
latency drifts with it; CPU per request and the ratios to the same run's baseline drift much
less. ``--saturated-rounds 0`` runs only the paced rounds (after a short warm-up).
"""

from __future__ import annotations

import argparse
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("TALLYBOOK_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
HISTORY_DAYS = 10
KINDS = ("baseline", "check", "baseline_paced", "check_paced")


# The server --------------------------------------------------------------------------------------


def bench_app() -> Any:
    """``tallybook serve``'s app plus the baseline lane (uvicorn factory, one per worker).

    The baseline goes through the same lane as the check (``entitlements.endpoints.CheckLane``
    at the edge: bearer key, scope, raw body decoded by msgspec, the same hot-read pool on
    the event loop) and does a primary-key read of one customer row instead of the check."""
    from tallybook.api.app import app_from_env, fastapi_of
    from tallybook.entitlements import endpoints

    app = app_from_env()
    api = fastapi_of(app)

    async def primary_key_read(state: Any, actor: str, request_id: str, body: bytes) -> bytes:
        customer = endpoints.decode_check(body).customer
        row = await state.hot_reads.fetchone(
            "SELECT id, external_id FROM customers WHERE id = %(customer)s", {"customer": customer}
        )
        return json.dumps({"object": "baseline", "found": row is not None}).encode()

    app.lanes["/bench/baseline"] = endpoints.CheckLane(api.state, work=primary_key_read)
    return app


def start_server(url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TALLYBOOK_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    # As `tallybook serve --workers N` runs it (tallybook.http.server), with the bench's factory.
    launch = (
        "import uvicorn; from tallybook.http.server import uvicorn_options; "
        f"uvicorn.run('bench.entitlements:bench_app', factory=True, port={port}, "
        f"workers={workers}, access_log=False, timeout_keep_alive=60, log_level='warning', "
        "**uvicorn_options())"
    )
    command = [sys.executable, "-c", launch]
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit("the server did not start")


# Setup --------------------------------------------------------------------------------------------


def setup_database(
    url: str, customers: int, events_per_customer: int
) -> tuple[str, list[str], list[str]]:
    from tallybook.auth.service import create_api_key
    from tallybook.catalog import features, plans
    from tallybook.catalog.meters import MeterInput
    from tallybook.customers import service as customers_service
    from tallybook.db import Database
    from tallybook.db.migrate import upgrade
    from tallybook.kit.clock import TestClock
    from tallybook.metering import service as metering
    from tallybook.subscriptions import service as subscriptions
    from tallybook.subscriptions.domain import CreateRequest

    started = datetime.now(UTC).replace(second=17, microsecond=0) - timedelta(days=HISTORY_DAYS)
    db = Database(url)
    upgrade(db.engine)
    back = db.with_clock(TestClock(started))
    with back.transaction(actor="bench") as tx:
        meter = metering.define_meter(
            tx,
            MeterInput(
                key="tokens", event_type="llm.request", aggregation="sum", value_path="tokens"
            ),
        )
        tokens = features.create(
            tx,
            features.FeatureInput(key="tokens", name="Tokens", type="metered", meter_id=meter.id),
        )
        sso = features.create(tx, features.FeatureInput(key="sso", name="SSO", type="boolean"))
        versions = []
        for key, limit in (("starter", "2000000"), ("pro", "20000000")):
            plan = plans.create_plan(tx, plans.PlanInput(key=key, name=key.title()))
            version = plans.create_version(
                tx,
                plan.id,
                {
                    "currency": "USD",
                    "interval": "month",
                    "interval_count": 1,
                    "prices": [
                        {
                            "type": "flat",
                            "key": "fee",
                            "name": "Fee",
                            "amount_minor": 2000,
                            "timing": "in_advance",
                        }
                    ],
                    "entitlements": [
                        {"feature": tokens.id, "limit": limit, "enforcement": "hard"},
                        {"feature": sso.id, "enabled": key == "pro"},
                    ],
                },
            )
            plans.publish(tx, version.id)
            versions.append(version.id)
        _, secret = create_api_key(tx, name="bench", scopes=["entitlements:read", "events:write"])
    ids: list[str] = []
    externals: list[str] = []
    batch = 500
    for offset in range(0, customers, batch):
        with back.transaction(actor="bench") as tx:
            for index in range(offset, min(offset + batch, customers)):
                customer = customers_service.create(
                    tx,
                    customers_service.CustomerInput(
                        external_id=f"bench-{index:05d}", currency="USD"
                    ),
                )
                subscriptions.create(
                    tx,
                    CreateRequest(customer=customer.id, plan_version_id=versions[index % 2]),
                )
                ids.append(customer.id)
                externals.append(customer.external_id)
        print(f"  customers {len(ids):,}/{customers:,}", file=sys.stderr, flush=True)
    rng = random.Random(5)
    hours = HISTORY_DAYS * 24
    pending: list[dict[str, Any]] = []
    sent = 0
    for external in externals:
        for _ in range(events_per_customer):
            at = started + timedelta(hours=rng.randrange(hours), minutes=rng.randrange(60))
            pending.append(
                {
                    "specversion": "1.0",
                    "id": secrets.token_hex(8),
                    "source": "bench-history",
                    "type": "llm.request",
                    "subject": external,
                    "time": at.isoformat().replace("+00:00", "Z"),
                    "data": {"tokens": rng.randrange(1, 5000)},
                }
            )
            if len(pending) == 1000:
                with db.transaction(actor="bench") as tx:
                    metering.ingest_events(tx, pending)
                sent += len(pending)
                pending = []
    if pending:
        with db.transaction(actor="bench") as tx:
            metering.ingest_events(tx, pending)
        sent += len(pending)
    print(f"  history: {sent:,} events", file=sys.stderr, flush=True)
    db.dispose()
    # A maintained database: statistics gathered, dead rows of the set-up's updates gone (what
    # autovacuum does on a live server; it is off on this machine's PostgreSQL).
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
    return secret, ids, externals


# The client ---------------------------------------------------------------------------------------


def check_bodies(ids: list[str], seed: int) -> list[str]:
    """20,000 request bodies: random customers, 90 % metered with a quantity, 10 % boolean."""
    rng = random.Random(seed)
    bodies = []
    for _ in range(20_000):
        customer = rng.choice(ids)
        if rng.random() < 0.9:
            body = {"customer": customer, "feature": "tokens", "quantity": rng.randrange(1, 2000)}
        else:
            body = {"customer": customer, "feature": "sso"}
        bodies.append(json.dumps(body))
    return bodies


def client(args: argparse.Namespace) -> None:
    """One process: ``--threads`` connections running the rounds; prints one JSON line."""
    ids = json.loads(Path(args.ids).read_text())
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    bodies = [body.encode() for body in check_bodies(ids, args.seed)]
    rounds: dict[str, list[list[float]]] = {kind: [] for kind in KINDS}
    errors: list[str] = []
    connections = [
        http.client.HTTPConnection("127.0.0.1", args.port, timeout=30) for _ in range(args.threads)
    ]
    start_barrier = time.time() + 1.0

    def run_round(
        path: str, round_start: float, round_end: float, interval: float | None
    ) -> list[float]:
        latencies: list[float] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            connection = connections[n]
            local: list[float] = []
            cursor = n * 997
            while time.time() < round_start:
                time.sleep(0.001)
            due = time.perf_counter() + (interval or 0.0) * n / args.threads
            while time.time() < round_end:
                body = bodies[cursor % len(bodies)]
                cursor += 1
                if interval is not None:  # paced: wait for the slot; latency counts from it
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    sent = due
                    due += interval
                else:
                    sent = time.perf_counter()
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                local.append(time.perf_counter() - sent)
                if response.status != 200:
                    errors.append(f"{response.status} {payload[:200]!r}")
            with lock:
                latencies.extend(local)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return latencies

    #: Each connection's share of the paced rate (every client process runs --threads).
    interval = args.clients * args.threads / args.paced_rate
    for index, kind in enumerate(args.order.split(",")):
        path = "/bench/baseline" if kind.startswith("baseline") else "/v1/entitlements/check"
        round_start = start_barrier + index * (args.seconds + 1.0)
        paced = interval if kind.endswith("_paced") else None
        rounds[kind].append(run_round(path, round_start, round_start + args.seconds, paced))
    print(json.dumps({"rounds": rounds, "errors": errors[:5], "error_count": len(errors)}))


# CPU per request -----------------------------------------------------------------------------------

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(server_pids: list[int]) -> dict[str, dict[int, float]]:
    """CPU time used so far (user + system) by each of the server's processes and each of
    PostgreSQL's (every ``postgres`` process on the machine: the benchmark is alone on it),
    by process id (:func:`cpu_used` compares two readings)."""
    readings: dict[str, dict[int, float]] = {"server": {}, "postgres": {}}
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        stats[pid] = (name, (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND)
    for pid, (name, seconds) in stats.items():
        if name == "postgres":
            readings["postgres"][pid] = seconds
    pending = list(server_pids)
    while pending:
        pid = pending.pop()
        if pid in stats:
            readings["server"][pid] = stats[pid][1]
        pending += children.get(pid, [])
    return readings


def cpu_used(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds used between two :func:`cpu_seconds` readings, per side. A process that
    ended in between is not counted (its time is gone from /proc); one that started is,
    whole."""
    return {
        side: sum(seconds - before[side].get(pid, 0.0) for pid, seconds in after[side].items())
        for side in after
    }


# The C client (--load-generator c, the default) ------------------------------------------------


def loadgen_rounds(
    args: argparse.Namespace, key: str, ids: list[str], server_pids: list[int]
) -> list[dict[str, Any]]:
    """Rounds driven by ``bench/loadgen.c`` (compiled, one C thread: a small share of one
    core): saturated rounds (the most the server answers per second) and open-loop rounds
    paced at each ``--paced-rate`` (latency from when each request was due), baseline and
    check alternating."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # run as a script: bench/ is on the path, not its parent
    from bench import loadgen

    bodies = check_bodies(ids, args.seed)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    plan = [("baseline", 0), ("check", 0)] * args.saturated_rounds
    for rate in args.paced_rates or [args.paced_rate]:
        plan += [("baseline", rate), ("check", rate)]
    rounds = []
    if not args.saturated_rounds:
        # Warm the server (connections, prepared statements, caches) as saturated rounds would.
        loadgen.run(
            port=args.port,
            path="/v1/entitlements/check",
            headers=headers,
            bodies=bodies,
            connections=args.clients * args.threads,
            rate=500,
            seconds=3,
        )
    for kind, rate in plan:
        before = cpu_seconds(server_pids)
        figures = loadgen.run(
            port=args.port,
            path="/bench/baseline" if kind == "baseline" else "/v1/entitlements/check",
            headers=headers,
            bodies=bodies,
            connections=args.clients * args.threads,
            rate=rate,
            seconds=args.seconds,
        )
        used = cpu_used(before, cpu_seconds(server_pids))
        # CPU over the whole run (its warm-up second too) per request answered in it.
        answered = max(1.0, figures["rate"] * (args.seconds + 1.0))
        cpu = {f"{side}_cpu_us": seconds / answered * 1e6 for side, seconds in used.items()}
        rounds.append({"kind": kind, **figures, **cpu})
        print(
            f"  {kind} {'saturated' if not rate else f'@{rate:,}/s'}: {figures['rate']:,.0f}/s, "
            f"p99 {(figures['p99_us'] or 0) / 1000:.2f} ms, CPU per request: server "
            f"{cpu['server_cpu_us']:.0f} µs, PostgreSQL {cpu['postgres_cpu_us']:.0f} µs",
            file=sys.stderr,
        )
    return rounds


def report_loadgen(
    args: argparse.Namespace, rounds: list[dict[str, Any]], live: dict[str, Any], answered_by: Any
) -> None:
    print(
        f"entitlement checks over HTTP, driven by bench/loadgen.c ({args.customers:,} customers, "
        f"{args.workers} server processes, {args.clients * args.threads} connections, "
        f"{args.ingest_rate:,} events/s ingested meanwhile)"
    )
    print(
        f"  {'round':<22} {'per second':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
        f"{'max ms':>8} {'late':>6} {'errors':>6} {'server µs':>10} {'PG µs':>7}"
    )

    def ms(value: float | None) -> float:
        return (value or 0) / 1000

    for r in rounds:
        label = f"{r['kind']} " + (
            "saturated" if not r["target_rate"] else f"@{r['target_rate']:,.0f}/s"
        )
        print(
            f"  {label:<22} {r['rate']:>10,.0f} {ms(r['p50_us']):>8.2f} {ms(r['p99_us']):>8.2f} "
            f"{ms(r['p999_us']):>9.2f} {ms(r['max_us']):>8.2f} {r['late_sends']:>6} "
            f"{r['errors']:>6} {r['server_cpu_us']:>10.0f} {r['postgres_cpu_us']:>7.0f}"
        )
    print(
        "  (server µs, PG µs: CPU per request answered, of the server's processes and of "
        "PostgreSQL, ingestion included)"
    )
    pairs = [(a, b) for a, b in zip(rounds, rounds[1:], strict=False) if a["kind"] == "baseline"]
    for baseline, check in pairs:
        if check["kind"] != "check" or check["target_rate"] != baseline["target_rate"]:
            continue
        label = "saturated" if not check["target_rate"] else f"@{check['target_rate']:,.0f}/s"
        print(
            f"  {label}: checks/s {check['rate'] / baseline['rate']:.2f}× the baseline's; "
            f"p50 {check['p50_us'] / baseline['p50_us']:.2f}×, "
            f"p99 {check['p99_us'] / baseline['p99_us']:.2f}×; CPU per request "
            f"{check['server_cpu_us'] + check['postgres_cpu_us']:.0f} µs, "
            f"{(check['server_cpu_us'] + check['postgres_cpu_us']) / (baseline['server_cpu_us'] + baseline['postgres_cpu_us']):.2f}×"
        )
    report_live(live)
    errors = sum(r["errors"] + r["socket_errors"] for r in rounds)
    print(f"  answered by path: {answered_by}; HTTP or socket errors: {errors}")


def guarded(work: Any, results: dict[str, Any]) -> Any:
    """``work`` for a thread: a failure is recorded in ``results`` (and printed) instead of
    leaving the figures silently empty."""

    def run(*args: Any) -> None:
        try:
            work(*args)
        except BaseException as error:
            results["error"] = repr(error)
            raise

    return run


def ingest_and_probe(
    port: int,
    ingest_port: int,
    key: str,
    externals: list[str],
    ids: list[str],
    stop: threading.Event,
    rate: int,
    results: dict[str, Any],
) -> None:
    """Steady ingestion (batches of 100) and freshness probes, until ``stop``."""
    rng = random.Random(9)
    ingest = http.client.HTTPConnection("127.0.0.1", ingest_port, timeout=30)
    probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    probe_ingest = http.client.HTTPConnection("127.0.0.1", ingest_port, timeout=30)
    auth = {"Authorization": f"Bearer {key}"}
    batch = 100
    interval = batch / rate
    next_send = time.monotonic()
    freshness: list[float] = []
    invisible = 0
    sent = 0
    probes = 0
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_send:
            stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            events = [
                {
                    "specversion": "1.0",
                    "id": secrets.token_hex(8),
                    "source": "bench-live",
                    "type": "llm.request",
                    "subject": rng.choice(externals),
                    "time": stamp,
                    "data": {"tokens": rng.randrange(1, 5000)},
                }
                for _ in range(batch)
            ]
            _post(
                ingest,
                "/v1/events",
                json.dumps(events).encode(),
                {**auth, "Content-Type": "application/cloudevents-batch+json"},
            )
            sent += batch
            next_send += interval
            continue
        # Freshness probe: one event of a known size, then check until the check shows it.
        index = rng.randrange(len(ids))
        check = json.dumps({"customer": ids[index], "feature": "tokens"}).encode()
        before = _used(probe, check, auth)
        amount = 1_000_000 + rng.randrange(1000)
        event = {
            "specversion": "1.0",
            "id": secrets.token_hex(8),
            "source": "bench-probe",
            "type": "llm.request",
            "subject": externals[index],
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "data": {"tokens": amount},
        }
        _post(
            probe_ingest,
            "/v1/events",
            json.dumps(event).encode(),
            {**auth, "Content-Type": "application/cloudevents+json"},
        )
        answered = time.perf_counter()
        seen = False
        while time.perf_counter() - answered < 2.0:
            if _used(probe, check, auth) >= before + amount:
                seen = True
                break
        if seen:
            freshness.append(time.perf_counter() - answered)
        else:
            invisible += 1
        probes += 1
        time.sleep(0.05)
    results.update(freshness=freshness, invisible=invisible, events=sent, probes=probes)


def _post(
    connection: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
) -> bytes:
    """POST and read the answer (200 or 202 expected); reconnect once if the server closed the
    keep-alive connection meanwhile."""
    for attempt in (1, 2):
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (ConnectionError, http.client.HTTPException):
            connection.close()
            if attempt == 2:
                raise
            continue
        if response.status >= 300:
            raise SystemExit(f"{path} answered {response.status}: {payload[:300]!r}")
        return payload
    raise AssertionError("unreachable")


def _used(connection: http.client.HTTPConnection, body: bytes, auth: dict[str, str]) -> float:
    payload = _post(
        connection, "/v1/entitlements/check", body, {**auth, "Content-Type": "application/json"}
    )
    return float(json.loads(payload)["used"])


def paths(port: int) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    found = {}
    for match in re.finditer(
        r'^tallybook_entitlements_checks_total\{path="(\w+)"\} ([0-9.e+]+)$', text, re.M
    ):
        found[match.group(1)] = float(match.group(2))
    for match in re.finditer(
        r'^tallybook_entitlements_mirror_total\{source="(\w+)"\} ([0-9.e+]+)$', text, re.M
    ):
        found[f"state rows {match.group(1)}"] = float(match.group(2))
    barriers = re.search(r"^tallybook_entitlements_mirror_barriers_total ([0-9.e+]+)$", text, re.M)
    if barriers:
        found["mirror barriers"] = float(barriers.group(1))
    sizes = {
        match.group(1): float(match.group(2))
        for match in re.finditer(
            r"^tallybook_entitlements_check_batch_size_(sum|count) ([0-9.e+]+)$", text, re.M
        )
    }
    if sizes.get("count"):
        found["checks per state statement (mean)"] = round(sizes["sum"] / sizes["count"], 2)
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--history-events", type=int, default=20, help="per customer")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=8, help="connections per client process")
    parser.add_argument("--seconds", type=float, default=10.0, help="per round")
    parser.add_argument("--ingest-rate", type=int, default=1000, help="events/s during the rounds")
    parser.add_argument(
        "--ingest-workers",
        type=int,
        default=0,
        help="serve the ingestion from a second server with this many processes (0: the same)",
    )
    parser.add_argument("--port", type=int, default=19_000 + random.randrange(1000))
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    parser.add_argument(
        "--paced-rate", type=int, default=2000, help="requests/s of the paced rounds, all clients"
    )
    parser.add_argument(
        "--paced-rates",
        type=lambda text: [int(x) for x in text.split(",")],
        default=None,
        help="with the C generator: paced rounds at each of these rates (e.g. 1000,2000,3000)",
    )
    parser.add_argument(
        "--order",
        default="baseline,check,baseline,check,baseline_paced,check_paced",
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--saturated-rounds",
        type=int,
        default=2,
        help="saturated baseline/check pairs before the paced rounds (0: a short warm-up instead)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--keep", action="store_true", help="keep the database (and its set-up facts in /tmp)"
    )
    parser.add_argument("--reuse", metavar="DATABASE", help="a database kept by --keep")
    parser.add_argument(
        "--load-generator",
        choices=("c", "python"),
        default="c",
        help="c: bench/loadgen.c (compiled on first use); python: client processes",
    )
    args = parser.parse_args()
    if args.client:
        client(args)
        return

    name = args.reuse or f"tb_bench_entitlements_{secrets.token_hex(4)}"
    facts_file = Path(f"/tmp/{name}.setup.json")
    if not args.reuse:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    server = ingest_server = None
    ids_file = Path(f"/tmp/{name}.ids.json")
    keep = args.keep or bool(args.reuse)
    try:
        if args.reuse:
            key, ids, externals = json.loads(facts_file.read_text())
            args.customers = len(ids)
        else:
            print(f"setting up {name}", file=sys.stderr)
            setup_started = time.perf_counter()
            key, ids, externals = setup_database(url, args.customers, args.history_events)
            print(f"  setup took {time.perf_counter() - setup_started:.0f} s", file=sys.stderr)
            if args.keep:
                facts_file.write_text(json.dumps([key, ids, externals]))
                print(f"  kept: --reuse {name}", file=sys.stderr)
        ids_file.write_text(json.dumps(ids))
        # A maintained database (autovacuum is off on this machine's PostgreSQL): what earlier
        # runs of --reuse left behind is vacuumed before the rounds.
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")
        server = start_server(url, args.port, args.workers)
        ingest_port = args.port
        if args.ingest_workers:
            ingest_port = args.port + 1
            ingest_server = start_server(url, ingest_port, args.ingest_workers)
        stop = threading.Event()
        live: dict[str, Any] = {}
        feeder = threading.Thread(
            target=guarded(ingest_and_probe, live),
            args=(args.port, ingest_port, key, externals, ids, stop, args.ingest_rate, live),
        )
        feeder.start()
        if args.load_generator == "c":
            servers = [server.pid] + ([ingest_server.pid] if ingest_server is not None else [])
            generated = loadgen_rounds(args, key, ids, servers)
            stop.set()
            feeder.join()
            answered_by = paths(args.port)
            outputs = []
        command = [
            sys.executable,
            __file__,
            "--client",
            "--key",
            key,
            "--ids",
            str(ids_file),
            "--port",
            str(args.port),
            "--threads",
            str(args.threads),
            "--seconds",
            str(args.seconds),
            "--clients",
            str(args.clients),
            "--paced-rate",
            str(args.paced_rate),
        ]
        clients = (
            []
            if args.load_generator == "c"
            else [
                subprocess.Popen(
                    [*command, "--seed", str(n)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for n in range(args.clients)
            ]
        )
        if args.load_generator != "c":
            outputs = [c.communicate() for c in clients]
            stop.set()
            feeder.join()
            answered_by = paths(args.port)
    finally:
        for process in (server, ingest_server):
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        ids_file.unlink(missing_ok=True)
        if not keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    if args.load_generator == "c":
        report_loadgen(args, generated, live, answered_by)
        return
    results = []
    for stdout, stderr in outputs:
        if not stdout.strip():
            raise SystemExit(f"client failed: {stderr[-2000:]}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    errors = sum(r["error_count"] for r in results)
    print(
        f"entitlement checks over HTTP ({args.customers:,} customers, {args.workers} server "
        f"processes, {args.clients}×{args.threads} connections, {args.ingest_rate:,} events/s "
        f"ingested meanwhile)"
    )
    print(f"  {'round':<16} {'per second':>11} {'p50 ms':>8} {'p99 ms':>8}")
    summary: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in KINDS}
    for kind in KINDS:
        for round_index in range(len(results[0]["rounds"][kind])):
            latencies = [x for r in results for x in r["rounds"][kind][round_index]]
            rate = len(latencies) / args.seconds
            p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
            summary[kind].append((rate, p50, p99))
            label = kind.replace("_paced", f" @{args.paced_rate:,}/s")
            print(f"  {label:<16} {rate:>11,.0f} {p50:>8.2f} {p99:>8.2f}")
    for prefix in ("", "_paced"):
        pairs = zip(summary["check" + prefix], summary["baseline" + prefix], strict=True)
        for index, (check, baseline) in enumerate(pairs):
            name = "paced" if prefix else f"saturated {index + 1}"
            print(
                f"  {name}: checks/s {check[0] / baseline[0]:.2f}× the baseline's; "
                f"p50 {check[1] / baseline[1]:.2f}×, p99 {check[2] / baseline[2]:.2f}×"
            )
    report_live(live)
    print(f"  answered by path: {answered_by}; HTTP errors: {errors}")
    for result in results:
        for sample in result["errors"]:
            print(f"    e.g. {sample}")


def report_live(live: dict[str, Any]) -> None:
    """Freshness and ingestion figures of the feeder thread."""
    fresh = live.get("freshness", [])
    if fresh:
        print(
            f"  freshness (ingest answered → a check shows it): {len(fresh)} probes, "
            f"p50 {statistics.median(fresh) * 1000:.1f} ms, "
            f"p99 {percentile(fresh, 0.99) * 1000:.1f} ms, max {max(fresh) * 1000:.1f} ms; "
            f"not seen within 2 s: {live.get('invisible', 0)}"
        )
    print(f"  events ingested during the rounds: {live.get('events', 0):,}")
    if "error" in live:
        print(f"  THE INGEST/FRESHNESS THREAD FAILED: {live['error']}")


if __name__ == "__main__":
    main()
