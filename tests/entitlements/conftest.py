"""Checks run through both paths: on PostgreSQL the one-statement hot path answers and must
agree with the portable path; on SQLite the portable path answers. On PostgreSQL the hot path
runs twice: on this thread (``fast_check``) and as the API's lane runs it, on an event loop
with the hot-read pool (``fast_check_async``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from tallybook.db import Database
from tallybook.db.hot import HotReads
from tallybook.entitlements import catalog_cache
from tallybook.entitlements import service as entitlements
from tallybook.entitlements.domain import CheckResult, Policies
from tallybook.entitlements.fast import PATHS, fast_check_async
from tallybook.entitlements.mirror import Mirror

T = TypeVar("T")


class LoopThread:
    """An event loop on a thread of its own, with one hot-read pool and one mirror
    (``entitlements.mirror``) per database URL."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pools: dict[str, HotReads] = {}
        self.mirrors: dict[str, Mirror] = {}

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def hot(self, db: Database) -> HotReads:
        key = str(db.url)
        if key not in self.pools:
            pool = HotReads(db.url)
            self.run(pool.open())
            self.pools[key] = pool
        return self.pools[key]

    def mirror(self, db: Database) -> Mirror:
        key = str(db.url)
        if key not in self.mirrors:
            mirror = Mirror(db.url)
            self.run(mirror.open())
            self.mirrors[key] = mirror
        return self.mirrors[key]

    def stop(self) -> None:
        for mirror in self.mirrors.values():
            self.run(mirror.close())
        for pool in self.pools.values():
            self.run(pool.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


_loop_thread: LoopThread | None = None


def lane_loop() -> LoopThread:
    global _loop_thread
    if _loop_thread is None:
        _loop_thread = LoopThread()
    return _loop_thread


@pytest.fixture(scope="session", autouse=True)
def stop_lane_loop() -> Iterator[None]:
    yield
    if _loop_thread is not None:
        _loop_thread.stop()


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    catalog_cache.clear()
    yield
    catalog_cache.clear()


def fast_count() -> float:
    return float(PATHS.labels("fast")._value.get())


def checked(
    db: Database,
    customer: str,
    feature: str,
    quantity: Decimal | int | str | None = None,
    *,
    policies: Policies | None = None,
    expect_fast: bool | None = None,
) -> CheckResult:
    """The check as the API answers it, asserted equal to the portable path's answer (and, on
    PostgreSQL, answered by the hot path unless the case needs the portable one)."""
    with db.read() as tx:
        portable = entitlements.check(tx, customer, feature, quantity=quantity, policies=policies)
    before = fast_count()
    fast = entitlements.fast_check(db, customer, feature, quantity=quantity, policies=policies)
    assert fast == portable
    if db.is_postgres and expect_fast is not None:
        assert (fast_count() > before) is expect_fast
    if db.is_postgres:
        runner = lane_loop()
        on_loop = runner.run(
            fast_check_async(
                db, runner.hot(db), customer, feature, quantity=quantity, policies=policies
            )
        )
        assert on_loop == portable
        # Through the mirror: once (it reads the row, and keeps it unless told of a change
        # meanwhile), then again once it has settled (the kept row, plus the notices since).
        mirror = runner.mirror(db)
        for _ in range(2):
            mirrored = runner.run(
                fast_check_async(
                    db,
                    runner.hot(db),
                    customer,
                    feature,
                    quantity=quantity,
                    policies=policies,
                    mirror=mirror,
                )
            )
            assert mirrored == portable
            runner.run(mirror.settle())
    return fast


def summary(result: CheckResult) -> dict[str, Any]:
    return {
        "allowed": result.allowed,
        "reason": str(result.reason),
        "limit": result.limit,
        "used": result.used,
        "reserved": result.reserved,
        "remaining": result.remaining,
    }
