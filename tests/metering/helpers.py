"""Small builders for metering tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tallybook.db import Database
from tallybook.kit.clock import isoformat_z
from tallybook.metering import service
from tallybook.metering.ingest import IngestResult
from tallybook.metering.settings import MeteringSettings


def event(
    event_id: str,
    *,
    subject: str = "acme",
    event_type: str = "llm.request",
    time: datetime | str | None = None,
    data: dict[str, Any] | None = None,
    source: str = "app",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "subject": subject,
    }
    if time is not None:
        body["time"] = isoformat_z(time) if isinstance(time, datetime) else time
    if data is not None:
        body["data"] = data
    body.update(extra)
    return body


def ingest(
    db: Database, events: Sequence[Any], *, settings: MeteringSettings | None = None
) -> IngestResult:
    with db.transaction(actor="test") as tx:
        return service.ingest_events(tx, list(events), settings=settings)


def statuses(result: IngestResult) -> list[str]:
    return [o.status for o in result.outcomes]
