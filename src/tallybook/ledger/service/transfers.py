"""Transfers: create (one, many, linked), holds (post, void, expire), reversals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from tallybook.db import Database, Tx
from tallybook.kit.errors import InvalidRequest
from tallybook.ledger import repository
from tallybook.ledger.metrics import HOLDS_EXPIRED
from tallybook.ledger.rejections import LedgerCode
from tallybook.ledger.service import engine
from tallybook.ledger.values import (
    BATCH_TRANSFERS_MAX,
    ExpirePending,
    LedgerOp,
    PostPending,
    ReverseTransfer,
    TransferResult,
    TransferStatus,
    VoidPending,
    expiry_transfer_id,
)
from tallybook.work import jobruns
from tallybook.work.schedule import JobContext

EXPIRY_BATCH_MAX: Final = 500
#: Batches per job run, so one run is bounded; the next run picks up the rest.
EXPIRY_BATCHES_PER_RUN_MAX: Final = 200
EXPIRE_HOLDS_JOB: Final = "ledger.expire_holds"


def _check_size(requests: Sequence[LedgerOp]) -> None:
    if len(requests) > BATCH_TRANSFERS_MAX:
        raise InvalidRequest(
            LedgerCode.BATCH_SIZE_INVALID,
            f"a batch holds at most {BATCH_TRANSFERS_MAX} transfers",
            param="transfers",
        )


def create_transfers(tx: Tx, requests: Sequence[LedgerOp]) -> list[TransferResult]:
    """Apply each request in order; each succeeds or fails on its own (5 may fail, 6 succeed).

    Returns one result per request: ``created``, ``exists`` (same id, same content: the
    original), or ``failed`` with a :class:`~tallybook.ledger.rejections.Rejection`. Never raises
    for a refused transfer. Transient failures (``exceeds_credits``…) are stored under their id,
    so the unit of work must commit for them to stick.
    """
    _check_size(requests)
    return engine.execute(tx, requests)


def create_transfer(tx: Tx, request: LedgerOp) -> TransferResult:
    return engine.execute(tx, [request])[0]


def create_linked_batch(tx: Tx, requests: Sequence[LedgerOp]) -> list[TransferResult]:
    """All or nothing: if one request fails, none is applied (the others report
    ``linked_event_failed``; members that already existed report ``exists``)."""
    _check_size(requests)
    return engine.execute(tx, requests, linked=True)


def post_pending(tx: Tx, request: PostPending) -> TransferResult:
    return create_transfer(tx, request)


def void_pending(tx: Tx, request: VoidPending) -> TransferResult:
    return create_transfer(tx, request)


def reverse_transfer(tx: Tx, request: ReverseTransfer) -> TransferResult:
    return create_transfer(tx, request)


def expire_due_holds(tx: Tx, *, limit: int = EXPIRY_BATCH_MAX) -> list[TransferResult]:
    """Expire up to ``limit`` holds whose timeout has passed. Idempotent: the expiry of a hold
    has an id derived from the hold, and a hold is resolved at most once."""
    due = repository.due_hold_ids(tx, tx.now(), min(limit, EXPIRY_BATCH_MAX))
    results = engine.execute(tx, [ExpirePending(expiry_transfer_id(h), h) for h in due])
    created = sum(1 for r in results if r.status is TransferStatus.CREATED)
    if created:
        HOLDS_EXPIRED.inc(created)
    return results


def run_expire_holds(db: Database, context: JobContext) -> dict[str, Any]:
    """The ``ledger.expire_holds`` job: expire every due hold, in bounded batches.

    One run per minute (the run key), so two workers never expire the same batch twice over;
    each batch commits on its own.
    """
    minute = db.clock.now().strftime("%Y-%m-%dT%H:%M")
    claim = jobruns.claim(db, job=EXPIRE_HOLDS_JOB, run_key=minute, owner=context.owner)
    if claim is None:
        return {"skipped": 1}
    expired = 0
    for batch in range(EXPIRY_BATCHES_PER_RUN_MAX):
        with db.transaction(actor=f"system:{EXPIRE_HOLDS_JOB}") as tx:
            results = expire_due_holds(tx)
            expired += sum(1 for r in results if r.status is TransferStatus.CREATED)
            jobruns.save_checkpoint(tx, claim, {"batches": batch + 1, "expired": expired})
        context.progress(expired, None, "holds expired")
        if len(results) < EXPIRY_BATCH_MAX:
            break
    with db.transaction(actor=f"system:{EXPIRE_HOLDS_JOB}") as tx:
        jobruns.complete(tx, claim, {"expired": expired})
    return {"expired": expired}
