"""Pure ledger rules: the validation ladder, idempotency comparison, balance arithmetic.

Nothing here does I/O. The service feeds these functions what it read under lock and writes
what they decide. Checks run in the order of :class:`~tallybook.ledger.rejections.Rejection`
(descending precedence), so the same bad request always gets the same code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from tallybook.kit.assets import is_unit_asset
from tallybook.kit.clock import isoformat_z
from tallybook.kit.errors import TallybookError
from tallybook.kit.metadata import validate_metadata
from tallybook.kit.money import AMOUNT_MINOR_MAX, CURRENCY_EXPONENTS
from tallybook.ledger.rejections import EXISTS_WITH_DIFFERENT, Rejection
from tallybook.ledger.values import (
    LEGS_MAX,
    TIMEOUT_SECONDS_MAX,
    Direction,
    ExpirePending,
    LedgerOp,
    Leg,
    Phase,
    PostPending,
    ReverseTransfer,
    TransferRequest,
    VoidPending,
)

#: Client-chosen transfer ids: 1–64 characters of a URL- and log-safe alphabet.
TRANSFER_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_\-.:]{1,64}$")
#: System-made ids (hold expiry) start with ``~``, which clients cannot use.
SYSTEM_TRANSFER_ID_PATTERN: Final = re.compile(r"^~[a-z]+:[A-Za-z0-9_\-.:]{1,64}$")
ACCOUNT_ID_PATTERN: Final = re.compile(r"^acc_[0-9A-HJKMNP-TV-Z]{26}$")
#: Reason codes say why money moved (``usage_burn``, ``grant.issue``, ``refund``).
REASON_CODE_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_.\-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Refusal:
    code: Rejection
    message: str
    param: str | None = None


# Idempotency ------------------------------------------------------------------------------


def _text(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _amount(value: Any) -> Any:
    # bools are ints in Python; keep them distinguishable so `True` never equals `1` here.
    return repr(value) if isinstance(value, bool) else value


def _legs_content(legs: Sequence[Leg]) -> list[list[Any]]:
    return [
        [leg.account_id, str(leg.direction), _amount(leg.amount_minor), _text(leg.currency)]
        for leg in legs
    ]


def _time(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return isoformat_z(value)
    return None if value is None else repr(value)


def request_content(op: LedgerOp) -> dict[str, Any]:
    """The request as sent, in canonical JSON-ready form: what a retry must match.

    Every field is present (None when it does not apply) and defaults are *not* filled in, so a
    retry that again omits ``effective_at`` matches although "now" has moved on.
    """
    content: dict[str, Any] = dict.fromkeys(EXISTS_WITH_DIFFERENT)
    content["kind"] = str(op.kind)
    if isinstance(op, TransferRequest):
        content["legs"] = _legs_content(op.legs)
        content["effective_at"] = _time(op.effective_at)
        content["timeout_seconds"] = _amount(op.timeout_seconds)
    elif isinstance(op, PostPending | VoidPending | ExpirePending):
        content["pending_id"] = op.pending_id
        if isinstance(op, PostPending):
            content["amount_minor"] = _amount(op.amount_minor)
    else:
        content["reverses_id"] = op.transfer_id
        content["amount_minor"] = _amount(op.amount_minor)
        content["effective_at"] = _time(op.effective_at)
    if not isinstance(op, ExpirePending):
        content["reason_code"] = op.reason_code
        content["metadata"] = dict(op.metadata) if op.metadata is not None else None
    return content


def stored_request(content: Mapping[str, Any]) -> dict[str, Any]:
    """What is stored of a request's content: the fields that apply (``None`` ones left out,
    which :func:`compare_content` reads back as ``None``). About a third less to write."""
    return {name: value for name, value in content.items() if value is not None}


def compare_content(stored: Mapping[str, Any], sent: Mapping[str, Any]) -> Refusal | None:
    """None when ``sent`` matches ``stored``; otherwise the first differing field, by precedence."""
    for field_name, code in EXISTS_WITH_DIFFERENT.items():
        before, after = stored.get(field_name), sent.get(field_name)
        if before == after:
            continue
        param = field_name
        if field_name == "legs" and isinstance(before, list) and isinstance(after, list):
            param = _first_leg_difference(before, after)
        return Refusal(code, f"a transfer with this id exists; its {field_name} differs", param)
    return None


def _first_leg_difference(before: list[Any], after: list[Any]) -> str:
    if len(before) != len(after):
        return "legs"
    names = ("account_id", "direction", "amount_minor", "currency")
    for index, (old, new) in enumerate(zip(before, after, strict=True)):
        for position, name in enumerate(names):
            if old[position] != new[position]:
                return f"legs[{index}].{name}"
    return "legs"


# The static rungs of the ladder (no state needed) -----------------------------------------


def check_transfer_id(transfer_id: object, *, system: bool = False) -> Refusal | None:
    pattern = SYSTEM_TRANSFER_ID_PATTERN if system else TRANSFER_ID_PATTERN
    if isinstance(transfer_id, str) and pattern.match(transfer_id):
        return None
    return Refusal(
        Rejection.TRANSFER_ID_INVALID,
        "id must be 1-64 characters of letters, digits and _-.:",
        "id",
    )


def check_amount(amount: object, param: str) -> Refusal | None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        return Refusal(
            Rejection.AMOUNT_INVALID, f"{param} must be an integer of minor units", param
        )
    if amount <= 0:
        return Refusal(Rejection.AMOUNT_NOT_POSITIVE, f"{param} must be greater than zero", param)
    if amount > AMOUNT_MINOR_MAX:
        return Refusal(
            Rejection.AMOUNT_TOO_LARGE, f"{param} must be at most {AMOUNT_MINOR_MAX}", param
        )
    return None


def _legs_plainly_valid(legs: Sequence[Leg]) -> bool:
    """One pass that accepts only legs every per-leg rung accepts (the common case). Anything
    else goes through :func:`_leg_refusal`, which finds the earliest rung that fails."""
    seen: set[str] = set()
    for leg in legs:
        account_id, amount, currency = leg.account_id, leg.amount_minor, leg.currency
        if (
            type(account_id) is not str
            or account_id in seen
            or ACCOUNT_ID_PATTERN.match(account_id) is None
            or (leg.direction != "debit" and leg.direction != "credit")
            or type(amount) is not int
            or not 0 < amount <= AMOUNT_MINOR_MAX
            or type(currency) is not str
            or not _known_currency(currency)
        ):
            return False
        seen.add(account_id)
    return True


def _known_currency(currency: str) -> bool:
    upper = currency.upper()
    return upper in CURRENCY_EXPONENTS or is_unit_asset(upper)


def _leg_refusal(legs: Sequence[Leg]) -> Refusal | None:
    """Per-leg checks, one rung at a time across all legs (precedence beats position)."""
    if _legs_plainly_valid(legs):
        return None
    for index, leg in enumerate(legs):
        if not isinstance(leg.account_id, str) or not ACCOUNT_ID_PATTERN.match(leg.account_id):
            param = f"legs[{index}].account_id"
            return Refusal(Rejection.ACCOUNT_ID_INVALID, f"{param} is not an account id", param)
    for index, leg in enumerate(legs):
        if leg.direction not in ("debit", "credit"):
            param = f"legs[{index}].direction"
            return Refusal(Rejection.DIRECTION_INVALID, f"{param} must be debit or credit", param)
    for index, leg in enumerate(legs):
        refusal = check_amount(leg.amount_minor, f"legs[{index}].amount_minor")
        if refusal is not None:
            return refusal
    for index, leg in enumerate(legs):
        if not isinstance(leg.currency, str) or not (
            leg.currency.upper() in CURRENCY_EXPONENTS or is_unit_asset(leg.currency.upper())
        ):
            param = f"legs[{index}].currency"
            return Refusal(
                Rejection.CURRENCY_INVALID,
                f"{param} is neither an ISO 4217 currency nor a unit asset (U_<METER KEY>)",
                param,
            )
    seen: set[str] = set()
    for index, leg in enumerate(legs):
        if leg.account_id in seen:
            param = f"legs[{index}].account_id"
            return Refusal(
                Rejection.LEGS_DUPLICATE_ACCOUNT,
                f"{leg.account_id} appears in more than one leg; merge them",
                param,
            )
        seen.add(leg.account_id)
    return None


def unbalanced_currency(legs: Sequence[Leg]) -> str | None:
    """The first currency whose debits and credits differ, if any."""
    totals: dict[str, int] = {}
    for leg in legs:
        sign = 1 if leg.direction == "debit" else -1
        currency = leg.currency.upper()
        totals[currency] = totals.get(currency, 0) + sign * leg.amount_minor
    for currency, total in totals.items():
        if total != 0:
            return currency
    return None


def _common_refusal(
    reason_code: object, metadata: object, effective_at: object, now: datetime
) -> Refusal | None:
    if reason_code is not None and (
        not isinstance(reason_code, str) or not REASON_CODE_PATTERN.match(reason_code)
    ):
        return Refusal(
            Rejection.REASON_CODE_INVALID,
            "reason_code must be 1-64 characters: a lower-case letter, then a-z 0-9 _ . -",
            "reason_code",
        )
    try:
        validate_metadata(metadata)
    except TallybookError as error:
        return Refusal(Rejection.METADATA_INVALID, error.message, error.param)
    if effective_at is not None:
        if not isinstance(effective_at, datetime) or effective_at.tzinfo is None:
            return Refusal(
                Rejection.EFFECTIVE_AT_INVALID,
                "effective_at must be a datetime with a timezone",
                "effective_at",
            )
        if effective_at > now:
            return Refusal(
                Rejection.EFFECTIVE_AT_IN_FUTURE,
                "effective_at may be in the past but not in the future",
                "effective_at",
            )
    return None


def static_refusal(op: LedgerOp, now: datetime) -> Refusal | None:
    """Every check that needs no stored state, after the id and idempotency rungs, in the
    order of :class:`Rejection`."""
    if isinstance(op, TransferRequest):
        return _transfer_refusal(op, now)
    amount = getattr(op, "amount_minor", None)
    if amount is not None:
        refusal = check_amount(amount, "amount_minor")
        if refusal is not None:
            return refusal
    if isinstance(op, ReverseTransfer):
        if op.reason_code is None:
            return Refusal(Rejection.REASON_CODE_INVALID, "reason_code is required", "reason_code")
        refusal = _common_refusal(op.reason_code, op.metadata, op.effective_at, now)
        if refusal is not None:
            return refusal
        if not isinstance(op.transfer_id, str) or not TRANSFER_ID_PATTERN.match(op.transfer_id):
            return Refusal(Rejection.TRANSFER_NOT_FOUND, "no transfer with that id", "transfer_id")
        return None
    if not isinstance(op, ExpirePending):
        refusal = _common_refusal(op.reason_code, op.metadata, None, now)
        if refusal is not None:
            return refusal
    if not isinstance(op.pending_id, str) or not TRANSFER_ID_PATTERN.match(op.pending_id):
        return Refusal(
            Rejection.PENDING_ID_INVALID, "pending_id is not a transfer id", "pending_id"
        )
    return None


def _transfer_refusal(op: TransferRequest, now: datetime) -> Refusal | None:
    legs = op.legs
    # list and tuple first: an isinstance check against the Sequence ABC is slow.
    if (
        not (type(legs) is list or type(legs) is tuple or isinstance(legs, Sequence))
        or not 2 <= len(legs) <= LEGS_MAX
    ):
        return Refusal(Rejection.LEGS_COUNT_INVALID, f"a transfer has 2 to {LEGS_MAX} legs", "legs")
    refusal = _leg_refusal(legs)
    if refusal is not None:
        return refusal
    currency = unbalanced_currency(legs)
    if currency is not None:
        return Refusal(
            Rejection.LEGS_UNBALANCED,
            f"the {currency} legs do not sum to zero (debits must equal credits per currency)",
            "legs",
        )
    if op.reason_code is None:
        return Refusal(Rejection.REASON_CODE_INVALID, "reason_code is required", "reason_code")
    refusal = _common_refusal(op.reason_code, op.metadata, op.effective_at, now)
    if refusal is not None:
        return refusal
    if op.timeout_seconds is not None:
        valid = (
            op.pending
            and isinstance(op.timeout_seconds, int)
            and not isinstance(op.timeout_seconds, bool)
            and 1 <= op.timeout_seconds <= TIMEOUT_SECONDS_MAX
        )
        if not valid:
            return Refusal(
                Rejection.TIMEOUT_INVALID,
                f"timeout_seconds is for holds only, 1 to {TIMEOUT_SECONDS_MAX}",
                "timeout_seconds",
            )
    return None


# Balance arithmetic -----------------------------------------------------------------------

BALANCE_FIELDS: Final = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")

#: Which balance column an entry moves.
FIELD_OF: Final[dict[tuple[str, str], int]] = {
    (Direction.DEBIT, Phase.POSTED): 0,
    (Direction.CREDIT, Phase.POSTED): 1,
    (Direction.DEBIT, Phase.PENDING): 2,
    (Direction.CREDIT, Phase.PENDING): 3,
}


@dataclass(frozen=True, slots=True)
class Limits:
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False


#: The four possible limits, shared (a batch reads hundreds of balance rows).
LIMITS: Final[dict[tuple[bool, bool], Limits]] = {
    (debit, credit): Limits(debit, credit) for debit in (False, True) for credit in (False, True)
}


def balance_refusal(values: Sequence[int], limits: Limits, param: str | None) -> Refusal | None:
    """Whether a balance (``BALANCE_FIELDS`` order) may be stored: in range and within limits.

    Pending debits count against a debits-must-not-exceed-credits limit (a hold reserves the
    money), exactly as TigerBeetle counts them.
    """
    debits_posted, credits_posted, debits_pending, credits_pending = values
    if (
        debits_posted > AMOUNT_MINOR_MAX
        or credits_posted > AMOUNT_MINOR_MAX
        or debits_pending > AMOUNT_MINOR_MAX
        or credits_pending > AMOUNT_MINOR_MAX
    ):
        return Refusal(
            Rejection.BALANCE_OVERFLOW, "the balance would exceed the storage limit", param
        )
    if limits.debits_must_not_exceed_credits and (debits_posted + debits_pending > credits_posted):
        return Refusal(
            Rejection.EXCEEDS_CREDITS,
            "debits (posted and pending) would exceed credits: not enough balance",
            param,
        )
    if limits.credits_must_not_exceed_debits and (credits_posted + credits_pending > debits_posted):
        return Refusal(
            Rejection.EXCEEDS_DEBITS,
            "credits (posted and pending) would exceed debits: over the account's limit",
            param,
        )
    return None


def two_leg_amount(legs: Sequence[tuple[str, str, int]]) -> int | None:
    """The amount of a one-debit, one-credit transfer, or None if it has other legs.

    ``legs`` are (account_id, direction, amount_minor).
    """
    if len(legs) != 2 or {legs[0][1], legs[1][1]} != {"debit", "credit"}:
        return None
    if legs[0][2] != legs[1][2]:
        return None
    return legs[0][2]
