"""Ingest one batch of CloudEvents in the caller's transaction.

The ladder, per event (the first failure names the code):

1. envelope (``cloudevents.check_envelope``): object, id, source, specversion, type, subject,
   time, data;
2. in-batch dedup: the first occurrence of a (source, id) represents it; later identical copies
   are duplicates, later different ones conflicts;
3. time bounds (future skew, too old), customer, every matching meter's value and dimensions;
4. a representative that failed step 3 may still be a stored event sent again (say a resend of
   an event now older than the late limit): then it is a duplicate or a conflict, not a
   rejection;
5. the dedup insert: new (source, id) rows are inserted; the rest are compared with the stored
   content hash (duplicate or conflict);
6. rollup deltas of the inserted events, late-event rows, dead letters for the rejected.

Everything happens in the caller's transaction, which commits the events, their rollups and
the dead letters together or not at all. Nothing here commits.
"""

from __future__ import annotations

import time as _time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from tallybook.db import Tx
from tallybook.kit.ids import new_id
from tallybook.metering.aggregate import floor_hour
from tallybook.metering.cloudevents import (
    CheckedEvent,
    Rejection,
    TimeCache,
    check_envelope,
    encode_raw,
)
from tallybook.metering.errors import EventCode
from tallybook.metering.ingest import rollups, store
from tallybook.metering.ingest.caches import MeterSet, current_meters
from tallybook.metering.ingest.store import DeadLetterRow, EventKey, EventRow
from tallybook.metering.limits import (
    EVENT_ID_LENGTH_MAX,
    EVENT_SOURCE_LENGTH_MAX,
    EVENT_SUBJECT_LENGTH_MAX,
    EVENT_TYPE_LENGTH_MAX,
)
from tallybook.metering.matching import Contribution, contributions
from tallybook.metering.metrics import (
    BATCH_EVENTS,
    EVENTS,
    INGEST_SECONDS,
    LAG_SECONDS,
    observe_many,
)
from tallybook.metering.settings import MeteringSettings
from tallybook.work import events as domain_events

ACCEPTED: Final = "accepted"
DUPLICATE: Final = "duplicate"
CONFLICT: Final = "conflict"
REJECTED: Final = "rejected"


@dataclass(slots=True)
class EventOutcome:
    """The answer for one event of a batch."""

    status: str
    source: str | None
    event_id: str | None
    late: bool = False
    code: str | None = None
    param: str | None = None
    message: str | None = None
    #: The dead letter keeping a rejected event.
    dead_letter_id: str | None = None
    #: The stored event's position (accepted events only).
    seq: int | None = None


@dataclass(slots=True)
class IngestResult:
    outcomes: list[EventOutcome]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> int:
        return self.counts.get(ACCEPTED, 0)

    @property
    def duplicates(self) -> int:
        return self.counts.get(DUPLICATE, 0)

    @property
    def conflicts(self) -> int:
        return self.counts.get(CONFLICT, 0)

    @property
    def rejected(self) -> int:
        return self.counts.get(REJECTED, 0)

    @property
    def late(self) -> int:
        return self.counts.get("late", 0)


@dataclass(slots=True)
class _Ready:
    index: int
    event: CheckedEvent
    customer_id: str
    contributions: list[Contribution]
    late: bool


def _text(raw: object, name: str, length_max: int) -> str | None:
    if not isinstance(raw, dict):
        return None
    value = raw.get(name)
    if isinstance(value, str) and 0 < len(value) <= length_max and "\x00" not in value:
        return value
    return None


def _conflict(event: CheckedEvent, why: str) -> EventOutcome:
    return EventOutcome(
        CONFLICT,
        event.source,
        event.event_id,
        code=EventCode.EVENT_CONFLICT.value,
        param="id",
        message=why,
    )


def _stored_outcome(event: CheckedEvent, stored_hash: str) -> EventOutcome:
    if stored_hash == event.content_hash:
        return EventOutcome(DUPLICATE, event.source, event.event_id)
    return _conflict(event, "an event with this source and id was stored with different content")


