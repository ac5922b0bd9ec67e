"""The demo's metering part: a realistic synthetic month of usage, ingested with a progress bar,
then usage per meter.

A few hundred customers with a heavy-tailed mix (a handful of whales, a long tail), an AI
product's events (``llm.request`` with tokens per model and the user who made the request;
a daily ``storage.snapshot``), client retries (duplicates), events for a customer that does
not exist yet (dead letters, replayed once it is created), and late events arriving after
the first half of the month was invoiced.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from tallybook.catalog.meters import MeterInput
from tallybook.cli.context import progress_bar
from tallybook.customers import service as customers
from tallybook.db import Database
from tallybook.kit.clock import isoformat_z
from tallybook.kit.pagination import PageRequest
from tallybook.kit.quantity import quantity_text
from tallybook.metering import service
from tallybook.metering.aggregate import floor_hour

CUSTOMERS_DEFAULT: Final = 300
REQUESTS_DEFAULT: Final = 100_000
BATCH: Final = 1_000
DUPLICATE_SHARE: Final = 0.02
LATE_EVENTS: Final = 250
MODELS: Final = (("gpt-large", 0.2), ("gpt-small", 0.5), ("embed", 0.3))
REGIONS: Final = ("eu", "us")
#: Requests per hour of the day (UTC): a working-day curve.
DIURNAL: Final = [1, 1, 1, 1, 1, 2, 3, 5, 8, 9, 9, 8, 7, 8, 9, 9, 8, 6, 4, 3, 2, 2, 1, 1]


@dataclass
class DemoReport:
    customers: int = 0
    sent: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, counts: dict[str, int]) -> None:
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value


def _meters(db: Database) -> dict[str, Any]:
    definitions = [
        MeterInput(
            key="tokens",
            name="LLM tokens",
            event_type="llm.request",
            aggregation="sum",
            value_path="tokens",
            group_by={"model": "model"},
            unit="tokens",
        ),
        MeterInput(key="requests", event_type="llm.request", aggregation="count", unit="requests"),
        MeterInput(
            key="active_seats",
            name="Active seats",
            event_type="llm.request",
            aggregation="unique_count",
            value_path="user_id",
            unit="seats",
        ),
        MeterInput(
            key="storage_gb",
            name="Storage",
            event_type="storage.snapshot",
            aggregation="latest",
            value_path="gb",
            unit="GB",
        ),
    ]
    with db.transaction(actor="demo") as tx:
        return {d.key: service.define_meter(tx, d) for d in definitions}


def _customers(db: Database, count: int, rng: random.Random) -> list[tuple[str, float]]:
    """(external_id, weight) with Pareto weights: a few whales, a long tail."""
    result = []
    with db.transaction(actor="demo") as tx:
        for index in range(count):
            external_id = f"acct-{index:04d}"
            customers.create(
                tx,
                customers.CustomerInput(
                    external_id=external_id, name=f"Account {index:04d}", currency="USD"
                ),
            )
            result.append((external_id, rng.paretovariate(1.16)))
    return result


def _time_in(rng: random.Random, start: datetime, days: int) -> datetime:
    day = rng.randrange(days)
    hour = rng.choices(range(24), weights=DIURNAL)[0]
    return start + timedelta(days=day, hours=hour, seconds=rng.randrange(3600))


def _month(
    rng: random.Random, accounts: list[tuple[str, float]], start: datetime, requests: int
) -> list[dict[str, Any]]:
    total_weight = sum(weight for _, weight in accounts)
    events: list[dict[str, Any]] = []
    for external_id, weight in accounts:
        share = max(1, round(requests * weight / total_weight))
        seats = max(1, min(400, round(3 * weight)))
        for n in range(share):
            model = rng.choices([m for m, _ in MODELS], weights=[w for _, w in MODELS])[0]
            tokens = max(1, int(rng.lognormvariate(6.5, 1.1)))
            events.append(
                {
                    "specversion": "1.0",
                    "id": f"{external_id}-r{n}",
                    "source": "api-gateway",
                    "type": "llm.request",
                    "subject": external_id,
                    "time": _time_in(rng, start, 30),
                    "data": {
                        "tokens": tokens,
                        "model": model,
                        "user_id": f"{external_id}-u{rng.randrange(seats)}",
                        "region": rng.choice(REGIONS),
                    },
                }
            )
        gb = Decimal(rng.randrange(1, 50)) * Decimal(weight).quantize(Decimal("0.01"))
        for day in range(30):
            gb += Decimal(rng.randrange(0, 300)) / 100
            events.append(
                {
                    "specversion": "1.0",
                    "id": f"{external_id}-s{day}",
                    "source": "storage-meter",
                    "type": "storage.snapshot",
                    "subject": external_id,
                    "time": start + timedelta(days=day, hours=23, minutes=55),
                    "data": {"gb": gb},
                }
            )
    events.sort(key=lambda e: e["time"])
    for e in events:
        e["time"] = isoformat_z(e["time"])
    return events


def _with_retries(rng: random.Random, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Clients retry: ~2% of events arrive again a little later (same id, same content)."""
    result = []
    pending: list[dict[str, Any]] = []
    for event in events:
        result.append(event)
        if rng.random() < DUPLICATE_SHARE:
            pending.append(dict(event))
        if pending and rng.random() < 0.05:
            result.append(pending.pop(0))
    return result + pending


def _ingest(
    db: Database, events: list[dict[str, Any]], report: DemoReport, progress: Any, task: Any
) -> None:
    for start in range(0, len(events), BATCH):
        chunk = events[start : start + BATCH]
        with db.transaction(actor="demo") as tx:
            result = service.ingest_events(tx, chunk, path="demo")
        report.add(result.counts)
        report.sent += len(chunk)
        progress.advance(task, len(chunk))


