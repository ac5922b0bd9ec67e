"""Pure rules of the payments domain: collection statuses, the retry schedule, ordering of
provider states, and how a payment splits between the receivable and the customer balance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from tallybook.payments.providers.base import (
    REFUND_RANK,
    STATE_RANK,
    PaymentState,
    RefundState,
)


class CollectionStatus(StrEnum):
    """The collection of one invoice.

    ``collecting`` (an attempt is under way) → ``paid``, or → ``retrying`` (an attempt failed;
    ``next_attempt_at`` says when the next one runs) → … → ``exhausted`` (every retry failed; a
    manual retry or payment may still come). ``awaiting_payment``: the manual provider waits for
    a bank transfer. ``uncollectible`` and ``voided`` end it without payment.
    """

    COLLECTING = "collecting"
    RETRYING = "retrying"
    AWAITING_PAYMENT = "awaiting_payment"
    EXHAUSTED = "exhausted"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOIDED = "voided"


CLOSED_STATUSES: Final = frozenset(
    {CollectionStatus.PAID, CollectionStatus.UNCOLLECTIBLE, CollectionStatus.VOIDED}
)
#: Statuses in which the customer is behind on this invoice (dunning is under way or over).
DELINQUENT_STATUSES: Final = frozenset({CollectionStatus.RETRYING, CollectionStatus.EXHAUSTED})


class Trigger(StrEnum):
    INITIAL = "initial"
    RETRY = "retry"
    MANUAL_RETRY = "manual_retry"
    MANUAL = "manual"
    EXTERNAL = "external"


#: Attempt triggers that use the collection's attempt counter.
ATTEMPT_TRIGGERS: Final = frozenset({Trigger.INITIAL, Trigger.RETRY, Trigger.MANUAL_RETRY})
#: States in which an attempt's outcome is not known yet.
UNRESOLVED_STATES: Final = frozenset(
    {PaymentState.PENDING, PaymentState.PROCESSING, PaymentState.REQUIRES_ACTION}
)
#: States the sync job polls: the provider owes us an answer. (One waiting for the customer's
#: authentication is left to its webhook and to the next retry, which cancels it.)
POLLED_STATES: Final = frozenset({PaymentState.PENDING, PaymentState.PROCESSING})
#: States in which we wait on the provider: no other attempt may start meanwhile. (An attempt
#: waiting for the customer to authenticate counts as failed for dunning: the next attempt
#: cancels it first.)
IN_FLIGHT_STATES: Final = frozenset({PaymentState.PENDING, PaymentState.PROCESSING})


def moves_forward(
    current: PaymentState,
    current_at: datetime | None,
    new: PaymentState,
    new_at: datetime | None,
) -> bool:
    """Whether a reported state may replace the stored one.

    The state's rank decides (a success is never undone; a failure can't undo a success); at
    equal rank the newer report wins (so failure details of a later decline replace older ones).
    """
    if STATE_RANK[new] != STATE_RANK[current]:
        return STATE_RANK[new] > STATE_RANK[current]
    if new_at is None or current_at is None:
        return new != current
    return new_at >= current_at and new != current


def refund_moves_forward(current: RefundState, new: RefundState) -> bool:
    return REFUND_RANK[new] > REFUND_RANK[current]


def next_retry_at(
    first_failed_at: datetime, retry_days: Sequence[int], retries_done: int
) -> datetime | None:
    """When the next automatic retry is due, or None when the schedule is used up. Days count
    from the first failure (Stripe's convention), so a late job run never stretches the
    schedule."""
    if retries_done >= len(retry_days):
        return None
    return first_failed_at + timedelta(days=retry_days[retries_done])


@dataclass(frozen=True, slots=True)
class PaymentSplit:
    """Where a received amount goes: the receivable (what the invoice still owes) and the
    customer's balance (anything beyond: an overpayment, or a payment of a closed invoice)."""

    receivable_minor: int
    balance_minor: int


def split_payment(amount_minor: int, amount_remaining_minor: int) -> PaymentSplit:
    to_receivable = max(0, min(amount_minor, amount_remaining_minor))
    return PaymentSplit(to_receivable, amount_minor - to_receivable)


@dataclass(frozen=True, slots=True)
class RefundSplit:
    """Where a refund is taken from: the customer's balance first (a credit note put the money
    there), then the receivable (a refund with no credit note reopens what was paid)."""

    balance_minor: int
    receivable_minor: int


def split_refund(amount_minor: int, balance_available_minor: int) -> RefundSplit:
    from_balance = max(0, min(amount_minor, balance_available_minor))
    return RefundSplit(from_balance, amount_minor - from_balance)


#: Dispute statuses (Stripe): inquiries (``warning_*``) withdraw no funds.
DISPUTE_OPEN_STATUSES: Final = frozenset(
    {"warning_needs_response", "warning_under_review", "needs_response", "under_review"}
)
DISPUTE_CLOSED_STATUSES: Final = frozenset({"won", "lost", "warning_closed", "prevented"})


def dispute_rank(status: str) -> int:
    if status in DISPUTE_CLOSED_STATUSES:
        return 2
    return 1


def dispute_outcome(status: str) -> str | None:
    if status == "lost":
        return "lost"
    if status in ("won", "warning_closed", "prevented"):
        return "won"
    return None


PAYOUT_RANK: Final = {"pending": 0, "in_transit": 1, "paid": 2, "failed": 3, "canceled": 3}