def _check_state(
    event: CheckedEvent,
    *,
    customers: dict[str, str],
    marks: dict[str, datetime],
    meters_by_type: dict[str, Any],
    oldest: datetime,
    newest: datetime,
    settings: MeteringSettings,
) -> Rejection | tuple[str, list[Contribution], bool]:
    if event.time > newest:
        return Rejection(
            EventCode.TIME_IN_FUTURE,
            "time",
            f"time is more than {settings.future_skew_seconds} s in the future",
        )
    if event.time < oldest:
        return Rejection(
            EventCode.TIME_TOO_OLD,
            "time",
            f"time is more than {settings.late_event_max_days} days in the past "
            "(TALLYBOOK_LATE_EVENT_MAX_DAYS)",
        )
    customer_id = customers.get(event.subject)
    if customer_id is None:
        return Rejection(
            EventCode.CUSTOMER_NOT_FOUND,
            "subject",
            f"no customer has external_id '{event.subject}'; create it, then replay",
        )
    meters = meters_by_type.get(event.type)
    found: list[Contribution] | Rejection = contributions(meters, event.data) if meters else []
    if isinstance(found, Rejection):
        return found
    mark = marks.get(customer_id)
    return customer_id, found, mark is not None and event.time < mark


def ingest_events(
    tx: Tx,
    raw_events: Sequence[Any],
    *,
    settings: MeteringSettings | None = None,
    received_at: Sequence[datetime] | None = None,
    origins: Sequence[str | None] | None = None,
    path: str = "service",
) -> IngestResult:
    """Validate, dedup, store and roll up ``raw_events`` (decoded JSON values).

    ``received_at`` gives each event's receipt time (default: ``tx.now()``), which is its time
    when it has none. ``origins`` names the dead letter each event is replayed from.
    """
    started = _time.perf_counter()
    batch = _Batch(tx, raw_events, settings or MeteringSettings(), received_at, origins)
    store.lock_ingest_shared(tx)
    batch.check_envelopes()
    batch.check_state(current_meters(tx))
    batch.rescue_stored()
    deltas = batch.store()
    _dead_letter(
        tx, batch.rejections, raw_events, batch.receipts, batch.origins, batch.outcomes, batch.now
    )
    _resolve_followers(batch.followers, batch.checked, batch.outcomes)
    _close_replayed(tx, batch.origins, batch.outcomes, batch.now)
    final = [o for o in batch.outcomes if o is not None]
    assert len(final) == len(raw_events), "every event gets an answer"
    counts = Counter(o.status for o in final)
    counts["late"] = sum(batch.late_customers.values())
    _emit(tx, final, batch.late_customers)
    result = IngestResult(outcomes=final, counts=dict(counts))
    # Last: concurrent batches of the same customers wait on each other's rollup rows, so
    # those row locks are taken as late as possible and held only until the commit.
    rollups.apply(tx, deltas, batch.now)
    tx.after_commit(_observer(tx, result, batch.accepted_times, started, path))
    return result


