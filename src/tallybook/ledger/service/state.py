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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Row

from tallybook.db import Tx
from tallybook.ledger import repository, repository_pg
from tallybook.ledger.domain import Limits
from tallybook.ledger.plans import REVERSIBLE_KINDS, Target, TargetEntry
from tallybook.ledger.values import Direction, Phase, TransferKind

__all__ = ["AccountState", "Target", "TargetEntry", "load_accounts", "load_targets"]

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

    def shard_for(self, transfer_id: str) -> int:
        """A hot account's transfers spread over its shards by a stable hash of their id."""
        if self.shards == 1:
            return 0
        return zlib.crc32(transfer_id.encode()) % self.shards


@dataclass(frozen=True, slots=True)
class _Fixed:
    """An account's attributes that never change."""

    currency: str
    owner_id: str | None
    shards: int


_fixed: dict[str, _Fixed] = {}
_fixed_lock = threading.Lock()


def _remember(rows: Sequence[Row[Any]]) -> None:
    with _fixed_lock:
        if len(_fixed) + len(rows) > ACCOUNT_CACHE_SIZE_MAX:
            _fixed.clear()
        for row in rows:
            _fixed[row.id] = _Fixed(row.currency, row.owner_id, row.balance_shards)


def load_accounts(
    tx: Tx, account_ids: Iterable[str], transfer_ids: Sequence[str], *, lookup: bool
) -> tuple[dict[str, AccountState], dict[str, repository.Stored]]:
    """Lock normal accounts' balance rows (by id) and note sharded ones (no lock); then, with
    ``lookup``, find what the ledger already holds under ``transfer_ids``. Unknown account ids
    are simply absent."""
    ids = sorted(set(account_ids))
    unknown = [account_id for account_id in ids if account_id not in _fixed]
    if unknown:
        _remember(repository.accounts(tx, unknown))
    fixed = {account_id: _fixed[account_id] for account_id in ids if account_id in _fixed}
    normal = [account_id for account_id, f in fixed.items() if f.shards == 1]
    stored: dict[str, repository.Stored] = {}
    if tx.is_postgres:
        locked = repository_pg.lock_balance_rows(tx, normal)
        if lookup:
            stored = repository_pg.stored_outcomes(tx, transfer_ids)
    else:
        locked = repository.lock_balance_rows(tx, normal)
        if lookup:
            stored = repository.stored_outcomes(tx, transfer_ids)
    states: dict[str, AccountState] = {}
    for row in locked:
        f = fixed[row.account_id]
        states[row.account_id] = AccountState(
            id=row.account_id,
            currency=f.currency,
            owner_id=f.owner_id,
            closed=bool(row.closed),
            shards=1,
            limits=Limits(row.debits_must_not_exceed_credits, row.credits_must_not_exceed_debits),
            values=[row.debits_posted, row.credits_posted, row.debits_pending, row.credits_pending],
        )
    for account_id, f in fixed.items():
        if f.shards > 1:
            states[account_id] = AccountState(
                id=account_id,
                currency=f.currency,
                owner_id=f.owner_id,
                closed=False,
                shards=f.shards,
                limits=Limits(),
                values=None,
            )
    return states, stored


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
