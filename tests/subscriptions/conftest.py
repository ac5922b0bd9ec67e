"""Helpers for subscription tests: a database whose clock starts where the test needs it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from tallybook.db import Database
from tallybook.kit.clock import TestClock


@pytest.fixture
def at(db: Database) -> Callable[[datetime], tuple[Database, TestClock]]:
    """``at(instant)`` → the test's database seen through a clock starting at ``instant``."""

    def make(instant: datetime) -> tuple[Database, TestClock]:
        clock = TestClock(instant)
        return db.with_clock(clock), clock

    return make