class _Batch:
    """One batch's state through the ladder (see the module docstring)."""

    def __init__(
        self,
        tx: Tx,
        raw_events: Sequence[Any],
        settings: MeteringSettings,
        received_at: Sequence[datetime] | None,
        origins: Sequence[str | None] | None,
    ) -> None:
        self.tx = tx
        self.raw_events = raw_events
        self.settings = settings
        self.now = tx.now()
        count = len(raw_events)
        self.receipts = list(received_at) if received_at is not None else [self.now] * count
        self.origins: list[str | None] = list(origins) if origins is not None else [None] * count
        self.outcomes: list[EventOutcome | None] = [None] * count
        self.checked: list[CheckedEvent | None] = [None] * count
        self.rejections: dict[int, Rejection] = {}
        self.representatives: list[int] = []
        self.followers: list[tuple[int, int]] = []
        self.ready: list[_Ready] = []
        self.meters_seen = 0
        self.accepted_times: list[datetime] = []
        self.late_customers: Counter[str] = Counter()

    def check_envelopes(self) -> None:
        """Steps 1 and 2: the envelope ladder, then who represents each (source, id)."""
        times: TimeCache = {}
        first_of: dict[EventKey, int] = {}
        for index, raw in enumerate(self.raw_events):
            verdict = check_envelope(raw, received_at=self.receipts[index], times=times)
            if isinstance(verdict, Rejection):
                self.rejections[index] = verdict
                continue
            self.checked[index] = verdict
            key = (verdict.source, verdict.event_id)
            first = first_of.get(key)
            if first is None:
                first_of[key] = index
                self.representatives.append(index)
            else:
                self.followers.append((index, first))

    def check_state(self, meter_set: MeterSet) -> None:
        """Step 3: time bounds, customer, every matching meter's value and dimensions."""
        self.meters_seen = meter_set.definition_seq_max
        events = [e for i in self.representatives if (e := self.checked[i]) is not None]
        customers = store.lock_customers(self.tx, sorted({e.subject for e in events}))
        marks = store.watermarks(self.tx, sorted(set(customers.values())))
        oldest = self.now - timedelta(days=self.settings.late_event_max_days)
        newest = self.now + timedelta(seconds=self.settings.future_skew_seconds)
        for index in self.representatives:
            event = self.checked[index]
            assert event is not None
            state = _check_state(
                event,
                customers=customers,
                marks=marks,
                meters_by_type=meter_set.by_type,
                oldest=oldest,
                newest=newest,
                settings=self.settings,
            )
            if isinstance(state, Rejection):
                self.rejections[index] = state
            else:
                self.ready.append(_Ready(index, event, state[0], state[1], state[2]))

    def rescue_stored(self) -> None:
        """Step 4: a stored event sent again is a duplicate even if it would be rejected
        today."""
        rejected = [
            (i, e) for i in self.representatives if i in self.rejections and (e := self.checked[i])
        ]
        if not rejected:
            return
        stored = store.stored_hashes(self.tx, [(e.source, e.event_id) for _, e in rejected])
        for index, event in rejected:
            stored_hash = stored.get((event.source, event.event_id))
            if stored_hash is not None:
                del self.rejections[index]
                self.outcomes[index] = _stored_outcome(event, stored_hash)

    def store(self) -> rollups.Deltas:
        """Steps 5 and 6: the dedup insert, late rows, and the rollup deltas of what was
        inserted (applied by the caller, last)."""
        ready = sorted(self.ready, key=lambda r: (r.event.source, r.event.event_id))
        seqs, existing = store.insert_events(
            self.tx,
            [
                EventRow(
                    source=r.event.source,
                    event_id=r.event.event_id,
                    type=r.event.type,
                    subject=r.event.subject,
                    customer_id=r.customer_id,
                    time=r.event.time,
                    data=r.event.data_json,
                    content_hash=r.event.content_hash,
                    received_at=r.event.received_at,
                    late=r.late,
                    meters_seen=self.meters_seen,
                )
                for r in ready
            ],
        )
        deltas = rollups.Deltas()
        late_rows: list[dict[str, Any]] = []
        windows: dict[datetime, datetime] = {}
        for r in ready:
            event = r.event
            seq = seqs.get((event.source, event.event_id))
            if seq is None:
                stored_hash = existing.get((event.source, event.event_id))
                assert stored_hash is not None, "an event neither inserted nor stored"
                self.outcomes[r.index] = _stored_outcome(event, stored_hash)
                continue
            window = windows.get(event.time)
            if window is None:
                window = windows[event.time] = floor_hour(event.time)
            for contribution in r.contributions:
                deltas.add(contribution, r.customer_id, event.time, seq, window)
            self.outcomes[r.index] = EventOutcome(
                ACCEPTED, event.source, event.event_id, late=r.late, seq=seq
            )
            self.accepted_times.append(event.time)
            if r.late:
                self.late_customers[r.customer_id] += 1
                late_rows.append(
                    {
                        "seq": seq,
                        "customer_id": r.customer_id,
                        "type": event.type,
                        "time": event.time,
                        "received_at": event.received_at,
                        "billed_at": None,
                        "billed_ref": None,
                    }
                )
        store.insert_late(self.tx, late_rows)
        return deltas


