from __future__ import annotations

import pytest

from tallybook.db import Database
from tallybook.kit.clock import TestClock
from tallybook.work import jobruns


def test_claim_is_exclusive_and_done_runs_are_never_repeated(
    db: Database, clock: TestClock
) -> None:
    first = jobruns.claim(db, job="j", run_key="2026-11-01", owner="a")
    assert first is not None and not first.resumed
    assert jobruns.claim(db, job="j", run_key="2026-11-01", owner="b") is None
    with db.transaction() as tx:
        jobruns.complete(tx, first, {"invoices": 3})
    clock.advance(hours=1)
    assert jobruns.claim(db, job="j", run_key="2026-11-01", owner="b") is None


def test_expired_lease_resumes_from_checkpoint(db: Database, clock: TestClock) -> None:
    first = jobruns.claim(db, job="j", run_key="k", owner="a", lease_seconds=60)
    assert first is not None
    with db.transaction() as tx:
        jobruns.save_checkpoint(tx, first, {"after": "sub_10"}, lease_seconds=60)
    clock.advance(seconds=61)
    second = jobruns.claim(db, job="j", run_key="k", owner="b")
    assert second is not None and second.resumed
    assert second.checkpoint == {"after": "sub_10"}
    # The first worker wakes up and is fenced off: its batch must roll back.
    with pytest.raises(jobruns.LeaseLost), db.transaction() as tx:
        jobruns.save_checkpoint(tx, first, {"after": "sub_20"})
    with db.read() as tx:
        run = jobruns.get_run(tx, "j", "k")
        assert run is not None and run.checkpoint == {"after": "sub_10"} and run.owner == "b"
