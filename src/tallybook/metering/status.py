"""How far along metering is: the last committed event, dead letters, backfills, late events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from tallybook.catalog.meter_models import Meter
from tallybook.db import Tx
from tallybook.metering import repository
from tallybook.metering.models import MeteringEvent


@dataclass(frozen=True, slots=True)
class MeteringStatus:
    now: datetime
    last_event: MeteringEvent | None
    #: Seconds since the last event was committed (None without events).
    seconds_since_last_event: float | None
    dead_letters_by_status: dict[str, int]
    #: Pending dead letters by rejection code.
    dead_letters_pending_by_code: dict[str, int]
    late_events_unbilled: int
    #: Meters still counting events stored before they were defined.
    backfilling: list[Meter]


def metering_status(tx: Tx) -> MeteringStatus:
    now = tx.now()
    last = repository.last_event(tx)
    by_status: dict[str, int] = {}
    pending_by_code: dict[str, int] = {}
    for (status, code), count in sorted(repository.dead_letter_counts(tx).items()):
        by_status[status] = by_status.get(status, 0) + count
        if status == "pending":
            pending_by_code[code] = count
    backfilling = list(
        tx.session.scalars(
            select(Meter).where(Meter.backfilled_at.is_(None)).order_by(Meter.definition_seq)
        )
    )
    return MeteringStatus(
        now=now,
        last_event=last,
        seconds_since_last_event=(
            max((now - last.received_at).total_seconds(), 0.0) if last is not None else None
        ),
        dead_letters_by_status=by_status,
        dead_letters_pending_by_code=pending_by_code,
        late_events_unbilled=repository.late_unbilled_count(tx),
        backfilling=backfilling,
    )
