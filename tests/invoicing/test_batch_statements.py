"""The period close's batch writes stay a few statements per batch, however many periods:
claiming the batch's job runs, moving its customers' watermarks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from tallybook.db import Database
from tallybook.kit.clock import utc
from tallybook.metering import service as metering
from tallybook.work import jobruns
from tests.invoicing.test_watermarks import _customers


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_claiming_a_batch_of_runs_is_one_statement(db: Database) -> None:
    keys = [f"sub_{n}:per_{n}:cycle" for n in range(120)]
    with db.transaction() as tx, _statements(db) as seen:
        taken = jobruns.claim_and_complete_many(tx, job="test.batch", run_keys=keys, owner="w1")
    assert taken == set(keys)
    assert len([s for s in seen if "job_runs" in s]) <= 2
    with db.transaction() as tx:  # taken once only
        assert (
            jobruns.claim_and_complete_many(tx, job="test.batch", run_keys=keys, owner="w2")
            == set()
        )


def test_watermarks_of_a_batch_are_a_few_statements(db: Database) -> None:
    customers = _customers(db, 60)
    with db.transaction() as tx, _statements(db) as seen:
        metering.mark_invoiced_through_many(tx, {c: utc(2027, 2, 1) for c in customers})
    assert len(seen) <= 4
