"""``fast_check``: the check as the API's hot path runs it. On PostgreSQL the one-statement
path of ``fast_pg`` answers the common case; everything else (and SQLite) goes through the
portable ``check.evaluate`` in a read transaction. Both give the same answers.

``fast_check_async`` is the same check for the API's event loop: with the hot-read pool open
(PostgreSQL, while the API serves) the statements run on the loop's own connections; the
portable path, and everything without that pool, runs ``fast_check`` on a worker thread.
Given the API's mirror (``entitlements.mirror``), a check it keeps the state of sends no
statement."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Final

from tallybook.db import Database
from tallybook.db.hot import HotReads
from tallybook.entitlements import check, fast_pg
from tallybook.entitlements.domain import CheckResult, Policies
from tallybook.entitlements.mirror import Mirror
from tallybook.observability.metrics import counter

PATHS: Final = counter(
    "tallybook_entitlements_checks_total",
    "Entitlement checks by the path that answered (fast: one statement; portable: services)",
    ("path",),
)
_FAST = PATHS.labels("fast")
_PORTABLE = PATHS.labels("portable")


def fast_check(
    db: Database,
    customer: str,
    feature: str,
    *,
    quantity: object = None,
    policies: Policies | None = None,
    actor: str = "system",
    request_id: str | None = None,
) -> CheckResult:
    amount = check.parse_quantity(quantity)
    rules = policies or Policies()
    if db.is_postgres:
        try:
            result = fast_pg.check(db, customer, feature, amount, rules)
        except fast_pg.NeedsPortable:
            pass
        else:
            _FAST.inc()
            return result
    return _portable(db, customer, feature, amount, rules, actor, request_id)


def _portable(
    db: Database,
    customer: str,
    feature: str,
    amount: Decimal | None,
    rules: Policies,
    actor: str,
    request_id: str | None,
) -> CheckResult:
    with db.read(actor=actor, request_id=request_id) as tx:
        found = check.resolve_customer(tx, customer)
        info = check.resolve_feature(tx, feature)
        result = check.evaluate(tx, found, info, quantity=amount, policies=rules)
    _PORTABLE.inc()
    return result


async def fast_check_async(
    db: Database,
    hot: HotReads | None,
    customer: str,
    feature: str,
    *,
    quantity: object = None,
    policies: Policies | None = None,
    actor: str = "system",
    request_id: str | None = None,
    mirror: Mirror | None = None,
) -> CheckResult:
    rules = policies or Policies()
    if hot is None:
        return await asyncio.to_thread(
            fast_check,
            db,
            customer,
            feature,
            quantity=quantity,
            policies=rules,
            actor=actor,
            request_id=request_id,
        )
    amount = check.parse_quantity(quantity)
    try:
        result = await fast_pg.check_async(
            hot, db.clock.now(), customer, feature, amount, rules, mirror
        )
    except fast_pg.NeedsPortable:
        return await asyncio.to_thread(
            _portable, db, customer, feature, amount, rules, actor, request_id
        )
    _FAST.inc()
    return result
