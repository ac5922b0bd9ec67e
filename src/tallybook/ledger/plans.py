"""From an operation to the entries it would write (pure).

A hold's post, void and expiry, and a reversal, are new transfers whose entries derive from the
transfer they act on (as in TigerBeetle): nothing already written is ever changed.

- **post**: release every pending leg (a negative pending entry) and post the amount on the same
  legs; a partial post of a two-leg hold posts less and the rest is simply released.
- **void / expire**: release every pending leg.
- **reversal**: the posted legs mirrored, for what is not reversed yet (or part of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from tallybook.kit.invariant import invariant
from tallybook.ledger.domain import Refusal, two_leg_amount
from tallybook.ledger.rejections import Rejection
from tallybook.ledger.values import (
    HOLD_STATUS_BY_RESOLUTION,
    RESOLUTIONS,
    Direction,
    ExpirePending,
    LedgerOp,
    Phase,
    PostPending,
    ReverseTransfer,
    TransferKind,
    TransferRequest,
    VoidPending,
)

REVERSIBLE_KINDS: Final = frozenset({TransferKind.STANDARD, TransferKind.POST_PENDING})


@dataclass(slots=True)
class TargetEntry:
    account_id: str
    direction: Direction
    phase: Phase
    amount_minor: int
    currency: str
    shard: int


@dataclass(slots=True)
class Target:
    """A transfer that an operation acts on, kept current while a batch applies: a hold's
    ``open`` flag and ``resolution``, a transfer's ``reversed`` amounts per leg."""

    id: str
    kind: TransferKind
    reason_code: str
    expires_at: datetime | None
    entries: list[TargetEntry]
    open: bool = False
    resolution: TransferKind | None = None
    #: (account_id, direction of the original leg) → amount already reversed.
    reversed: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Created by the current batch (its open-hold row is not in the database yet).
    created_here: bool = False

    def legs(self, phase: Phase) -> list[TargetEntry]:
        return [entry for entry in self.entries if entry.phase is phase]

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(slots=True)
class PlannedEntry:
    account_id: str
    direction: Direction
    phase: Phase
    amount_minor: int
    currency: str
    #: The balance shard; None until applied (then chosen from the transfer id).
    shard: int | None
    #: The request leg this entry comes from, to name it in errors (None when derived).
    leg_index: int | None = None


@dataclass(slots=True)
class Plan:
    kind: TransferKind
    entries: list[PlannedEntry]
    reason_code: str
    metadata: dict[str, str]
    effective_at: datetime
    pending_id: str | None = None
    reverses_id: str | None = None
    expires_at: datetime | None = None
    #: Releasing a hold moves no money, so a void or an expiry is allowed on a closed account.
    moves_money: bool = True


def plan_operation(op: LedgerOp, target: Target | None, now: datetime) -> Plan | Refusal:
    if isinstance(op, TransferRequest):
        return _plan_transfer(op, now)
    if isinstance(op, ReverseTransfer):
        return _plan_reversal(op, target, now)
    return _plan_resolution(op, target, now)


#: Legs name their direction as a string or a Direction; a dict lookup is cheaper than
#: ``Direction(value)``.
_DIRECTIONS: Final[dict[str, Direction]] = {str(d): d for d in Direction}


def _plan_transfer(op: TransferRequest, now: datetime) -> Plan:
    phase = Phase.PENDING if op.pending else Phase.POSTED
    entries = [
        PlannedEntry(
            leg.account_id,
            _DIRECTIONS[leg.direction],
            phase,
            leg.amount_minor,
            leg.currency.upper(),
            None,
            index,
        )
        for index, leg in enumerate(op.legs)
    ]
    expires_at = None
    if op.pending and op.timeout_seconds is not None:
        expires_at = now + timedelta(seconds=op.timeout_seconds)
    return Plan(
        kind=op.kind,
        entries=entries,
        reason_code=op.reason_code,
        metadata=dict(op.metadata or {}),
        effective_at=op.effective_at or now,
        expires_at=expires_at,
    )


