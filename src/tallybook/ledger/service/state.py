"""What a batch reads before it decides: accounts with their balances, and the transfers its
operations act on (the holds being posted or voided, the transfers being reversed).

Loading follows the lock order of :mod:`tallybook.ledger.repository`: targets first, then
normal accounts' balance rows. The idempotency lookup, when there is one, runs after both, so
two requests with the same id and the same accounts meet on the locks and the second sees the
first's outcome (on PostgreSQL the write statement's guard does the same; see
:mod:`tallybook.ledger.repository_pg`).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Row

from tallybook.db import Tx
from tallybook.ledger import repository, repository_pg
from tallybook.ledger.domain import LIMITS, Limits
from tallybook.ledger.plans import REVERSIBLE_KINDS, Target, TargetEntry
from tallybook.ledger.values import Direction, Phase, TransferKind

__all__ = [
    "AccountState",
    "Fixed",
    "Target",
    "TargetEntry",
    "account_states",
    "fixed_attributes",
    "load_accounts",
    "load_targets",
    "normal_ids",
]

#: What the transfer path needs from an account row never changes (currency, owner, shard
#: count; limits and ``closed`` live on the balance row it locks), so a process remembers it and
#: locks the balance rows by primary key alone.
ACCOUNT_CACHE_SIZE_MAX: Final = 100_000


@dataclass(slots=True)
class AccountState:
    """An account as one batch sees it. ``values`` is the locked balance of a normal account
    (``BALANCE_FIELDS`` order) and moves as the batch applies transfers; sharded accounts have
    ``values`` None and collect per-shard increments in ``deltas`` instead."""

    id: str
    currency: str
    owner_id: str | None
    closed: bool
    shards: int
    limits: Limits
    values: list[int] | None
    changed: bool = False
    deltas: dict[int, list[int]] = field(default_factory=dict)
    #: A normal account read without its row lock: the values read. The batch then writes
    #: increments, and the room its limits need: how far, at most, the batch's transfers
    #: took the room below where it started (debit room: credits − debits − pending debits;
    #: credit room: the mirror).
    start: list[int] | None = None
    debit_room_needed: int = 0
    credit_room_needed: int = 0

    def note_room(self) -> None:
        """After the batch moved ``values`` (read unlocked): what room that took."""
        start, values = self.start, self.values
        assert start is not None and values is not None
        posted_debits = values[0] - start[0]
        posted_credits = values[1] - start[1]
        debit_drop = posted_debits + values[2] - start[2] - posted_credits
        credit_drop = posted_credits + values[3] - start[3] - posted_debits
        if debit_drop > self.debit_room_needed:
            self.debit_room_needed = debit_drop
        if credit_drop > self.credit_room_needed:
            self.credit_room_needed = credit_drop

    def shard_for(self, transfer_id: str) -> int:
        """A hot account's transfers spread over its shards by a stable hash of their id."""
        if self.shards == 1:
            return 0
        return zlib.crc32(transfer_id.encode()) % self.shards


@dataclass(frozen=True, slots=True)
class Fixed:
    """An account's attributes that never change."""

    currency: str
    owner_id: str | None
    shards: int


_fixed: dict[str, Fixed] = {}
_fixed_lock = threading.Lock()


def _remember(rows: Sequence[Row[Any]]) -> None:
    with _fixed_lock:
        if len(_fixed) + len(rows) > ACCOUNT_CACHE_SIZE_MAX:
            _fixed.clear()
        for row in rows:
            _fixed[row.id] = Fixed(row.currency, row.owner_id, row.balance_shards)


def fixed_attributes(tx: Tx, account_ids: Iterable[str]) -> dict[str, Fixed]:
    """The never-changing attributes of the accounts that exist among ``account_ids`` (from
    the process cache; unknown ids are looked up once)."""
    ids = set(account_ids)
    unknown = [account_id for account_id in ids if account_id not in _fixed]
    if unknown:
        _remember(repository.accounts(tx, sorted(unknown)))
    return {account_id: _fixed[account_id] for account_id in ids if account_id in _fixed}