def run_metering_demo(
    db: Database,
    console: Console,
    *,
    customer_count: int = CUSTOMERS_DEFAULT,
    requests: int = REQUESTS_DEFAULT,
    seed: int = 7,
) -> DemoReport:
    rng = random.Random(seed)
    now = db.clock.now().replace(microsecond=0)
    month_start = floor_hour(now) - timedelta(days=30)
    console.rule("[bold]Metering[/bold]: a synthetic month of usage")
    meters = _meters(db)
    accounts = _customers(db, customer_count, rng)
    report = DemoReport(customers=len(accounts))
    month = _with_retries(rng, _month(rng, accounts, month_start, requests))
    # A new customer's first events arrive before its account exists.
    newcomer = [
        {
            "specversion": "1.0",
            "id": f"newco-r{n}",
            "source": "api-gateway",
            "type": "llm.request",
            "subject": "newco",
            "time": isoformat_z(now - timedelta(hours=2, minutes=n)),
            "data": {"tokens": 1000 + n, "model": "gpt-small", "user_id": "newco-u0"},
        }
        for n in range(20)
    ]
    half = len(month) // 2
    with progress_bar() as progress:
        task = progress.add_task("ingesting events", total=len(month) + len(newcomer) + LATE_EVENTS)
        _ingest(db, month[:half] + newcomer + month[half:], report, progress, task)
        # The first half of the month is invoiced for the biggest accounts; their late
        # events (a delayed batch job upstream) land after that.
        invoiced_through = month_start + timedelta(days=15)
        whales = sorted(accounts, key=lambda a: -a[1])[:20]
        with db.transaction(actor="demo") as tx:
            for external_id, _ in whales:
                customer = customers.get_by_external_id(tx, external_id)
                service.mark_invoiced_through(tx, customer.id, invoiced_through)
        late = [
            {
                "specversion": "1.0",
                "id": f"{external_id}-late{n}",
                "source": "batch-reprocessor",
                "type": "llm.request",
                "subject": external_id,
                "time": isoformat_z(_time_in(rng, month_start, 15)),
                "data": {"tokens": 500, "model": "gpt-large", "user_id": f"{external_id}-u0"},
            }
            for n in range(LATE_EVENTS // len(whales))
            for external_id, _ in whales
        ]
        _ingest(db, late, report, progress, task)
        progress.update(task, total=report.sent)
    with db.transaction(actor="demo") as tx:
        customers.create(tx, customers.CustomerInput(external_id="newco", name="New Co"))
    with db.transaction(actor="demo") as tx:
        replayed = service.replay_dead_letters(tx, code="customer_not_found")
    _print_summary(console, report, replayed.counts)
    _print_usage(db, console, meters, month_start, now)
    return report


def _print_summary(console: Console, report: DemoReport, replayed: dict[str, int]) -> None:
    counts = report.counts
    console.print(
        f"{report.sent:,} events sent for {report.customers} customers: "
        f"[green]{counts.get('accepted', 0):,} accepted[/green] "
        f"({counts.get('late', 0)} late, into already-invoiced periods), "
        f"{counts.get('duplicate', 0):,} duplicates ignored, "
        f"{counts.get('rejected', 0)} rejected for an unknown customer and "
        f"{replayed.get('accepted', 0)} replayed once it was created."
    )


def _print_usage(
    db: Database, console: Console, meters: dict[str, Any], start: datetime, end: datetime
) -> None:
    table = Table(
        "meter",
        "aggregation",
        "total (all customers)",
        "customers",
        "largest customer",
        title=f"Usage {isoformat_z(start)} → {isoformat_z(end)}",
    )
    with db.read(actor="demo") as tx:
        everyone = []
        page = customers.list_page(tx, PageRequest(limit=100))
        everyone += list(page.data)
        while page.has_more:
            page = customers.list_page(tx, PageRequest(limit=100, starting_after=everyone[-1].id))
            everyone += list(page.data)
        largest: dict[str, tuple[Decimal, str, str]] = {}
        for key, meter in meters.items():
            totals = []
            for customer in everyone:
                value = service.usage_total(
                    tx, meter_id=meter.id, customer_id=customer.id, start=start, end=end
                )
                assert isinstance(value, Decimal)
                if value:
                    totals.append((value, customer.external_id, customer.id))
            grand = sum((v for v, _, _ in totals), Decimal(0))
            largest[key] = max(totals) if totals else (Decimal(0), "-", "")
            table.add_row(
                f"{key} ({meter.unit})",
                meter.aggregation,
                _human(grand),
                str(len(totals)),
                f"{largest[key][1]}: {_human(largest[key][0])}",
            )
        _, whale, whale_id = largest["tokens"]
        by_model = service.usage_total(
            tx,
            meter_id=meters["tokens"].id,
            customer_id=whale_id,
            start=start,
            end=end,
            group_by=True,
        )
    console.print(table)
    assert isinstance(by_model, dict)
    breakdown = ", ".join(f"{dims[0][1]} {_human(v)}" for dims, v in by_model.items())
    console.print(f"Tokens of {whale} by model: {breakdown}")
    console.print(
        f"Try: [bold]tallybook usage {whale} --meter tokens --window day --group-by model[/bold]"
    )


def _human(value: Decimal) -> str:
    """Thousands separators for the table; exact digits kept."""
    text = quantity_text(value)
    whole, _, fraction = text.partition(".")
    grouped = f"{int(whole):,}"
    return f"{grouped}.{fraction}" if fraction else grouped
