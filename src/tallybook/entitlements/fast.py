"""``fast_check``: the check as the API's hot path runs it. On PostgreSQL the one-statement
path of ``fast_pg`` answers the common case; everything else (and SQLite) goes through the
portable ``check.evaluate`` in a read transaction. Both give the same answers."""

from __future__ import annotations

from typing import Final

from tallybook.db import Database
from tallybook.entitlements import check, fast_pg
from tallybook.entitlements.domain import CheckResult, Policies
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
    with db.read(actor=actor, request_id=request_id) as tx:
        found = check.resolve_customer(tx, customer)
        info = check.resolve_feature(tx, feature)
        result = check.evaluate(tx, found, info, quantity=amount, policies=rules)
    _PORTABLE.inc()
    return result
