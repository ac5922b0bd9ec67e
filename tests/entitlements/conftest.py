"""Checks run through both paths: on PostgreSQL the one-statement hot path answers and must
agree with the portable path; on SQLite the portable path answers."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tallybook.db import Database
from tallybook.entitlements import catalog_cache
from tallybook.entitlements import service as entitlements
from tallybook.entitlements.domain import CheckResult, Policies
from tallybook.entitlements.fast import PATHS


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