def _dead_letter(
    tx: Tx,
    rejections: dict[int, Rejection],
    raw_events: Sequence[Any],
    receipts: Sequence[datetime],
    sources: Sequence[str | None],
    outcomes: list[EventOutcome | None],
    now: datetime,
) -> None:
    if not rejections:
        return
    positions = sorted(rejections)
    rows = []
    for index in positions:
        raw = raw_events[index]
        rejection = rejections[index]
        rows.append(
            DeadLetterRow(
                id=new_id("dlq"),
                origin_id=sources[index],
                source=_text(raw, "source", EVENT_SOURCE_LENGTH_MAX),
                event_id=_text(raw, "id", EVENT_ID_LENGTH_MAX),
                type=_text(raw, "type", EVENT_TYPE_LENGTH_MAX),
                subject=_text(raw, "subject", EVENT_SUBJECT_LENGTH_MAX),
                code=rejection.code.value,
                param=rejection.param,
                message=rejection.message,
                raw=encode_raw(raw),
                received_at=receipts[index],
            )
        )
    letter_ids = store.upsert_dead_letters(tx, rows, now)
    for position, index in enumerate(positions):
        rejection = rejections[index]
        row = rows[position]
        outcomes[index] = EventOutcome(
            REJECTED,
            row.source,
            row.event_id,
            code=rejection.code.value,
            param=rejection.param,
            message=rejection.message,
            dead_letter_id=letter_ids[position],
        )


def _resolve_followers(
    followers: list[tuple[int, int]],
    checked: list[CheckedEvent | None],
    outcomes: list[EventOutcome | None],
) -> None:
    for index, first in followers:
        event, leader = checked[index], checked[first]
        decided = outcomes[first]
        assert event is not None and leader is not None and decided is not None
        if event.content_hash != leader.content_hash:
            outcomes[index] = _conflict(
                event, f"event {first} of this batch has the same source and id, other content"
            )
        elif decided.status in (ACCEPTED, DUPLICATE):
            outcomes[index] = EventOutcome(DUPLICATE, event.source, event.event_id)
        else:
            outcomes[index] = EventOutcome(
                decided.status,
                event.source,
                event.event_id,
                code=decided.code,
                param=decided.param,
                message=decided.message,
                dead_letter_id=decided.dead_letter_id,
            )


def _close_replayed(
    tx: Tx, sources: Sequence[str | None], outcomes: list[EventOutcome | None], now: datetime
) -> None:
    pairs = [(s, o) for s, o in zip(sources, outcomes, strict=True) if s and o is not None]
    replayed = [s for s, o in pairs if o.status in (ACCEPTED, DUPLICATE)]
    discarded = [s for s, o in pairs if o.status == CONFLICT]
    store.resolve_dead_letters(tx, replayed, status="replayed", now=now)
    store.resolve_dead_letters(
        tx,
        discarded,
        status="discarded",
        now=now,
        code=EventCode.EVENT_CONFLICT.value,
        message="an event with this source and id is stored with different content",
    )
    for source, outcome in zip(sources, outcomes, strict=True):
        if source and outcome is not None and outcome.status != REJECTED:
            outcome.dead_letter_id = source


def _emit(tx: Tx, outcomes: list[EventOutcome], late_customers: Counter[str]) -> None:
    rejected = Counter(o.code for o in outcomes if o.status == REJECTED)
    if rejected:
        domain_events.emit(
            tx,
            "events.rejected",
            data={"count": sum(rejected.values()), "by_code": dict(sorted(rejected.items()))},
        )
    for customer_id, late_count in sorted(late_customers.items()):
        domain_events.emit(
            tx,
            "usage.late_events_received",
            customer_id=customer_id,
            data={"count": late_count},
        )


def _observer(
    tx: Tx, result: IngestResult, accepted_times: list[datetime], started: float, path: str
) -> Any:
    def observe() -> None:
        committed = tx.clock.now()
        for outcome in (ACCEPTED, DUPLICATE, CONFLICT, REJECTED, "late"):
            amount = result.counts.get(outcome, 0)
            if amount:
                EVENTS.labels(outcome).inc(amount)
        observe_many(
            LAG_SECONDS,
            (max((committed - event_time).total_seconds(), 0.0) for event_time in accepted_times),
        )
        INGEST_SECONDS.labels(path).observe(_time.perf_counter() - started)
        BATCH_EVENTS.observe(len(result.outcomes))

    return observe
