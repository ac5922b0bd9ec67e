"""The ledger's vocabulary: enums, the requests other domains send, and what they get back.

Everything here is immutable and free of I/O. Amounts are integer minor units; a leg names its
currency explicitly so a caller that thinks it is moving USD into a EUR account is told so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final

from tallybook.kit.errors import TallybookError
from tallybook.kit.invariant import invariant
from tallybook.kit.money import Money
from tallybook.ledger.rejections import Rejection

#: Legs per transfer; enough for a split payment with fees and taxes, small enough to reason about.
LEGS_MAX: Final = 16
#: Transfers per batch (a linked batch included).
BATCH_TRANSFERS_MAX: Final = 1000
#: The longest a hold can stay open.
TIMEOUT_SECONDS_MAX: Final = 366 * 24 * 3600
#: How many shards a hot account's balance may be split into.
BALANCE_SHARDS_MAX: Final = 64


class AccountKind(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    REVENUE = "revenue"
    EXPENSE = "expense"
    EQUITY = "equity"

    @property
    def normal_side(self) -> Direction:
        """The side on which the account grows: assets and expenses are debit-normal."""
        if self in (AccountKind.ASSET, AccountKind.EXPENSE):
            return Direction.DEBIT
        return Direction.CREDIT


class OwnerType(StrEnum):
    CUSTOMER = "customer"
    SYSTEM = "system"


class Direction(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"

    @property
    def opposite(self) -> Direction:
        return Direction.CREDIT if self is Direction.DEBIT else Direction.DEBIT


class Phase(StrEnum):
    POSTED = "posted"
    PENDING = "pending"


class TransferKind(StrEnum):
    STANDARD = "standard"
    PENDING = "pending"
    POST_PENDING = "post_pending"
    VOID_PENDING = "void_pending"
    EXPIRE_PENDING = "expire_pending"
    REVERSAL = "reversal"


#: The kinds that resolve a hold, and what a hold is once resolved by each.
RESOLUTIONS: Final = {
    TransferKind.POST_PENDING: Rejection.PENDING_TRANSFER_ALREADY_POSTED,
    TransferKind.VOID_PENDING: Rejection.PENDING_TRANSFER_ALREADY_VOIDED,
    TransferKind.EXPIRE_PENDING: Rejection.PENDING_TRANSFER_ALREADY_EXPIRED,
}


class HoldStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


HOLD_STATUS_BY_RESOLUTION: Final = {
    TransferKind.POST_PENDING: HoldStatus.POSTED,
    TransferKind.VOID_PENDING: HoldStatus.VOIDED,
    TransferKind.EXPIRE_PENDING: HoldStatus.EXPIRED,
}


class TransferStatus(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    FAILED = "failed"


# Requests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a transfer: ``amount_minor`` of ``currency`` debited or credited."""

    account_id: str
    direction: Direction | str
    amount_minor: int
    currency: str

    @classmethod
    def debit(cls, account_id: str, amount: Money) -> Leg:
        return cls(account_id, Direction.DEBIT, amount.amount_minor, amount.currency)

    @classmethod
    def credit(cls, account_id: str, amount: Money) -> Leg:
        return cls(account_id, Direction.CREDIT, amount.amount_minor, amount.currency)


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """Move money now (``pending=False``) or hold it (``pending=True``) until posted or voided.

    ``id`` is chosen by the caller and is the idempotency key: derive it from what causes the
    transfer (``grant:grt_…:issue``, ``invoice:in_…:finalize``) and persist it before sending.
    """

    id: str
    legs: Sequence[Leg]
    reason_code: str
    metadata: Mapping[str, str] | None = None
    #: When the money moved in the books; defaults to now. May be in the past, never the future.
    effective_at: datetime | None = None
    pending: bool = False
    #: Holds only: seconds until the hold expires; None keeps it open until posted or voided.
    timeout_seconds: int | None = None

    @property
    def kind(self) -> TransferKind:
        return TransferKind.PENDING if self.pending else TransferKind.STANDARD


@dataclass(frozen=True, slots=True)
class PostPending:
    """Post a hold: all of it, or ``amount_minor`` of a two-leg hold (the rest is released)."""

    id: str
    pending_id: str
    amount_minor: int | None = None
    #: Defaults to the hold's reason code.
    reason_code: str | None = None
    metadata: Mapping[str, str] | None = None

    kind: TransferKind = field(default=TransferKind.POST_PENDING, init=False)


@dataclass(frozen=True, slots=True)
class VoidPending:
    """Release a hold without moving any money."""

    id: str
    pending_id: str
    reason_code: str | None = None
    metadata: Mapping[str, str] | None = None

    kind: TransferKind = field(default=TransferKind.VOID_PENDING, init=False)


@dataclass(frozen=True, slots=True)
class ExpirePending:
    """Release a hold whose timeout has passed (written by the ``ledger.expire_holds`` job)."""

    id: str
    pending_id: str

    kind: TransferKind = field(default=TransferKind.EXPIRE_PENDING, init=False)


@dataclass(frozen=True, slots=True)
class ReverseTransfer:
    """Post the mirror of a posted transfer, linked to it: all that is not yet reversed, or
    ``amount_minor`` of a two-leg transfer (partial refunds). The reversals of one transfer
    never add up to more than the transfer."""

    id: str
    transfer_id: str
    reason_code: str
    amount_minor: int | None = None
    metadata: Mapping[str, str] | None = None
    effective_at: datetime | None = None

    kind: TransferKind = field(default=TransferKind.REVERSAL, init=False)


