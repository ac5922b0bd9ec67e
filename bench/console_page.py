"""How fast the console's pages answer on PostgreSQL, beside the raw queries they need.

    .venv/bin/python bench/console_page.py [--requests 200] [--other-events 200000]

Builds a throwaway database ``tb_bench_console_page_<random>`` (dropped at the end) with one
customer who has a year of hourly activity in the domain event log (8,760 events: the worst case
for the timeline), 500 console actions about them, thousands of other customers and a large event
log around them, and a failed webhook (so the anomaly badge has work to do). Then it signs in and
requests the customer page, the full timeline, a search and the audit log through the ASGI app
(in process, no network), and prints the latency percentiles beside a raw-database baseline: the
same reads as plain SQL on a psycopg connection, measured in the same run, and the ratio.

The customer also has a year of hourly usage (8,760 events of two meters' event types, ingested
through metering so rollups are real) and a few credit grants, so the billing panels (usage
chart from rollups, grants with ledger balances, subscriptions, invoices, payments) do their
reads; the 300 ms budget is for that page.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert, text

from tallybook.api.app import create_app
from tallybook.console import anomalies, users
from tallybook.console.models import ConsoleAuditEntry
from tallybook.customers import service as customers
from tallybook.customers.models import Customer
from tallybook.db import Database
from tallybook.db.engine import normalize_url
from tallybook.db.migrate import upgrade
from tallybook.kit.clock import utc
from tallybook.kit.ids import new_id
from tallybook.webhooks import service as webhooks
from tallybook.webhooks.models import WebhookDelivery
from tallybook.work.models import DomainEvent

ADMIN_URL: Final = os.environ.get(
    "TALLYBOOK_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
PASSWORD: Final = "bench password 123"
HOURS_IN_A_YEAR: Final = 24 * 365
BATCH: Final = 5000
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return p50 * 1000, p95 * 1000, statistics.fmean(ordered) * 1000


def timed(fn: Callable[[], object], n: int) -> list[float]:
    fn()  # warm
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _event(customer_id: str, event_type: str, at: datetime, data: dict[str, int]) -> dict[str, Any]:
    return {
        "id": new_id("evt", at_ms=_ms(at)),
        "type": event_type,
        "customer_id": customer_id,
        "object_id": None,
        "data": data,
        "actor": "system",
        "request_id": None,
        "created_at": at,
    }


def seed(db: Database, other_customers: int, other_events: int) -> tuple[str, str]:
    start = utc(2025, 11, 20)
    with db.transaction(actor="bench") as tx:
        target = customers.create(
            tx,
            customers.CustomerInput(
                external_id="org_big", name="Big Customer", email="ap@big.example", currency="USD"
            ),
        )
        users.create_user(
            tx, email="bench@example.com", display_name="Bench", role="admin", password=PASSWORD
        )
        endpoint = webhooks.create_endpoint(tx, webhooks.EndpointInput(url="https://h.example/x"))
        webhooks.disable_endpoint(tx, endpoint.id, reason="gave up", by="failures")
        tx.session.add(
            WebhookDelivery(
                id=new_id("whd"),
                endpoint_id=endpoint.id,
                event_id=new_id("evt"),
                event_type="invoice.finalized",
                status="failed",
                attempts=10,
                next_attempt_at=tx.now(),
                created_at=tx.now(),
            )
        )
    target_id = target.id
    # Ids carry their event's time (as in production), so the customer's year of events is
    # interleaved with everyone else's in the log, not bunched at one end of it.
    rows = [
        _event(target_id, "usage.hour_closed", start + timedelta(hours=n), {"hour": n})
        for n in range(HOURS_IN_A_YEAR)
    ]
    others = [
        {
            "id": new_id("cus", at_ms=_ms(start)),
            "external_id": f"ext-{n}",
            "name": f"Customer {n}",
            "email": f"billing{n}@example.com",
            "currency": "USD",
            "metadata": {},
            "created_at": start,
            "updated_at": start,
        }
        for n in range(other_customers)
    ]
    other_ids = [c["id"] for c in others]
    year_seconds = HOURS_IN_A_YEAR * 3600
    with db.engine.begin() as conn:
        for chunk in range(0, len(others), BATCH):
            conn.execute(insert(Customer), others[chunk : chunk + BATCH])
        for chunk in range(0, len(rows), BATCH):
            conn.execute(insert(DomainEvent), rows[chunk : chunk + BATCH])
        for chunk in range(0, other_events, BATCH):
            conn.execute(
                insert(DomainEvent),
                [
                    _event(
                        other_ids[(chunk + n) % len(other_ids)],
                        "customer.updated",
                        start + timedelta(seconds=(chunk + n) * year_seconds // other_events),
                        {"n": n},
                    )
                    for n in range(min(BATCH, other_events - chunk))
                ],
            )
        conn.execute(
            insert(ConsoleAuditEntry),
            [
                {
                    "id": new_id("aud", at_ms=_ms(start + timedelta(hours=n * 17))),
                    "created_at": start + timedelta(hours=n * 17),
                    "actor": "cusr_bench",
                    "actor_name": "bench@example.com",
                    "role": "support",
                    "action": "grant.issue_credit",
                    "object_type": "customer",
                    "object_id": target_id,
                    "customer_id": target_id,
                    "reason": "goodwill",
                    "outcome": "succeeded",
                    "details": {"amount": {"amount_minor": 500, "currency": "USD"}},
                }
                for n in range(500)
            ],
        )
        conn.execute(text("ANALYZE"))
    return target_id, endpoint.id


def sign_in(client: TestClient) -> None:
    page = client.get("/console/sign-in")
    token = re.search(r'name="sign_in_token" value="([^"]+)"', page.text)
    assert token
    response = client.post(
        "/console/sign-in",
        data={"email": "bench@example.com", "password": PASSWORD, "sign_in_token": token[1]},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def raw_customer_page(conn: psycopg.Connection[object], customer_id: str, token_sha: str) -> None:
    """What the customer page reads, as plain SQL."""
    conn.execute(
        "SELECT s.*, u.* FROM console_sessions s LEFT JOIN console_users u ON u.id = s.user_id "
        "WHERE s.token_sha256 = %s",
        (token_sha,),
    ).fetchall()
    conn.execute("SELECT * FROM customers WHERE id = %s", (customer_id,)).fetchall()
    conn.execute(
        "SELECT * FROM domain_events WHERE customer_id = %s ORDER BY id DESC LIMIT 16",
        (customer_id,),
    ).fetchall()
    conn.execute(
        "SELECT * FROM console_audit_log WHERE customer_id = %s ORDER BY id DESC LIMIT 16",
        (customer_id,),
    ).fetchall()
    conn.execute(
        "SELECT * FROM webhook_deliveries WHERE status = 'failed' "
        "OR (status = 'pending' AND attempts > 0) ORDER BY event_id DESC LIMIT 100"
    ).fetchall()
    conn.rollback()


USAGE_BATCH: Final = 100


def seed_usage(db: Database, customer_id: str, end: datetime) -> None:
    """A year of hourly usage up to ``end``, ingested through metering (rollups included), and
    three credit grants. The clock walks with the events, as it would in production."""
    from tallybook.grants import service as grants
    from tallybook.kit.clock import TestClock, isoformat_z
    from tallybook.metering import service as metering

    start = end - timedelta(hours=HOURS_IN_A_YEAR)
    clock = TestClock(start)
    timed_db = db.with_clock(clock)
    with timed_db.transaction(actor="bench") as tx:
        for key in ("tokens", "requests"):
            metering.define_meter(
                tx,
                metering.MeterInput(
                    key=key,
                    event_type=f"{key}.used",
                    aggregation="sum",
                    value_path="value",
                    unit=key,
                ),
            )
    for chunk in range(0, HOURS_IN_A_YEAR, USAGE_BATCH):
        hours = range(chunk, min(chunk + USAGE_BATCH, HOURS_IN_A_YEAR))
        clock.set(start + timedelta(hours=hours[-1], minutes=59))
        batch = [
            {
                "specversion": "1.0",
                "id": f"u{n}",
                "source": "bench",
                "type": "tokens.used" if n % 2 == 0 else "requests.used",
                "subject": "org_big",
                "time": isoformat_z(start + timedelta(hours=n, minutes=30)),
                "data": {"value": str(1000 + n % 97)},
            }
            for n in hours
        ]
        with timed_db.transaction(actor="bench") as tx:
            result = metering.ingest_events(tx, batch)
        assert result.accepted == len(batch), result.counts
    clock.set(end)
    with timed_db.transaction(actor="bench") as tx:
        for n in range(3):
            grants.issue_grant(
                tx,
                grants.GrantInput(
                    customer=customer_id, amount_minor=1000 * (n + 1), reason="bench credit"
                ),
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--other-customers", type=int, default=50_000)
    parser.add_argument("--other-events", type=int, default=1_000_000)
    args = parser.parse_args()

    name = f"tb_bench_console_page_{secrets.token_hex(4)}"
    admin = create_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = normalize_url(ADMIN_URL).set(database=name)
    db = Database(url, pool_size=4)
    try:
        upgrade(db.engine)
        started = time.perf_counter()
        customer_id, _ = seed(db, args.other_customers, args.other_events)
        seed_usage(db, customer_id, datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        print(
            f"seeded in {time.perf_counter() - started:.1f} s: 1 customer with "
            f"{HOURS_IN_A_YEAR} hourly events and 500 console actions; "
            f"{args.other_customers} other customers, {args.other_events} other events"
        )
        client = TestClient(create_app(db), base_url="http://testserver")
        with client:
            sign_in(client)
            cookie = client.cookies.get("tb_console", path="/console") or ""
            token_sha = hashlib.sha256(cookie.rpartition(".")[0].encode()).hexdigest()
            pages = {
                "customer page": f"/console/customers/{customer_id}",
                "timeline (50)": f"/console/customers/{customer_id}/timeline",
                "search 'customer 12'": "/console/customers?q=customer%2012",
                "audit log": "/console/audit",
            }
            raw_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(raw_url) as raw:
                baseline = timed(
                    lambda: raw_customer_page(raw, customer_id, token_sha), args.requests
                )
            base_p50, base_p95, _ = percentiles(baseline)
            print(
                f"{'raw SQL of the customer page':32} p50 {base_p50:7.2f} ms  "
                f"p95 {base_p95:7.2f} ms"
            )
            for label, path in pages.items():

                def get(path: str = path) -> None:
                    response = client.get(path)
                    assert response.status_code == 200, response.text[:500]

                anomalies.forget_badges()
                samples = timed(get, args.requests)
                p50, p95, mean = percentiles(samples)
                print(
                    f"{label:32} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  mean {mean:7.2f} ms  "
                    f"(p50 = {p50 / base_p50:4.1f} × the raw customer-page SQL)"
                )
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
