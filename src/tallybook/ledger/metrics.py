"""The ledger's Prometheus metrics."""

from __future__ import annotations

from typing import Final

from tallybook.observability.metrics import counter

TRANSFERS: Final = counter(
    "tallybook_ledger_transfers_total",
    "Ledger operations by kind and outcome (created, exists, failed)",
    ("kind", "status"),
)
HOLDS_EXPIRED: Final = counter(
    "tallybook_ledger_holds_expired_total", "Holds released because their timeout passed"
)
CHECK_BREACHES: Final = counter(
    "tallybook_ledger_check_breaches_total",
    "Breaches found by the ledger invariant check, by kind",
    ("kind",),
)
