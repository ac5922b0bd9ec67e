"""Pure subscription rules: the status state machine, and the shapes of change requests.

Statuses::

    trialing ──► active ──► past_due ──► unpaid
       │  │        ▲ │         │ │         │
       │  └► paused┘ │         │ └─► active◄┘
       ▼             ▼         ▼
     canceled ◄──────┴─────────┴──── (from any status but canceled)

- ``trialing`` → ``active`` when the trial converts, → ``canceled`` or ``paused`` when it
  ends without converting (``trial_end_behavior``).
- ``active`` ⇄ ``past_due`` and ``past_due`` → ``unpaid`` are driven by payments
  (``mark_past_due``, ``mark_active``, ``mark_unpaid``); periods keep renewing in both.
- ``paused`` (a trial that ended with ``trial_end_behavior=pause``) bills nothing until
  ``resume``, which starts a new period at once.
- ``canceled`` is terminal: any change to a canceled subscription is ``subscription_canceled``.

Moving to the status a subscription already has is a no-op, so payments can repeat a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from tallybook.catalog.domain import ChangePolicy
from tallybook.kit.errors import Conflict
from tallybook.subscriptions.errors import SubscriptionCode


class Status(StrEnum):
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    PAUSED = "paused"
    CANCELED = "canceled"


TRANSITIONS: Final[dict[Status, frozenset[Status]]] = {
    Status.TRIALING: frozenset({Status.ACTIVE, Status.PAUSED, Status.CANCELED}),
    Status.ACTIVE: frozenset({Status.PAST_DUE, Status.CANCELED}),
    Status.PAST_DUE: frozenset({Status.ACTIVE, Status.UNPAID, Status.CANCELED}),
    Status.UNPAID: frozenset({Status.ACTIVE, Status.CANCELED}),
    Status.PAUSED: frozenset({Status.ACTIVE, Status.CANCELED}),
    Status.CANCELED: frozenset(),
}

#: Statuses whose periods renew at each boundary (and whose fees are charged).
RENEWING: Final = frozenset({Status.ACTIVE, Status.PAST_DUE, Status.UNPAID})


def check_transition(current: Status, target: Status) -> bool:
    """Whether ``current`` → ``target`` changes anything; raise a named error if illegal."""
    if current == target:
        return False
    if current == Status.CANCELED:
        raise Conflict(
            SubscriptionCode.CANCELED, "the subscription is canceled", param="subscription"
        )
    if target not in TRANSITIONS[current]:
        raise Conflict(
            SubscriptionCode.TRANSITION_INVALID,
            f"a {current} subscription cannot become {target}",
            param="status",
        )
    return True


class ChangeKind(StrEnum):
    PLAN_CHANGE = "plan_change"
    CANCEL = "cancel"


class ChangeStatus(StrEnum):
    SCHEDULED = "scheduled"
    APPLIED = "applied"
    CANCELED = "canceled"


class CancelAt(StrEnum):
    PERIOD_END = "period_end"
    NOW = "now"


class ChangeSource(StrEnum):
    API = "api"
    MIGRATION = "migration"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class CreateRequest:
    customer: str
    plan_version_id: str | None = None
    plan: str | None = None
    billing_anchor: datetime | None = None
    #: An explicit trial end, or a length in days (0: no trial even if the plan has one);
    #: neither: the plan version's ``trial_period_days``.
    trial_end: datetime | None = None
    trial_period_days: int | None = None
    trial_end_behavior: str = "convert"
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    plan_version_id: str | None = None
    plan: str | None = None
    #: Overrides the plan version's policy for the change's direction.
    policy: ChangePolicy | None = None
    invoice_now: bool = False
    source: ChangeSource = ChangeSource.API


@dataclass(frozen=True, slots=True)
class CancelRequest:
    at: CancelAt = CancelAt.PERIOD_END
    #: Immediate cancellations: credit the unused prepaid part (None: the version's policy).
    credit_unused: bool | None = None
    invoice_now: bool = False
    reason: str | None = None
