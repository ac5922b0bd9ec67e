"""Roles and the permission table: who may see which page and run which action.

Roles are ordered ``viewer < support < finance < admin`` for pages (a page names the least
role that may read it). Actions are **not** ordered: each has an explicit set of roles in
:data:`PERMISSIONS`, so "support may issue credits but not void invoices" is data here and in
``docs/console.md``, not an accident of ranking. An action missing from the table is refused
to everyone (deny by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from tallybook.auth.scopes import ADMIN
from tallybook.kit.errors import CommonCode, InvalidRequest


class Role(StrEnum):
    VIEWER = "viewer"
    SUPPORT = "support"
    FINANCE = "finance"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def at_least(self, minimum: Role) -> bool:
        return self.rank >= minimum.rank


_RANKS: Final[dict[Role, int]] = {role: rank for rank, role in enumerate(Role)}

#: Recorded as the role of command-line operations (``tallybook console users …``).
SYSTEM_ROLE: Final = "system"


def parse_role(value: str, *, param: str = "role") -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID,
            f"'{value}' is not a role; use one of {', '.join(Role)}",
            param=param,
        ) from None


_EVERYONE_WHO_ACTS: Final = frozenset({Role.SUPPORT, Role.FINANCE, Role.ADMIN})
_MONEY: Final = frozenset({Role.FINANCE, Role.ADMIN})
_ADMIN_ONLY: Final = frozenset({Role.ADMIN})

#: action → the roles that may run it. Actions are ``<object>.<verb>``. Viewers run nothing.
#: Entries for actions whose domains are still being built are the agreed policy; their
#: handlers arrive with those domains (see docs/console.md, "Adding an action").
PERMISSIONS: Final[Mapping[str, frozenset[Role]]] = {
    # Outbound webhooks
    "webhook_endpoint.enable": _ADMIN_ONLY,
    "webhook_delivery.retry": _EVERYONE_WHO_ACTS,
    # Console users
    "console_user.set_role": _ADMIN_ONLY,
    "console_user.disable": _ADMIN_ONLY,
    "console_user.enable": _ADMIN_ONLY,
    # Credits and grants
    "grant.issue_credit": _EVERYONE_WHO_ACTS,
    "grant.void": _MONEY,
    # Invoices
    "invoice.issue_adjustment": _MONEY,
    "invoice.void": _MONEY,
    # Payments
    "payment.retry": _EVERYONE_WHO_ACTS,
    # Subscriptions
    "subscription.cancel": _EVERYONE_WHO_ACTS,
    # Metering
    "dead_letter.replay": _EVERYONE_WHO_ACTS,
}


def may_run(role: Role, action: str) -> bool:
    return role in PERMISSIONS.get(action, frozenset())


def roles_for(action: str) -> list[Role]:
    """The roles allowed to run ``action``, in rank order (for hints and docs)."""
    allowed = PERMISSIONS.get(action, frozenset())
    return [role for role in Role if role in allowed]


#: API-key scopes that open the console, strongest first, and the role each grants.
#: ``console:write`` grants support (not finance): moving money from the console is for named
#: people with their own sign-in; a shared key cannot be told apart in the audit log.
SCOPE_ROLES: Final[tuple[tuple[str, Role], ...]] = (
    (ADMIN, Role.ADMIN),
    ("console:write", Role.SUPPORT),
    ("console:read", Role.VIEWER),
)


def role_for_scopes(scopes: frozenset[str]) -> Role | None:
    for scope, role in SCOPE_ROLES:
        if scope in scopes:
            return role
    return None
