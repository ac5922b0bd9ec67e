"""A worker process for the crash test: process the inbox with a clock fixed at the test's
instant, until told to stop (SIGKILL) or nothing is due."""

from __future__ import annotations

import sys
from datetime import datetime

from tallybook.db import Database
from tallybook.kit.clock import TestClock
from tallybook.payments.inbox import processor
from tests.payments.conftest import offline_stripe_ctx


def main() -> None:
    url, instant = sys.argv[1], datetime.fromisoformat(sys.argv[2])
    db = Database(url, clock=TestClock(instant), pool_size=2)
    ctx = offline_stripe_ctx()
    print("ready", flush=True)
    while processor.process_one(db, ctx) is not None:
        pass


if __name__ == "__main__":
    main()
