"""``tallybook meters …``, ``tallybook events …``, ``tallybook usage …`` and
``tallybook worker metering``. Thin: every command calls ``tallybook.metering.service``."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import typer
from rich.table import Table

from tallybook.catalog.meters import MeterInput
from tallybook.cli.context import (
    console,
    err_console,
    handle_errors,
    open_database,
    progress_bar,
    settings,
)
from tallybook.cli.groups import CliGroups
from tallybook.customers import service as customers
from tallybook.kit.clock import isoformat_z
from tallybook.kit.errors import CommonCode, InvalidRequest
from tallybook.kit.pagination import PageRequest
from tallybook.kit.quantity import quantity_text
from tallybook.metering import service
from tallybook.metering.aggregate import window_floor, window_next
from tallybook.metering.cloudevents import DECODER, parse_time
from tallybook.metering.limits import BATCH_EVENTS_MAX
from tallybook.metering.settings import MeteringSettings
from tallybook.observability.logging import configure_logging
from tallybook.work.jobruns import worker_identity

meters_app = typer.Typer(
    help="Meters: which events count and how they aggregate.", no_args_is_help=True
)
events_app = typer.Typer(help="Usage events: send, status, dead letters.", no_args_is_help=True)
dead_letters_app = typer.Typer(help="Rejected events kept with their reason.", no_args_is_help=True)
events_app.add_typer(dead_letters_app, name="dead-letters")


def metering_settings() -> MeteringSettings:
    return MeteringSettings.from_settings(settings())


def _instant(text: str, param: str) -> datetime:
    """RFC 3339, or a date (midnight UTC)."""
    parsed = parse_time(text)
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError:
            raise InvalidRequest(
                CommonCode.PARAMETER_INVALID,
                f"{param} must be RFC 3339 or a YYYY-MM-DD date",
                param=param,
            ) from None
    return parsed


def _pairs(values: list[str]) -> dict[str, str]:
    result = {}
    for value in values:
        name, _, path = value.partition("=")
        result[name.strip()] = (path or name).strip()
    return result


def _filters(values: list[str]) -> list[dict[str, Any]]:
    """``--filter 'tier eq "pro"'``: a path, an operator and a JSON value (bare words are
    strings)."""
    result = []
    for value in values:
        parts = value.split(None, 2)
        if len(parts) != 3:
            raise InvalidRequest(
                CommonCode.PARAMETER_INVALID,
                "a filter is 'PATH OP VALUE', e.g. 'tier in [\"pro\", \"team\"]'",
                param="filter",
            )
        path, op, raw = parts
        try:
            parsed: Any = DECODER.decode(raw)
        except msgspec.DecodeError:
            parsed = raw
        result.append({"path": path, "op": op, "value": parsed})
    return result


def _meter_row(meter: Any) -> list[str]:
    return [
        meter.id,
        meter.key,
        str(meter.version),
        meter.event_type,
        meter.aggregation,
        meter.value_path or "",
        ", ".join(sorted(meter.group_by)),
        meter.unit,
        "archived" if meter.archived_at else ("backfilling" if meter.backfilled_at is None else ""),
    ]


METER_COLUMNS = (
    "id",
    "key",
    "v",
    "event type",
    "aggregation",
    "value",
    "group by",
    "unit",
    "state",
)


@meters_app.command("create")
def create_meter(
    key: str = typer.Option(..., help="Stable name, e.g. tokens"),
    event_type: str = typer.Option(..., help="The CloudEvents type it counts"),
    aggregation: str = typer.Option(..., help="count, sum, max, min, unique_count, latest"),
    value_path: str | None = typer.Option(None, help="Path in data (not for count)"),
    group_by: list[str] = typer.Option([], help="NAME=PATH (or NAME), repeatable"),
    filter_: list[str] = typer.Option([], "--filter", help="'PATH OP VALUE', repeatable"),
    unit: str | None = typer.Option(None),
    name: str | None = typer.Option(None),
) -> None:
    """Define a meter (or the next version of an existing key)."""
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        meter = service.define_meter(
            tx,
            MeterInput(
                key=key,
                event_type=event_type,
                aggregation=aggregation,
                value_path=value_path,
                filters=_filters(filter_),
                group_by=_pairs(group_by),
                unit=unit,
                name=name,
            ),
        )
        row = _meter_row(meter)
    table = Table(*METER_COLUMNS)
    table.add_row(*row)
    console.print(table)


@meters_app.command("list")
def list_meters(
    key: str | None = typer.Option(None, help="Only this key's versions"),
    limit: int = typer.Option(50, max=100),
) -> None:
    db = open_database()
    with db.read() as tx:
        page = service.list_meters(tx, PageRequest(limit=limit), key=key)
        table = Table(*METER_COLUMNS)
        for meter in page.data:
            table.add_row(*_meter_row(meter))
    console.print(table)


@meters_app.command("archive")
def archive_meter(meter_id: str) -> None:
    """Hide a meter from new prices (it keeps counting)."""
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        service.archive_meter(tx, meter_id)
    console.print(f"archived {meter_id}")


@meters_app.command("backfill")
def backfill() -> None:
    """Count stored events for meters defined after them (also a scheduled job)."""
    db = open_database()
    report = service.run_backfills(db, owner=worker_identity())
    console.print(
        f"{report['completed']} of {report['meters']} meters complete; "
        f"{report['events_counted']} events counted"
    )


# Events ----------------------------------------------------------------------------------------


def _read_events(path: str) -> list[Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    stripped = text.strip()
    if stripped.startswith("["):
        decoded = DECODER.decode(stripped)
        assert isinstance(decoded, list)
        return decoded
    if stripped.startswith("{") and "\n" not in stripped:
        return [DECODER.decode(stripped)]
    return [DECODER.decode(line) for line in stripped.splitlines() if line.strip()]


@events_app.command("send")
def send_events(
    path: str = typer.Argument(
        ..., help="A JSON array, one JSON object, or JSON lines; - for stdin"
    ),
    batch_size: int = typer.Option(BATCH_EVENTS_MAX, max=BATCH_EVENTS_MAX),
) -> None:
    """Ingest events from a file through the same pipeline as POST /v1/events."""
    events = _read_events(path)
    db = open_database()
    totals: dict[str, int] = {}
    config = metering_settings()
    with progress_bar() as progress:
        task = progress.add_task("ingesting", total=len(events))
        for start in range(0, len(events), batch_size):
            chunk = events[start : start + batch_size]
            with db.transaction(actor="cli") as tx:
                result = service.ingest_events(tx, chunk, settings=config, path="cli")
            for status, count in result.counts.items():
                totals[status] = totals.get(status, 0) + count
            progress.advance(task, len(chunk))
    console.print(", ".join(f"{k}={v}" for k, v in sorted(totals.items())))


@events_app.command("status")
def status() -> None:
    """The last committed event, dead letters, unbilled late events, backfills."""
    db = open_database()
    with db.read() as tx:
        current = service.metering_status(tx)
        last = current.last_event
        table = Table("what", "value")
        table.add_row(
            "last event",
            f"{last.source}/{last.event_id} at {isoformat_z(last.time)} "
            f"(committed {isoformat_z(last.received_at)})"
            if last
            else "none",
        )
        table.add_row(
            "dead letters",
            ", ".join(f"{k}={v}" for k, v in current.dead_letters_by_status.items()) or "none",
        )
        for code, count in current.dead_letters_pending_by_code.items():
            table.add_row(f"  pending {code}", str(count))
        table.add_row("late events unbilled", str(current.late_events_unbilled))
        table.add_row(
            "meters backfilling",
            ", ".join(f"{m.key} v{m.version}" for m in current.backfilling) or "none",
        )
    console.print(table)


@dead_letters_app.command("list")
def list_dead_letters(
    status: str = typer.Option("pending", help="pending, replayed, discarded or all"),
    code: str | None = typer.Option(None, help="Only this rejection code"),
    limit: int = typer.Option(50, max=100),
) -> None:
    db = open_database()
    with handle_errors(), db.read() as tx:
        page = service.list_dead_letters(
            tx, PageRequest(limit=limit), status=None if status == "all" else status, code=code
        )
        table = Table("id", "status", "code", "param", "source/id", "subject", "attempts")
        for letter in page.data:
            table.add_row(
                letter.id,
                letter.status,
                letter.code,
                letter.param or "",
                f"{letter.source or '?'}/{letter.event_id or '?'}",
                letter.subject or "",
                str(letter.attempts),
            )
    console.print(table)


@dead_letters_app.command("replay")
def replay_dead_letters(
    letter_id: list[str] = typer.Option([], "--id", help="These letters (repeatable)"),
    code: str | None = typer.Option(None, help="Every pending letter with this code"),
    all_: bool = typer.Option(False, "--all", help="Every pending letter"),
) -> None:
    """Replay pending dead letters after fixing the cause (e.g. creating the customer)."""
    if not (letter_id or code or all_):
        err_console.print("pass --id, --code or --all")
        raise typer.Exit(2)
    db = open_database()
    totals: dict[str, int] = {}
    config = metering_settings()
    while True:
        with handle_errors(), db.transaction(actor="cli") as tx:
            result = service.replay_dead_letters(
                tx, ids=letter_id or None, code=code, settings=config
            )
        for status_name, count in result.counts.items():
            totals[status_name] = totals.get(status_name, 0) + count
        # Letters rejected again stay pending: one pass over a code or --id is enough.
        if letter_id or not result.outcomes or result.counts.get("rejected"):
            break
    console.print(", ".join(f"{k}={v}" for k, v in sorted(totals.items())) or "nothing to replay")


@dead_letters_app.command("discard")
def discard_dead_letter(letter_id: str) -> None:
    db = open_database()
    with handle_errors(), db.transaction(actor="cli") as tx:
        service.discard_dead_letter(tx, letter_id)
    console.print(f"discarded {letter_id}")


# Usage -----------------------------------------------------------------------------------------


def usage(
    customer: str = typer.Argument(..., help="Customer id or external_id"),
    meter: str = typer.Option(..., help="Meter id or key"),
    start: str | None = typer.Option(None, "--from", help="RFC 3339 or date; default: this month"),
    end: str | None = typer.Option(None, "--to", help="RFC 3339 or date (exclusive)"),
    window: str = typer.Option("day", help="hour, day or month"),
    group_by: list[str] = typer.Option([], help="Dimension names (repeatable)"),
) -> None:
    """Usage of one meter for one customer, per window, as a table."""
    db = open_database()
    with handle_errors(), db.read() as tx:
        now = tx.now()
        start_at = _instant(start, "from") if start else window_floor(now, service.Window.MONTH)
        end_at = _instant(end, "to") if end else window_next(start_at, service.Window.MONTH)
        customer_row = customers.resolve(tx, customer)
        meter_row = service.resolve_meter(tx, meter)
        series = service.usage_series(
            tx,
            meter_id=meter_row.id,
            customer_id=customer_row.id,
            start=start_at,
            end=end_at,
            window=window,
            group_by=group_by or False,
        )
        title = (
            f"{meter_row.key} v{meter_row.version} ({meter_row.aggregation}, {meter_row.unit}) "
            f"for {customer_row.external_id}"
        )
        names = list(series.group_names or ())
        table = Table("window start", *names, meter_row.unit, title=title)
        for item in series.windows:
            label = isoformat_z(item.start)
            if item.groups is None:
                table.add_row(label, quantity_text(item.value))
                continue
            for dims, value in item.groups.items():
                table.add_row(label, *[v or "" for _, v in dims], quantity_text(value))
        table.add_section()
        table.add_row("total", *["" for _ in names], quantity_text(series.total), style="bold")
    console.print(table)


# Worker ----------------------------------------------------------------------------------------


def worker_metering(
    setup: bool = typer.Option(True, help="Create the stream and consumer if missing"),
    batch_size: int = typer.Option(BATCH_EVENTS_MAX, max=BATCH_EVENTS_MAX),
) -> None:
    """Consume events from NATS JetStream into the database (ack after commit)."""
    from tallybook.metering.nats.consumer import run_consumer

    current = settings()
    configure_logging(json_lines=current.log_json, level=current.log_level)
    db = open_database(migrate=True)
    config = MeteringSettings.from_settings(current)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_consumer(db, config, stop=stop, batch_size=batch_size, setup=setup)

    asyncio.run(main())


def register(groups: CliGroups) -> None:
    groups.root.add_typer(meters_app, name="meters")
    groups.root.add_typer(events_app, name="events")
    groups.root.command("usage")(usage)
    groups.worker.command("metering")(worker_metering)
