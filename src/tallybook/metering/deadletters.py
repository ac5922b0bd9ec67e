"""Dead letters: rejected events kept with their reason, listable and replayable.

A replay sends the stored event through the normal pipeline, with its first receipt time as
the time default. Outcomes: ``accepted`` or ``duplicate`` (the event is in; the letter is
``replayed``), ``conflict`` (another event holds its (source, id); ``discarded``), or
``rejected`` again (the letter stays ``pending`` with the new reason and one more attempt).
Replays are idempotent: two replays of one letter store its event once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from tallybook.db import Tx
from tallybook.kit.errors import CommonCode, Conflict, InvalidRequest, NotFound
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.metering import repository
from tallybook.metering.cloudevents import DECODER
from tallybook.metering.errors import MeteringCode
from tallybook.metering.ingest import EventOutcome, ingest_events
from tallybook.metering.limits import REPLAY_BATCH_MAX
from tallybook.metering.models import DeadLetter
from tallybook.metering.settings import MeteringSettings
from tallybook.work import events as domain_events

PENDING: Final = "pending"
REPLAYED: Final = "replayed"
DISCARDED: Final = "discarded"
STATUSES: Final = (PENDING, REPLAYED, DISCARDED)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    #: (dead letter id, outcome) in replay order.
    outcomes: list[tuple[str, EventOutcome]]

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(outcome.status for _, outcome in self.outcomes))


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID,
            f"status must be one of {', '.join(STATUSES)}",
            param="status",
        )


def list_dead_letters(
    tx: Tx,
    request: PageRequest | None = None,
    *,
    status: str | None = PENDING,
    code: str | None = None,
) -> Page[DeadLetter]:
    """Newest first."""
    request = request or PageRequest()
    _check_status(status)
    rows = repository.dead_letters_page(
        tx,
        status=status,
        code=code,
        starting_after=request.starting_after,
        limit=request.limit + 1,
    )
    return page_from_rows(rows, request)


def get_dead_letter(tx: Tx, letter_id: str) -> DeadLetter:
    letter = tx.session.get(DeadLetter, letter_id)
    if letter is None:
        raise NotFound("dead letter", letter_id)
    return letter


def _decode(raw: str) -> Any:
    try:
        return DECODER.decode(raw)
    except Exception:  # a letter keeps whatever arrived; undecodable stays rejected
        return raw


def replay_dead_letters(
    tx: Tx,
    *,
    ids: Sequence[str] | None = None,
    code: str | None = None,
    limit: int = REPLAY_BATCH_MAX,
    settings: MeteringSettings | None = None,
) -> ReplayResult:
    """Replay pending letters (these ids, or those with this code, or the oldest), at most
    ``limit`` per call."""
    limit = max(1, min(limit, REPLAY_BATCH_MAX))
    letters = repository.pending_dead_letters(tx, ids=ids, code=code, limit=limit)
    if not letters:
        return ReplayResult(outcomes=[])
    result = ingest_events(
        tx,
        [_decode(letter.raw) for letter in letters],
        settings=settings,
        received_at=[letter.received_at for letter in letters],
        origins=[letter.id for letter in letters],
        path="replay",
    )
    outcomes = [
        (letter.id, outcome) for letter, outcome in zip(letters, result.outcomes, strict=True)
    ]
    replay = ReplayResult(outcomes=outcomes)
    domain_events.emit(tx, "events.dead_letters_replayed", data={"by_status": replay.counts})
    return replay


def replay_dead_letter(
    tx: Tx, letter_id: str, *, settings: MeteringSettings | None = None
) -> EventOutcome:
    letter = get_dead_letter(tx, letter_id)
    if letter.status != PENDING:
        raise Conflict(
            MeteringCode.DEAD_LETTER_NOT_PENDING,
            f"dead letter {letter_id} is {letter.status}",
            param="id",
        )
    result = replay_dead_letters(tx, ids=[letter_id], settings=settings)
    return result.outcomes[0][1]


def discard_dead_letter(tx: Tx, letter_id: str) -> DeadLetter:
    """Give up on a pending letter (kept for the record)."""
    letter = get_dead_letter(tx, letter_id)
    if letter.status != PENDING:
        raise Conflict(
            MeteringCode.DEAD_LETTER_NOT_PENDING,
            f"dead letter {letter_id} is {letter.status}",
            param="id",
        )
    letter.status = DISCARDED
    letter.resolved_at = tx.now()
    tx.session.flush()
    return letter