def _plan_resolution(
    op: PostPending | VoidPending | ExpirePending, hold: Target | None, now: datetime
) -> Plan | Refusal:
    if hold is None:
        return Refusal(Rejection.PENDING_TRANSFER_NOT_FOUND, "no such hold", "pending_id")
    if hold.kind is not TransferKind.PENDING:
        return Refusal(
            Rejection.PENDING_TRANSFER_NOT_PENDING,
            f"{hold.id} is a {hold.kind} transfer, not a hold",
            "pending_id",
        )
    if not hold.open:
        invariant(hold.resolution is not None, f"hold {hold.id} is neither open nor resolved")
        assert hold.resolution is not None
        code = RESOLUTIONS[hold.resolution]
        status = HOLD_STATUS_BY_RESOLUTION[hold.resolution]
        return Refusal(code, f"hold {hold.id} was {status} already", "pending_id")
    if isinstance(op, PostPending) and hold.expired(now):
        return Refusal(
            Rejection.PENDING_TRANSFER_EXPIRED,
            f"{hold.id} timed out; it can't be posted",
            "pending_id",
        )
    if isinstance(op, ExpirePending) and not hold.expired(now):
        return Refusal(
            Rejection.PENDING_TRANSFER_NOT_EXPIRED, f"{hold.id} has not timed out", "pending_id"
        )
    pending = hold.legs(Phase.PENDING)
    posted_amount: int | None = None
    if isinstance(op, PostPending) and op.amount_minor is not None:
        held = two_leg_amount([(e.account_id, e.direction, e.amount_minor) for e in pending])
        if held is None:
            return Refusal(
                Rejection.PENDING_AMOUNT_NEEDS_TWO_LEGS,
                "a partial amount can only be posted on a one-debit, one-credit hold",
                "amount_minor",
            )
        if op.amount_minor > held:
            return Refusal(
                Rejection.PENDING_AMOUNT_EXCEEDED,
                f"amount_minor {op.amount_minor} is more than the {held} held",
                "amount_minor",
            )
        posted_amount = op.amount_minor
    entries = [
        PlannedEntry(e.account_id, e.direction, Phase.PENDING, -e.amount_minor, e.currency, e.shard)
        for e in pending
    ]
    if isinstance(op, PostPending):
        entries.extend(
            PlannedEntry(
                e.account_id,
                e.direction,
                Phase.POSTED,
                posted_amount if posted_amount is not None else e.amount_minor,
                e.currency,
                e.shard,
            )
            for e in pending
        )
    reason_code = hold.reason_code
    metadata: dict[str, str] = {}
    if not isinstance(op, ExpirePending):
        reason_code = op.reason_code or hold.reason_code
        metadata = dict(op.metadata or {})
    return Plan(
        kind=op.kind,
        entries=entries,
        reason_code=reason_code,
        metadata=metadata,
        effective_at=now,
        pending_id=hold.id,
        moves_money=isinstance(op, PostPending),
    )


def _plan_reversal(op: ReverseTransfer, original: Target | None, now: datetime) -> Plan | Refusal:
    if original is None:
        return Refusal(Rejection.TRANSFER_NOT_FOUND, "no such transfer", "transfer_id")
    if original.kind not in REVERSIBLE_KINDS:
        return Refusal(
            Rejection.TRANSFER_NOT_REVERSIBLE,
            f"a {original.kind} transfer can't be reversed (void a hold instead)",
            "transfer_id",
        )
    posted = original.legs(Phase.POSTED)
    remaining = [
        (e, e.amount_minor - original.reversed.get((e.account_id, str(e.direction)), 0))
        for e in posted
    ]
    if all(amount == 0 for _, amount in remaining):
        return Refusal(
            Rejection.TRANSFER_ALREADY_REVERSED, f"{original.id} is fully reversed", "transfer_id"
        )
    if op.amount_minor is not None:
        if two_leg_amount([(e.account_id, e.direction, e.amount_minor) for e in posted]) is None:
            return Refusal(
                Rejection.REVERSAL_AMOUNT_NEEDS_TWO_LEGS,
                "a partial reversal needs a one-debit, one-credit transfer",
                "amount_minor",
            )
        left = remaining[0][1]
        if op.amount_minor > left:
            return Refusal(
                Rejection.REVERSAL_AMOUNT_EXCEEDED,
                f"amount_minor {op.amount_minor} is more than the {left} not yet reversed",
                "amount_minor",
            )
        remaining = [(e, op.amount_minor) for e, _ in remaining]
    entries = [
        PlannedEntry(e.account_id, e.direction.opposite, Phase.POSTED, amount, e.currency, None)
        for e, amount in remaining
        if amount > 0
    ]
    return Plan(
        kind=TransferKind.REVERSAL,
        entries=entries,
        reason_code=op.reason_code,
        metadata=dict(op.metadata or {}),
        effective_at=op.effective_at or now,
        reverses_id=original.id,
    )


def target_id(op: LedgerOp) -> str | None:
    """The transfer an operation acts on, if any."""
    if isinstance(op, TransferRequest):
        return None
    if isinstance(op, ReverseTransfer):
        return op.transfer_id
    return op.pending_id
