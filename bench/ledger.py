"""Ledger throughput on PostgreSQL, each figure beside a raw-SQL baseline measured in the same run.

    .venv/bin/python -m bench.ledger                 # the full matrix (about two minutes)
    .venv/bin/python -m bench.ledger --scale 0.3     # quicker, noisier
    .venv/bin/python -m bench.ledger --profile a     # one scenario's batches under cProfile

Scenarios (every transfer has two legs):

- **a, many accounts**: between two of 1,000 customer credit wallets, chosen at random;
- **b, one hot customer account**: every transfer spends the same customer wallet;
- **c, one system account**: every transfer credits one revenue account (16 balance shards).

Modes: one transfer per request (one transaction each) through ``ledger.create_transfer``, and
batches of 100 through ``ledger.create_transfers``; at 1 and 8 connections (one process each,
so Python's GIL doesn't serialize the clients).

The raw baseline writes the same rows with plain psycopg (no SQLAlchemy, no validation, no
idempotency lookup, no row locks beyond what its UPDATEs take): the transfer row, its two entry
rows and the two balance increments, in one transaction per transfer, and per 100 (multi-row
inserts, balance increments aggregated per row in a fixed order).

Every worker first writes ``WARM_TRANSFERS`` untimed transfers the same way (raw and ours), so a
round measures the steady state, not a fresh process preparing its statements.

The script creates its own database (``tb_bench_ledger_<random>``) and drops it at the end.
Server: ``TALLYBOOK_BENCH_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import random
import signal
import sys
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from sqlalchemy import create_engine, text

from tallybook.all_models import load_all_models
from tallybook.customers import service as customers
from tallybook.db import Database
from tallybook.db.engine import normalize_url
from tallybook.db.migrate import upgrade
from tallybook.kit.ids import new_id
from tallybook.ledger import service as ledger
from tallybook.ledger.values import AccountKind, AccountSpec, Leg, TransferRequest

ADMIN_URL = os.environ.get("TALLYBOOK_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
WALLETS = 1000
REVENUE_SHARDS = 16
BATCH_SIZE = 100
FUNDING_PER_WALLET = 10**15


@dataclass(frozen=True)
class Setup:
    url: str
    wallets: list[str]
    hot_wallet: str
    revenue: str
    revenue_shards: int


@dataclass(frozen=True)
class Job:
    scenario: str
    batch: int
    connections: int
    transfers: int
    raw: bool
    tag: str


# Setup ------------------------------------------------------------------------------------


def create_database() -> tuple[str, str]:
    name = f"tb_bench_ledger_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    admin = create_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def open_books(url: str) -> Setup:
    load_all_models()
    db = Database(url)
    upgrade(db.engine)
    with db.transaction(actor="bench") as tx:
        funding = ledger.open_account(tx, AccountSpec.system("funding", "USD", AccountKind.EQUITY))
        revenue = ledger.open_account(
            tx,
            AccountSpec.system(
                "revenue_usage", "USD", AccountKind.REVENUE, balance_shards=REVENUE_SHARDS
            ),
        )
        wallets = []
        for n in range(WALLETS):
            customer = customers.create(
                tx, customers.CustomerInput(external_id=f"bench-{n}", currency="USD")
            )
            wallets.append(
                ledger.open_account(tx, AccountSpec.customer_credit(customer.id, "USD")).id
            )
    for start in range(0, WALLETS, 500):
        with db.transaction(actor="bench") as tx:
            ledger.create_transfers(
                tx,
                [
                    TransferRequest(
                        f"fund-{wallet}",
                        [
                            Leg(funding.id, "debit", FUNDING_PER_WALLET, "USD"),
                            Leg(wallet, "credit", FUNDING_PER_WALLET, "USD"),
                        ],
                        "bench.fund",
                    )
                    for wallet in wallets[start : start + 500]
                ],
            )
    db.dispose()
    return Setup(url, wallets, wallets[0], revenue.id, REVENUE_SHARDS)


# The transfers each scenario makes --------------------------------------------------------


def pick_accounts(setup: Setup, scenario: str, rng: random.Random) -> tuple[str, str]:
    """(debit, credit) for one transfer."""
    source, target = rng.sample(setup.wallets[1:], 2)
    if scenario == "b":
        return setup.hot_wallet, target
    if scenario == "c":
        return source, setup.revenue
    return source, target


# Workers ----------------------------------------------------------------------------------


#: Untimed transfers each worker writes first, raw and ours alike, so that a round measures
#: the steady state: a fresh process otherwise spends its first batches preparing statements
#: (psycopg prepares a statement on its fifth execution) and, for ours, learning the accounts'
#: fixed attributes. At ``--scale 0.5`` a round is only 60-odd batches.
WARM_TRANSFERS = 500


def run_ours(setup: Setup, job: Job, worker: int, count: int, start: Any) -> float:
    db = Database(setup.url, pool_size=2)
    rng = random.Random(hash((job.tag, worker)))
    requests = []
    for n in range(WARM_TRANSFERS + count):
        debit, credit = pick_accounts(setup, job.scenario, rng)
        amount = rng.randint(1, 100)
        legs = [Leg(debit, "debit", amount, "USD"), Leg(credit, "credit", amount, "USD")]
        requests.append(TransferRequest(f"{job.tag}-{worker}-{n}", legs, "bench"))

    def write(requests: list[TransferRequest]) -> None:
        for first in range(0, len(requests), job.batch):
            with db.transaction(actor="bench") as tx:
                if job.batch == 1:
                    result = ledger.create_transfer(tx, requests[first])
                    assert result.ok, result
                else:
                    results = ledger.create_transfers(tx, requests[first : first + job.batch])
                    assert all(r.ok for r in results)

    write(requests[:WARM_TRANSFERS])
    start.wait()
    began = time.perf_counter()
    write(requests[WARM_TRANSFERS:])
    elapsed = time.perf_counter() - began
    db.dispose()
    return elapsed


#: The raw baseline's one statement per transaction: the transfer rows, their entry rows and
#: one set-based increment of the touched balance rows. Rows travel as JSON arrays (see
#: ``tallybook.ledger.repository_pg`` for why: adapting Python lists to PostgreSQL arrays costs
#: more client time than the server spends writing them). One set-based UPDATE takes its row
#: locks in whatever order its plan yields them, which deadlocked concurrent batches; so the rows
#: are locked in primary-key order first (``locked``), in the same statement.
RAW_WRITE = """
WITH t AS (
    INSERT INTO ledger_transfers (id, kind, reason_code, metadata, effective_at, created_at,
                                  request, actor)
    SELECT r->>0, 'standard', 'bench', '{}', %(now)s, %(now)s, r->1, 'bench'
    FROM jsonb_array_elements(%(transfers)s::jsonb) AS r
), e AS (
    INSERT INTO ledger_entries (transfer_id, account_id, shard, currency, direction, phase,
                                amount_minor, effective_at, created_at)
    SELECT r->>0, r->>1, (r->>2)::smallint, 'USD', r->>3, 'posted', (r->>4)::bigint,
           %(now)s, %(now)s
    FROM jsonb_array_elements(%(entries)s::jsonb) AS r
), locked AS (
    SELECT account_id, shard FROM ledger_balances
    WHERE account_id = ANY(%(accounts)s::text[])
    ORDER BY account_id, shard
    FOR NO KEY UPDATE
), b AS (
    UPDATE ledger_balances AS x
    SET debits_posted = x.debits_posted + (r->>2)::bigint,
        credits_posted = x.credits_posted + (r->>3)::bigint
    FROM locked, jsonb_array_elements(%(balances)s::jsonb) AS r
    WHERE x.account_id = locked.account_id AND x.shard = locked.shard
      AND r->>0 = locked.account_id AND (r->>1)::smallint = locked.shard
)
SELECT 1
"""


def run_raw(setup: Setup, job: Job, worker: int, count: int, start: Any) -> float:
    """The same rows as ``run_ours`` (the same request JSON, shards chosen the same way), written
    by the best plain SQL we know: one statement per transaction, no reads, no checks."""
    rng = random.Random(hash((job.tag, worker)))
    now = datetime.now(UTC)
    work = []
    for n in range(WARM_TRANSFERS + count):
        debit, credit = pick_accounts(setup, job.scenario, rng)
        work.append((f"{job.tag}-{worker}-{n}", debit, credit, rng.randint(1, 100)))
    with psycopg.connect(setup.url) as conn:

        def write(work: list[tuple[str, str, str, int]]) -> None:
            for first in range(0, len(work), job.batch):
                conn.execute(RAW_WRITE, _raw_params(setup, work[first : first + job.batch], now))
                conn.commit()

        write(work[:WARM_TRANSFERS])
        start.wait()
        began = time.perf_counter()
        write(work[WARM_TRANSFERS:])
        elapsed = time.perf_counter() - began
    return elapsed


def _raw_params(
    setup: Setup, chunk: list[tuple[str, str, str, int]], now: datetime
) -> dict[str, Any]:
    # As the ledger does: a batch's entries on the hot account go to one shard.
    shard = zlib.crc32(chunk[0][0].encode()) % setup.revenue_shards
    transfers, entries = [], []
    increments: dict[tuple[str, int], list[int]] = {}
    for transfer_id, debit, credit, amount in chunk:
        legs = [[debit, "debit", amount, "USD"], [credit, "credit", amount, "USD"]]
        request = {"kind": "standard", "legs": legs, "reason_code": "bench"}
        transfers.append((transfer_id, request))
        for account, direction, side in ((debit, "debit", 0), (credit, "credit", 1)):
            row_shard = shard if account == setup.revenue else 0
            entries.append((transfer_id, account, row_shard, direction, amount))
            increments.setdefault((account, row_shard), [0, 0])[side] += amount
    balances = [[a, sh, *values] for (a, sh), values in sorted(increments.items())]
    return {
        "now": now,
        "transfers": orjson.dumps(transfers).decode(),
        "entries": orjson.dumps(entries).decode(),
        "balances": orjson.dumps(balances).decode(),
        "accounts": "{" + ",".join(sorted({a for a, _ in increments})) + "}",
    }


def _worker(setup: Setup, job: Job, worker: int, count: int, start: Any, out: Any) -> None:
    runner: Callable[..., float] = run_raw if job.raw else run_ours
    out.put(runner(setup, job, worker, count, start))


def vacuum_balances(url: str) -> None:
    """``VACUUM`` the balance rows, which every transfer updates: autovacuum is off on this
    machine's PostgreSQL (a deployment keeps it on), and without it each round would start on
    the dead row versions of the rounds before it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ledger_balances")


