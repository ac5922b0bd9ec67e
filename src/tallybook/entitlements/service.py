"""The entitlements domain's service API. Services take a ``Tx`` and never commit.

Checks::

    check(tx, customer, feature, *, quantity=None, policies=None) -> CheckResult
    check_all(tx, customer, *, policies=None) -> list[CheckResult]
    fast_check(db, customer, feature, *, quantity=None, policies=None) -> CheckResult
        # the hot path: its own read (PostgreSQL: two statements), same answers as check()

Overrides::

    create_override(tx, OverrideInput(...)) / revoke_override(tx, id) / list_overrides(...)

Reservations::

    reserve(tx, ReservationInput(...), policies=None) -> ReserveOutcome
    settle(tx, id, *, quantity=None, amount_minor=None) / release(tx, id) / expire(tx, id)

Spend limits::

    set_spend_limit(tx, customer, SpendLimitInput(...)) / remove_spend_limit(tx, customer)
"""

from tallybook.entitlements.check import check, check_all, resolve_customer, resolve_feature
from tallybook.entitlements.domain import CheckResult, Policies, Reason, Source, UnpaidPolicy
from tallybook.entitlements.fast import fast_check
from tallybook.entitlements.overrides import (
    OverrideInput,
    create_override,
    get_override,
    list_overrides,
    revoke_override,
)
from tallybook.entitlements.reservations import (
    ReservationInput,
    ReserveOutcome,
    expire,
    get_reservation,
    list_reservations,
    release,
    reserve,
    settle,
)
from tallybook.entitlements.spend import (
    SpendLimitInput,
    remove_spend_limit,
    set_spend_limit,
)

__all__ = [
    "CheckResult",
    "OverrideInput",
    "Policies",
    "Reason",
    "ReservationInput",
    "ReserveOutcome",
    "Source",
    "SpendLimitInput",
    "UnpaidPolicy",
    "check",
    "check_all",
    "create_override",
    "expire",
    "fast_check",
    "get_override",
    "get_reservation",
    "list_overrides",
    "list_reservations",
    "release",
    "remove_spend_limit",
    "reserve",
    "resolve_customer",
    "resolve_feature",
    "revoke_override",
    "set_spend_limit",
    "settle",
]
