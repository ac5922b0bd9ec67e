"""Pure parts of reconciliation: the kinds of discrepancy, a finding, and the scope options."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final


class DiscrepancyKind(StrEnum):
    #: A breach reported by the ledger's own check (``ledger.check_invariants``).
    LEDGER_INVARIANT = "ledger_invariant"
    #: A finalized invoice's amount due differs from its transfers' net movement on the
    #: customer's accounts_receivable (ADR 0002); a voided invoice whose movement is not zero.
    INVOICE_LEDGER = "invoice_ledger"
    #: The quantity last invoiced for a closed period differs from the usage measured now
    #: (minus late usage still waiting for the next invoice).
    INVOICE_USAGE = "invoice_usage"
    #: Rollups of a (meter, customer, window) differ from the total recomputed from raw events.
    ROLLUP_EVENTS = "rollup_events"
    #: Invoices and payments against what the payment provider's side says (amounts, statuses,
    #: missing on either side).
    PAYMENT_PROVIDER = "payment_provider"
    #: A clearing account holds more than the money still in flight (a payout missing) or less
    #: than zero (paid out more than it received).
    CLEARING_BALANCE = "clearing_balance"


#: Invoice statuses that were finalized and not voided.
FINALIZED_STATUSES: Final = ("open", "paid", "uncollectible")
#: Each kind's list of findings is capped; the run's checks say when a cap was hit.
FINDINGS_PER_KIND_MAX: Final = 1000


@dataclass(frozen=True, slots=True)
class Finding:
    kind: DiscrepancyKind
    #: What identifies the problem within its kind (an invoice id, a meter|customer|window…).
    key: str
    objects: dict[str, Any]
    detail: str
    currency: str | None = None
    expected_minor: int | None = None
    actual_minor: int | None = None
    expected_quantity: Decimal | None = None
    actual_quantity: Decimal | None = None

    @property
    def fingerprint(self) -> str:
        return f"{self.kind.value}:{self.key}"[:300]


@dataclass(frozen=True, slots=True)
class Options:
    """How much each check looks at (defaults suit a daily run)."""

    #: Usage check: invoices finalized this many days before the run.
    invoice_usage_days: int = 62
    #: Rollups check: the window of event times recomputed from raw events, hour-aligned;
    #: defaults to the 48 full hours before the run.
    rollup_window_start: datetime | None = None
    rollup_window_end: datetime | None = None
    rollup_window_hours: int = 48
    #: At most this many (meter, customer) pairs are recomputed per run (a sample when more).
    rollup_pairs_max: int = 500
    #: Payments succeeded this recently may still sit in the clearing account (Stripe pays
    #: out on a rolling schedule).
    clearing_in_flight_days: int = 10
    #: Provider comparison: invoices finalized this many days before the run.
    provider_window_days: int = 62
    #: A finalized invoice may wait this long for its collection (the outbox delivers it).
    collection_grace_hours: int = 2


@dataclass(slots=True)
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    #: What was examined, for the run's record ("how much is checked").
    scope: dict[str, Any] = field(default_factory=dict)

    def add(self, finding: Finding) -> None:
        if len(self.findings) < FINDINGS_PER_KIND_MAX:
            self.findings.append(finding)
        else:
            self.scope["capped"] = True
