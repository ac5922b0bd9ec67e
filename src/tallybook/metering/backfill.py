"""Meters defined after events arrived: counting the stored events exactly once.

Ingestion stamps each event with ``meters_seen``, the highest meter ``definition_seq`` it
counted with. A meter M therefore still owes exactly the stored events of its type with
``meters_seen < M.definition_seq``; later events were counted on ingestion.

- ``define_meter`` creates the meter behind a barrier (on PostgreSQL the ingest lock taken
  exclusively: in-flight ingestion finishes, new ingestion waits for the commit) and, when no
  stored event of its type exists, marks it backfilled at once: the usual case.
- Otherwise the ``metering.backfill`` job (``tallybook jobs run-due``, the worker, or
  ``tallybook meters backfill``) counts the owed events in bounded batches, each committed with
  its rollups and the job's checkpoint (``work.jobruns``): a crash resumes after the last
  committed batch, never counting an event twice. Until it finishes, usage of that meter is
  computed from raw events, so it is exact at every moment.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import exists, func, select

from tallybook.catalog import meters as catalog_meters
from tallybook.catalog.meter_models import Meter
from tallybook.catalog.meters import MeterInput
from tallybook.db import Database, Tx
from tallybook.metering.cloudevents import Rejection, decode_data
from tallybook.metering.ingest import rollups, store
from tallybook.metering.limits import BACKFILL_BATCH_MAX
from tallybook.metering.matching import compile_meter
from tallybook.metering.models import MeteringEvent
from tallybook.work import events as domain_events
from tallybook.work import jobruns

JOB: Final = "metering.backfill_meter"


def define_meter(tx: Tx, data: MeterInput) -> Meter:
    """``catalog.meters.create_meter`` plus the backfill shortcut (see module docstring).

    On PostgreSQL the barrier is held until ``tx`` commits and ingestion waits meanwhile:
    call it in a short transaction."""
    store.barrier(tx)
    meter = catalog_meters.create_meter(tx, data)
    if meter.backfilled_at is None:
        owed = tx.session.scalar(
            select(
                exists().where(
                    MeteringEvent.type == meter.event_type,
                    MeteringEvent.meters_seen < meter.definition_seq,
                )
            )
        )
        if not owed:
            meter.backfilled_through_seq = int(
                tx.session.scalar(select(func.max(MeteringEvent.seq))) or 0
            )
            meter.backfilled_at = tx.now()
            tx.session.flush()
    return meter


def pending_meter_ids(tx: Tx) -> list[str]:
    return list(
        tx.session.scalars(
            select(Meter.id).where(Meter.backfilled_at.is_(None)).order_by(Meter.definition_seq)
        )
    )


def backfill_meter(
    db: Database, meter_id: str, *, owner: str, batches_max: int | None = None
) -> dict[str, Any]:
    """Run (or resume) one meter's backfill. Returns what it did; ``done`` says whether the
    meter is complete."""
    claim = jobruns.claim(db, job=JOB, run_key=meter_id, owner=owner)
    if claim is None:
        return {"meter_id": meter_id, "done": False, "skipped": "claimed elsewhere or done"}
    checkpoint = dict(claim.checkpoint)
    if "until_seq" not in checkpoint:
        with db.transaction(actor=f"system:{JOB}") as tx:
            # Once every ingestion that might not know the meter has finished, the owed events
            # are all stored and all numbered at most until_seq.
            store.barrier(tx)
            checkpoint = {
                "until_seq": int(tx.session.scalar(select(func.max(MeteringEvent.seq))) or 0),
                "after_seq": 0,
                "counted": 0,
                "uncountable": 0,
            }
            jobruns.save_checkpoint(tx, claim, checkpoint)
    batches = 0
    while batches_max is None or batches < batches_max:
        batches += 1
        with db.transaction(actor=f"system:{JOB}") as tx:
            if _backfill_batch(tx, meter_id, claim, checkpoint):
                return {"meter_id": meter_id, "done": True, **checkpoint}
    return {"meter_id": meter_id, "done": False, **checkpoint}


def _backfill_batch(
    tx: Tx, meter_id: str, claim: jobruns.Claim, checkpoint: dict[str, Any]
) -> bool:
    """One bounded batch in one transaction; True when the meter is complete."""
    meter = catalog_meters.get_meter(tx, meter_id)
    compiled = compile_meter(meter)
    rows = tx.session.execute(
        select(MeteringEvent.seq, MeteringEvent.customer_id, MeteringEvent.time, MeteringEvent.data)
        .where(
            MeteringEvent.type == meter.event_type,
            MeteringEvent.meters_seen < meter.definition_seq,
            MeteringEvent.seq > checkpoint["after_seq"],
            MeteringEvent.seq <= checkpoint["until_seq"],
        )
        .order_by(MeteringEvent.seq)
        .limit(BACKFILL_BATCH_MAX)
    ).all()
    if not rows:
        meter.backfilled_through_seq = checkpoint["until_seq"]
        meter.backfilled_at = tx.now()
        jobruns.complete(tx, claim, checkpoint)
        domain_events.emit(
            tx,
            "meter.backfill_completed",
            object_id=meter.id,
            data={
                "key": meter.key,
                "version": meter.version,
                "counted": checkpoint["counted"],
                "uncountable": checkpoint["uncountable"],
            },
        )
        return True
    deltas = rollups.Deltas()
    for seq, customer_id, time, data_text in rows:
        data = decode_data(data_text)
        if compiled.filters and not compiled.matches(data):
            continue
        contribution = compiled.contribution(data)
        if isinstance(contribution, Rejection):
            checkpoint["uncountable"] += 1
            continue
        deltas.add(contribution, customer_id, time, seq)
        checkpoint["counted"] += 1
    rollups.apply(tx, deltas, tx.now())
    checkpoint["after_seq"] = rows[-1][0]
    meter.backfilled_through_seq = checkpoint["after_seq"]
    jobruns.save_checkpoint(tx, claim, checkpoint)
    return False


def run_backfills(db: Database, *, owner: str, batches_max: int | None = None) -> dict[str, Any]:
    """Every meter that still owes events (the scheduled job's body)."""
    with db.read(actor=f"system:{JOB}") as tx:
        meter_ids = pending_meter_ids(tx)
    reports = [
        backfill_meter(db, meter_id, owner=owner, batches_max=batches_max) for meter_id in meter_ids
    ]
    return {
        "meters": len(meter_ids),
        "completed": sum(1 for r in reports if r.get("done")),
        "events_counted": sum(int(r.get("counted", 0)) for r in reports),
    }
