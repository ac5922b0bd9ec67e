"""Ledger throughput on PostgreSQL, each figure beside a raw-SQL baseline measured in the same run.

    .venv/bin/python -m bench.ledger                 # the full matrix (about two minutes)
    .venv/bin/python -m bench.ledger --scale 0.3     # quicker, noisier

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

The script creates its own database (``tb_bench_ledger_<random>``) and drops it at the end.
Server: ``TALLYBOOK_BENCH_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
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


def run_ours(setup: Setup, job: Job, worker: int, count: int, start: Any) -> float:
    db = Database(setup.url, pool_size=2)
    rng = random.Random(hash((job.tag, worker)))
    requests = []
    for n in range(count):
        debit, credit = pick_accounts(setup, job.scenario, rng)
        amount = rng.randint(1, 100)
        legs = [Leg(debit, "debit", amount, "USD"), Leg(credit, "credit", amount, "USD")]
        requests.append(TransferRequest(f"{job.tag}-{worker}-{n}", legs, "bench"))
    with db.transaction() as tx:  # warm the connection and the statement caches
        ledger.balance(tx, setup.revenue)
    start.wait()
    began = time.perf_counter()
    for first in range(0, count, job.batch):
        with db.transaction(actor="bench") as tx:
            if job.batch == 1:
                result = ledger.create_transfer(tx, requests[first])
                assert result.ok, result
            else:
                results = ledger.create_transfers(tx, requests[first : first + job.batch])
                assert all(r.ok for r in results)
    elapsed = time.perf_counter() - began
    db.dispose()
    return elapsed


_RAW_TRANSFER = (
    "INSERT INTO ledger_transfers (id, kind, reason_code, metadata, effective_at, created_at, "
    "request, actor) VALUES (%s, 'standard', 'bench', '{}', %s, %s, %s, 'bench')"
)
_RAW_ENTRY = (
    "INSERT INTO ledger_entries (transfer_id, account_id, shard, currency, direction, phase, "
    "amount_minor, effective_at, created_at) VALUES (%s, %s, %s, 'USD', %s, 'posted', %s, %s, %s)"
)
_RAW_DEBIT = (
    "UPDATE ledger_balances SET debits_posted = debits_posted + %s "
    "WHERE account_id = %s AND shard = %s"
)
_RAW_CREDIT = (
    "UPDATE ledger_balances SET credits_posted = credits_posted + %s "
    "WHERE account_id = %s AND shard = %s"
)


def _multi_insert(sql: str, rows: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
    head, _, values = sql.partition(" VALUES ")
    return head + " VALUES " + ", ".join([values] * len(rows)), [v for row in rows for v in row]


def run_raw(setup: Setup, job: Job, worker: int, count: int, start: Any) -> float:
    rng = random.Random(hash((job.tag, worker)))
    now = datetime.now(UTC)
    work = []
    for n in range(count):
        debit, credit = pick_accounts(setup, job.scenario, rng)
        transfer_id = f"{job.tag}-{worker}-{n}"
        shard = (
            zlib.crc32(transfer_id.encode()) % setup.revenue_shards
            if credit == setup.revenue
            else 0
        )
        work.append((transfer_id, debit, credit, shard, rng.randint(1, 100)))
    with psycopg.connect(setup.url) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        start.wait()
        began = time.perf_counter()
        for first in range(0, count, job.batch):
            chunk = work[first : first + job.batch]
            with conn.cursor() as cur:
                transfers = [(t[0], now, now, orjson.dumps({"id": t[0]}).decode()) for t in chunk]
                entries = []
                increments: dict[tuple[str, int, str], int] = {}
                for transfer_id, debit, credit, shard, amount in chunk:
                    entries.append((transfer_id, debit, 0, "debit", amount, now, now))
                    entries.append((transfer_id, credit, shard, "credit", amount, now, now))
                    increments[(debit, 0, "debit")] = (
                        increments.get((debit, 0, "debit"), 0) + amount
                    )
                    key = (credit, shard, "credit")
                    increments[key] = increments.get(key, 0) + amount
                cur.execute(*_multi_insert(_RAW_TRANSFER, transfers))
                cur.execute(*_multi_insert(_RAW_ENTRY, entries))
                for (account, shard, side), amount in sorted(increments.items()):
                    cur.execute(
                        _RAW_DEBIT if side == "debit" else _RAW_CREDIT, (amount, account, shard)
                    )
            conn.commit()
        elapsed = time.perf_counter() - began
    return elapsed


def _worker(setup: Setup, job: Job, worker: int, count: int, start: Any, out: Any) -> None:
    runner: Callable[..., float] = run_raw if job.raw else run_ours
    out.put(runner(setup, job, worker, count, start))


def measure(setup: Setup, job: Job) -> float:
    """Transfers per second with ``job.connections`` processes started together."""
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
    times = [out.get(timeout=900) for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"worker failed in {job}")
    # The slowest worker's time: every worker started at the barrier together.
    return per_worker * job.connections / max(times)


# Main -------------------------------------------------------------------------------------

SCENARIOS = {"a": "many accounts", "b": "one hot customer account", "c": "one system account"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply transfer counts")
    parser.add_argument("--scenarios", default="abc")
    arguments = parser.parse_args()
    single_count = int(3000 * arguments.scale)
    batch_count = int(40_000 * arguments.scale)
    name, url = create_database()
    try:
        print(f"database {name}: {WALLETS} wallets, revenue sharded {REVENUE_SHARDS} ways")
        setup = open_books(url)
        header = f"{'scenario':<27} {'mode':<11} {'conns':>5} {'tallybook/s':>12} {'raw/s':>10} {'ratio':>6}"
        print(header)
        print("-" * len(header))
        rows = []
        for scenario in arguments.scenarios:
            for batch, count in ((1, single_count), (BATCH_SIZE, batch_count)):
                for connections in (1, 8):
                    tag = new_id("bench")[-8:]
                    raw = measure(
                        setup, Job(scenario, batch, connections, count, True, f"raw{tag}")
                    )
                    ours = measure(
                        setup, Job(scenario, batch, connections, count, False, f"tb{tag}")
                    )
                    mode = "single" if batch == 1 else f"batch {batch}"
                    line = (
                        f"{scenario + ') ' + SCENARIOS[scenario]:<27} {mode:<11} {connections:>5} "
                        f"{ours:>12,.0f} {raw:>10,.0f} {ours / raw:>6.2f}"
                    )
                    print(line, flush=True)
                    rows.append((scenario, mode, connections, ours, raw))
        db = Database(url)
        with db.read() as tx:
            report = ledger.check_invariants(tx)
        db.dispose()
        print(
            f"ledger check after the run: {'passed' if report.ok else report.breaches}; {report.counts}"
        )
    finally:
        drop_database(name)


if __name__ == "__main__":
    main()