LedgerOp = TransferRequest | PostPending | VoidPending | ExpirePending | ReverseTransfer


def expiry_transfer_id(pending_id: str) -> str:
    """The id of the transfer that expires a hold. ``~`` is outside the client alphabet, so a
    client can never take it; deriving it from the hold makes expiry idempotent."""
    return f"~expire:{pending_id}"


# What callers get back --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    code: str
    currency: str
    kind: AccountKind
    owner_type: OwnerType
    owner_id: str | None
    reference: str
    metadata: Mapping[str, str]
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    balance_shards: int
    closed_at: datetime | None
    created_at: datetime

    @property
    def is_sharded(self) -> bool:
        return self.balance_shards > 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One change to one balance: ``amount_minor`` on ``direction`` in ``phase``. Pending
    entries are negative when a hold is posted, voided or expired (the hold is released)."""

    transfer_id: str
    account_id: str
    direction: Direction
    phase: Phase
    amount_minor: int
    currency: str
    effective_at: datetime
    created_at: datetime
    shard: int = 0
    id: int | None = None

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    kind: TransferKind
    reason_code: str
    metadata: Mapping[str, str]
    effective_at: datetime
    created_at: datetime
    entries: tuple[Entry, ...]
    pending_id: str | None = None
    reverses_id: str | None = None
    expires_at: datetime | None = None
    batch_id: str | None = None
    actor: str = "system"
    #: Holds only (filled by ``get_transfer`` and on creation): open, posted, voided, expired.
    hold_status: HoldStatus | None = None
    #: The transfer that posted, voided or expired this hold.
    resolved_by_id: str | None = None
    #: Reversals of this transfer, oldest first.
    reversed_by_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TransferResult:
    """The outcome of one request. ``created`` and ``exists`` carry the transfer; ``failed``
    carries the code. State failures are results, never exceptions: a caller decides."""

    id: str
    status: TransferStatus
    transfer: Transfer | None = None
    code: Rejection | None = None
    message: str | None = None
    param: str | None = None
    #: A transient failure recorded by an earlier request with this id, returned again.
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not TransferStatus.FAILED

    @property
    def recorded_failure(self) -> bool:
        """Whether this failure is stored under the id (and must commit)."""
        return self.code is not None and self.code.transient

    def error(self) -> TallybookError:
        invariant(self.code is not None, "error() on a successful transfer result")
        assert self.code is not None
        return self.code.error(self.message or str(self.code), param=self.param)

    def raise_for_error(self) -> Transfer:
        """Return the transfer, or raise the outcome's error (for callers that want one)."""
        if self.status is TransferStatus.FAILED:
            raise self.error()
        invariant(self.transfer is not None, "a successful result carries its transfer")
        assert self.transfer is not None
        return self.transfer


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's balance now or as of an instant. ``posted`` and ``pending`` are net on the
    account's normal side (credits minus debits for a liability such as a credit wallet);
    ``available`` is posted minus holds going out: what a limited account can still spend."""

    account_id: str
    currency: str
    kind: AccountKind
    as_of: datetime | None
    debits_posted: Money
    credits_posted: Money
    debits_pending: Money
    credits_pending: Money

    def _net(self, debits: Money, credits: Money) -> Money:
        return debits - credits if self.kind.normal_side is Direction.DEBIT else credits - debits

    @property
    def posted(self) -> Money:
        return self._net(self.debits_posted, self.credits_posted)

    @property
    def pending(self) -> Money:
        return self._net(self.debits_pending, self.credits_pending)

    @property
    def available(self) -> Money:
        if self.kind.normal_side is Direction.DEBIT:
            return self.debits_posted - self.credits_posted - self.credits_pending
        return self.credits_posted - self.debits_posted - self.debits_pending


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """What :func:`open_account` gets or creates. The identity is (code, currency, owner,
    reference): opening the same spec twice returns the same account.

    Limits in TigerBeetle's spirit: ``debits_must_not_exceed_credits`` keeps a credit wallet
    from going negative (holds count against it); ``credits_must_not_exceed_debits`` is the
    mirror. ``balance_shards`` > 1 spreads a hot, unlimited system account over several
    balance rows so concurrent writers don't queue on one.
    """

    code: str
    currency: str
    kind: AccountKind | str
    #: The owning customer; None for a system account.
    customer_id: str | None = None
    reference: str = ""
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    balance_shards: int = 1
    metadata: Mapping[str, str] | None = None

    @classmethod
    def customer_credit(
        cls, customer_id: str, currency: str, *, reference: str = ""
    ) -> AccountSpec:
        """A prepaid or promotional credit wallet: a liability that can't go negative."""
        return cls(
            code="customer_credit",
            currency=currency,
            kind=AccountKind.LIABILITY,
            customer_id=customer_id,
            reference=reference,
            debits_must_not_exceed_credits=True,
        )

    @classmethod
    def system(
        cls, code: str, currency: str, kind: AccountKind | str, *, balance_shards: int = 1
    ) -> AccountSpec:
        return cls(code=code, currency=currency, kind=kind, balance_shards=balance_shards)