def measure(setup: Setup, job: Job) -> float:
    """Transfers per second with ``job.connections`` processes started together."""
    vacuum_balances(setup.url)
    context = mp.get_context("fork")
    start = context.Barrier(job.connections)
    out = context.Queue()
    per_worker = job.transfers // job.connections
    per_worker -= per_worker % job.batch
    processes = [
        context.Process(target=_worker, args=(setup, job, n, per_worker, start, out))
        for n in range(job.connections)
    ]
    for process in processes:
        process.start()
    times: list[float] = []
    deadline = time.monotonic() + 900
    while len(times) < len(processes):
        try:
            times.append(out.get(timeout=1))
        except queue.Empty:
            # A worker that died never answers: stop at once instead of waiting for the rest.
            if any(p.exitcode not in (None, 0) for p in processes) or time.monotonic() > deadline:
                for process in processes:
                    process.kill()
                raise RuntimeError(f"a worker failed in {job}") from None
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"worker failed in {job}")
    # The slowest worker's time: every worker started at the barrier together.
    return per_worker * job.connections / max(times)


# Main -------------------------------------------------------------------------------------

SCENARIOS = {"a": "many accounts", "b": "one hot customer account", "c": "one system account"}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply transfer counts")
    parser.add_argument("--scenarios", default="abc")
    parser.add_argument("--modes", default="single,batch", help="single, batch or both")
    parser.add_argument("--connections", default="1,8", help="Comma-separated connection counts")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="Raw and tallybook alternate this many times per line (the counts split between "
        "rounds); each figure is the median round, the ratio the median of the rounds' ratios",
    )
    parser.add_argument(
        "--profile",
        metavar="SCENARIO",
        help="Instead of the matrix: run batches of 100 of one scenario (a, b or c) in this "
        "process under cProfile and print where the client's time goes",
    )
    arguments = parser.parse_args()
    single_count = int(3000 * arguments.scale)
    batch_count = int(40_000 * arguments.scale)
    modes = [
        (batch, count)
        for batch, count, name in ((1, single_count, "single"), (BATCH_SIZE, batch_count, "batch"))
        if name in arguments.modes.split(",")
    ]
    connection_counts = [int(n) for n in arguments.connections.split(",")]
    rounds = max(1, arguments.rounds)
    # A SIGTERM (a timeout) still drops the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    name, url = create_database()
    try:
        print(f"database {name}: {WALLETS} wallets, revenue sharded {REVENUE_SHARDS} ways")
        print(f"{rounds} rounds per line, raw and tallybook alternating; load {_load()}")
        setup = open_books(url)
        if arguments.profile:
            profile(setup, arguments.profile, batch_count)
            return
        header = (
            f"{'scenario':<27} {'mode':<11} {'conns':>5} {'tallybook/s':>12} {'raw/s':>10} "
            f"{'ratio':>6}"
        )
        print(header)
        print("-" * len(header), flush=True)
        for scenario in arguments.scenarios:
            for batch, count in modes:
                for connections in connection_counts:
                    ours, raw, ratios = [], [], []
                    for _ in range(rounds):
                        tag = new_id("bench")[-8:]
                        share = max(count // rounds, batch * connections)
                        raw_rate = measure(
                            setup, Job(scenario, batch, connections, share, True, f"raw{tag}")
                        )
                        our_rate = measure(
                            setup, Job(scenario, batch, connections, share, False, f"tb{tag}")
                        )
                        ours.append(our_rate)
                        raw.append(raw_rate)
                        ratios.append(our_rate / raw_rate)
                    mode = "single" if batch == 1 else f"batch {batch}"
                    line = (
                        f"{scenario + ') ' + SCENARIOS[scenario]:<27} {mode:<11} {connections:>5} "
                        f"{_median(ours):>12,.0f} {_median(raw):>10,.0f} {_median(ratios):>6.2f}"
                    )
                    print(line, flush=True)
        db = Database(url)
        with db.read() as tx:
            report = ledger.check_invariants(tx)
        db.dispose()
        print(
            f"ledger check after the run: {'passed' if report.ok else report.breaches}; "
            f"{report.counts}; load {_load()}"
        )
    finally:
        drop_database(name)


def profile(setup: Setup, scenario: str, count: int) -> None:
    """Batches of 100 of ``scenario`` through ``run_ours`` (one connection, this process) under
    cProfile: the functions by own time, then by cumulative time. Time spent waiting for the
    server shows in psycopg's ``wait``."""
    import cProfile
    import pstats

    class _Now:
        def wait(self) -> None:
            pass

    count = max(count - count % BATCH_SIZE, BATCH_SIZE)
    job = Job(scenario, BATCH_SIZE, 1, count, False, new_id("bench")[-8:])
    run_ours(setup, Job(scenario, BATCH_SIZE, 1, 1000, False, "warm"), 0, 1000, _Now())
    profiler = cProfile.Profile()
    profiler.enable()
    elapsed = run_ours(setup, job, 0, count, _Now())
    profiler.disable()
    print(f"{scenario}) {SCENARIOS[scenario]}: {count / elapsed:,.0f} transfers/s under cProfile")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