def normal_ids(fixed: Mapping[str, Fixed]) -> list[str]:
    """The accounts whose one balance row a batch locks (not the sharded ones), in lock order."""
    return sorted(account_id for account_id, f in fixed.items() if f.shards == 1)


def account_states(
    locked: Iterable[Sequence[Any]], fixed: Mapping[str, Fixed], *, unlocked: bool = False
) -> dict[str, AccountState]:
    """What a batch decides with: the locked balance rows of normal accounts (as the lock
    statement returns them; with ``unlocked``, as read without the locks) and the sharded
    accounts, which take no lock."""
    states: dict[str, AccountState] = {}
    # Rows by position (both repositories select the same columns in the same order): a
    # batch reads hundreds of them.
    for account_id, closed, debit_limit, credit_limit, *values in locked:
        f = fixed[account_id]
        states[account_id] = AccountState(
            id=account_id,
            currency=f.currency,
            owner_id=f.owner_id,
            closed=bool(closed),
            shards=1,
            limits=LIMITS[(bool(debit_limit), bool(credit_limit))],
            values=values,
            start=values.copy() if unlocked else None,
        )
    for account_id, f in fixed.items():
        if f.shards > 1:
            states[account_id] = AccountState(
                id=account_id,
                currency=f.currency,
                owner_id=f.owner_id,
                closed=False,
                shards=f.shards,
                limits=LIMITS[(False, False)],
                values=None,
            )
    return states


def load_accounts(
    tx: Tx, account_ids: Iterable[str], transfer_ids: Sequence[str], *, lookup: bool
) -> tuple[dict[str, AccountState], dict[str, repository.Stored]]:
    """Lock normal accounts' balance rows (by id) and note sharded ones (no lock); then, with
    ``lookup``, find what the ledger already holds under ``transfer_ids``. Unknown account ids
    are simply absent."""
    fixed = fixed_attributes(tx, account_ids)
    normal = normal_ids(fixed)
    stored: dict[str, repository.Stored] = {}
    if tx.is_postgres:
        locked = repository_pg.send_lock(tx, normal).rows()
        if lookup:
            stored = repository_pg.stored_outcomes(tx, transfer_ids)
    else:
        locked = repository.lock_balance_rows(tx, normal)
        if lookup:
            stored = repository.stored_outcomes(tx, transfer_ids)
    return account_states(locked, fixed), stored


def load_targets(tx: Tx, transfer_ids: Iterable[str]) -> dict[str, Target]:
    """Lock and read the transfers being acted on, with their legs and current state."""
    ids = sorted(set(transfer_ids))
    if not ids:
        return {}
    targets = {
        row.id: Target(
            id=row.id,
            kind=TransferKind(row.kind),
            reason_code=row.reason_code,
            expires_at=row.expires_at,
            entries=[],
        )
        for row in repository.lock_transfers(tx, ids)
    }
    if not targets:
        return targets
    for row in repository.entries_of(tx, list(targets)):
        targets[row.transfer_id].entries.append(
            TargetEntry(
                account_id=row.account_id,
                direction=Direction(row.direction),
                phase=Phase(row.phase),
                amount_minor=row.amount_minor,
                currency=row.currency,
                shard=row.shard,
            )
        )
    holds = [t.id for t in targets.values() if t.kind is TransferKind.PENDING]
    if holds:
        open_ids = repository.open_hold_ids(tx, holds)
        closed = [hold_id for hold_id in holds if hold_id not in open_ids]
        resolved = repository.resolutions(tx, closed)
        for hold_id in holds:
            targets[hold_id].open = hold_id in open_ids
            if hold_id in resolved:
                targets[hold_id].resolution = TransferKind(resolved[hold_id][1])
    reversible = [t.id for t in targets.values() if t.kind in REVERSIBLE_KINDS]
    if reversible:
        for row in repository.reversal_totals(tx, reversible):
            # A reversal's legs are the original's, mirrored: map them back.
            original_direction = Direction(row.direction).opposite
            key = (row.account_id, str(original_direction))
            targets[row.reverses_id].reversed[key] = int(row.amount_minor)
    return targets
