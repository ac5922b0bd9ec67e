"""Every way a ledger request can be refused, by name.

:class:`Rejection` lists the transfer outcomes other than success, **ordered by descending
precedence** (as TigerBeetle orders ``CreateTransferStatus``): when a request is wrong in
several ways, the earliest code in this list is the one reported. The idempotency check comes
right after the id's format, so a retry of a stored transfer always answers ``exists`` (or names
the field that differs) before anything about the current state is looked at.

Each code has a :class:`Kind`:

- ``input``: the request itself is wrong (400). Nothing is written.
- ``state``: the ledger's state forbids it and always will (409). Nothing is written.
- ``transient``: the ledger's state forbids it *now* (not enough balance). The failure is
  stored under the transfer id (409), so retrying the same id returns the same failure and a
  later top-up can never turn it into a success; use a new id to try again.
- ``idempotency``: the id was used before with different content (409). Nothing is written.

`AccountCode` and `LedgerCode` are raised as exceptions by the account and query
services.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from tallybook.kit.errors import Conflict, IdempotencyError, InvalidRequest, TallybookError


class Kind(StrEnum):
    INPUT = "input"
    STATE = "state"
    TRANSIENT = "transient"
    IDEMPOTENCY = "idempotency"


class Rejection(StrEnum):
    """Transfer outcomes other than ``created`` and ``exists``, by descending precedence."""

    TRANSFER_ID_INVALID = "transfer_id_invalid"
    # Idempotency, compared in this order (the kind first: it decides what the other fields mean).
    EXISTS_WITH_DIFFERENT_KIND = "exists_with_different_kind"
    EXISTS_WITH_DIFFERENT_PENDING_ID = "exists_with_different_pending_id"
    EXISTS_WITH_DIFFERENT_REVERSES_ID = "exists_with_different_reverses_id"
    EXISTS_WITH_DIFFERENT_LEGS = "exists_with_different_legs"
    EXISTS_WITH_DIFFERENT_AMOUNT_MINOR = "exists_with_different_amount_minor"
    EXISTS_WITH_DIFFERENT_REASON_CODE = "exists_with_different_reason_code"
    EXISTS_WITH_DIFFERENT_EFFECTIVE_AT = "exists_with_different_effective_at"
    EXISTS_WITH_DIFFERENT_TIMEOUT_SECONDS = "exists_with_different_timeout_seconds"
    EXISTS_WITH_DIFFERENT_METADATA = "exists_with_different_metadata"
    # The request's own shape.
    LEGS_COUNT_INVALID = "legs_count_invalid"
    ACCOUNT_ID_INVALID = "account_id_invalid"
    DIRECTION_INVALID = "direction_invalid"
    AMOUNT_INVALID = "amount_invalid"
    AMOUNT_NOT_POSITIVE = "amount_not_positive"
    AMOUNT_TOO_LARGE = "amount_too_large"
    CURRENCY_INVALID = "currency_invalid"
    LEGS_DUPLICATE_ACCOUNT = "legs_duplicate_account"
    LEGS_UNBALANCED = "legs_unbalanced"
    REASON_CODE_INVALID = "reason_code_invalid"
    METADATA_INVALID = "metadata_invalid"
    EFFECTIVE_AT_INVALID = "effective_at_invalid"
    EFFECTIVE_AT_IN_FUTURE = "effective_at_in_future"
    TIMEOUT_INVALID = "timeout_invalid"
    # Holds: post, void, expire.
    PENDING_ID_INVALID = "pending_id_invalid"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_ALREADY_EXPIRED = "pending_transfer_already_expired"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    PENDING_TRANSFER_NOT_EXPIRED = "pending_transfer_not_expired"
    PENDING_AMOUNT_NEEDS_TWO_LEGS = "pending_amount_needs_two_legs"
    PENDING_AMOUNT_EXCEEDED = "pending_amount_exceeded"
    # Reversals.
    TRANSFER_NOT_FOUND = "transfer_not_found"
    TRANSFER_NOT_REVERSIBLE = "transfer_not_reversible"
    TRANSFER_ALREADY_REVERSED = "transfer_already_reversed"
    REVERSAL_AMOUNT_NEEDS_TWO_LEGS = "reversal_amount_needs_two_legs"
    REVERSAL_AMOUNT_EXCEEDED = "reversal_amount_exceeded"
    # Accounts named by the legs.
    ACCOUNT_NOT_FOUND = "account_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    ACCOUNT_CLOSED = "account_closed"
    # Balances: the point of no return comes after these.
    BALANCE_OVERFLOW = "balance_overflow"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"
    # A member of a linked batch failed, so this one was not applied either.
    LINKED_EVENT_FAILED = "linked_event_failed"

    @property
    def kind(self) -> Kind:
        return _KINDS[self]

    @property
    def transient(self) -> bool:
        """Whether the failure depends on balances that may change, and is stored under the id."""
        return _KINDS[self] is Kind.TRANSIENT

    def error(self, message: str, *, param: str | None = None) -> TallybookError:
        """The exception an edge raises (or replies with) for this outcome."""
        kind = _KINDS[self]
        if kind is Kind.INPUT:
            return InvalidRequest(self, message, param=param)
        if kind is Kind.IDEMPOTENCY:
            return IdempotencyError(self, message, param=param)
        return Conflict(self, message, param=param)


_STATE: Final = frozenset(
    {
        Rejection.PENDING_TRANSFER_ALREADY_POSTED,
        Rejection.PENDING_TRANSFER_ALREADY_VOIDED,
        Rejection.PENDING_TRANSFER_ALREADY_EXPIRED,
        Rejection.PENDING_TRANSFER_EXPIRED,
        Rejection.PENDING_TRANSFER_NOT_EXPIRED,
        Rejection.TRANSFER_ALREADY_REVERSED,
        Rejection.ACCOUNT_CLOSED,
        Rejection.LINKED_EVENT_FAILED,
    }
)
_TRANSIENT: Final = frozenset(
    {Rejection.BALANCE_OVERFLOW, Rejection.EXCEEDS_CREDITS, Rejection.EXCEEDS_DEBITS}
)


def _kind_of(code: Rejection) -> Kind:
    if code.value.startswith("exists_with_different_"):
        return Kind.IDEMPOTENCY
    if code in _TRANSIENT:
        return Kind.TRANSIENT
    if code in _STATE:
        return Kind.STATE
    return Kind.INPUT


_KINDS: Final[dict[Rejection, Kind]] = {code: _kind_of(code) for code in Rejection}

#: The rank of each code; lower ranks win when a request is wrong in several ways.
PRECEDENCE: Final[dict[Rejection, int]] = {code: rank for rank, code in enumerate(Rejection)}

#: The idempotency codes by the request field they name.
EXISTS_WITH_DIFFERENT: Final[dict[str, Rejection]] = {
    code.value.removeprefix("exists_with_different_"): code
    for code in Rejection
    if code.value.startswith("exists_with_different_")
}


class AccountCode(StrEnum):
    """Refusals of account operations (raised as exceptions)."""

    CODE_INVALID = "account_code_invalid"
    KIND_INVALID = "account_kind_invalid"
    OWNER_INVALID = "account_owner_invalid"
    OWNER_NOT_FOUND = "account_owner_not_found"
    REFERENCE_INVALID = "account_reference_invalid"
    LIMITS_EXCLUSIVE = "account_limits_exclusive"
    SHARDS_INVALID = "account_shards_invalid"
    SHARDED_WITH_LIMITS = "account_sharded_with_limits"
    EXISTS_WITH_DIFFERENT_KIND = "account_exists_with_different_kind"
    EXISTS_WITH_DIFFERENT_LIMITS = "account_exists_with_different_limits"
    EXISTS_WITH_DIFFERENT_BALANCE_SHARDS = "account_exists_with_different_balance_shards"
    HAS_PENDING = "account_has_pending"
    SHARDED_CANNOT_CLOSE = "account_sharded_cannot_close"


class LedgerCode(StrEnum):
    """Other refusals the ledger raises as exceptions."""

    TRANSFER_ID_IN_USE = "transfer_id_in_use"
    BATCH_SIZE_INVALID = "batch_size_invalid"
    AS_OF_IN_FUTURE = "as_of_in_future"
    KNOWN_AT_INVALID = "known_at_invalid"
