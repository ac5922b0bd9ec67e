"""API key scopes: ``<area>:read`` and ``<area>:write``; ``write`` implies ``read``;
``admin`` grants everything."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Area(StrEnum):
    CUSTOMERS = "customers"
    CATALOG = "catalog"
    EVENTS = "events"
    USAGE = "usage"
    SUBSCRIPTIONS = "subscriptions"
    ENTITLEMENTS = "entitlements"
    GRANTS = "grants"
    LEDGER = "ledger"
    INVOICES = "invoices"
    PAYMENTS = "payments"
    WEBHOOKS = "webhooks"
    RECONCILIATION = "reconciliation"
    CONSOLE = "console"


ADMIN: Final = "admin"
ALL_SCOPES: Final[tuple[str, ...]] = (
    ADMIN,
    *(f"{area}:{mode}" for area in Area for mode in ("read", "write")),
)


def parse_scope(scope: str) -> str:
    scope = scope.strip()
    if scope not in ALL_SCOPES:
        raise ValueError(f"unknown scope {scope!r}; known: {', '.join(ALL_SCOPES)}")
    return scope


def scope_allows(granted: frozenset[str], required: str) -> bool:
    if ADMIN in granted or required in granted:
        return True
    area, _, mode = required.partition(":")
    return mode == "read" and f"{area}:write" in granted
