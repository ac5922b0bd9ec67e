"""Step 3 of a batch (see :mod:`.engine`): each operation decided in order, in memory.

Idempotency first, then the rest of the ladder (:mod:`tallybook.ledger.plans` for what a hold's
resolution or a reversal writes), then the balances: limits count pending debits, and a
transfer either applies to every balance it touches or to none. Transfer 5 may fail while 6
succeeds; in a linked batch the first failure undoes the others. What a decision writes is
collected as rows (:class:`Writes`); the created transfers themselves are built later, by the
engine, while the write is on its way.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tallybook.db import Tx
from tallybook.ledger.domain import (
    Refusal,
    balance_refusal,
    compare_content,
    stored_request,
)
from tallybook.ledger.plans import (
    REVERSIBLE_KINDS,
    Plan,
    PlannedEntry,
    Target,
    TargetEntry,
    plan_operation,
    target_id,
)
from tallybook.ledger.rejections import Rejection
from tallybook.ledger.service.state import AccountState
from tallybook.ledger.values import (
    Direction,
    LedgerOp,
    Phase,
    TransferKind,
    TransferRequest,
    TransferResult,
    TransferStatus,
)


@dataclass(slots=True)
class Earlier:
    """An outcome already stored under an id (in the database or earlier in this batch)."""

    request: dict[str, Any]
    code: str | None
    message: str | None
    param: str | None
    #: Created earlier in this batch (not stored before it): undone with a failed linked batch.
    here: bool = False


@dataclass(slots=True)
class Writes:
    """Rows to write, as tuples in the order of ``repository.TRANSFER_ROW``, ``ENTRY_ROW``,
    ``FAILURE_ROW`` and ``HOLD_ROW``; what the whole batch shares (now, actor, batch id) is
    passed once, and an ``effective_at`` of now is None."""

    transfers: list[tuple[Any, ...]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    failures: list[tuple[Any, ...]] = field(default_factory=list)
    holds_opened: list[tuple[str, datetime | None]] = field(default_factory=list)
    holds_closed: list[str] = field(default_factory=list)


class Decisions:
    """What a batch decides with (accounts and targets as read under lock, what the ledger
    already holds under its ids) and the decisions. :class:`~.engine._Batch` reads, writes
    and runs the steps around it."""

    tx: Tx
    ops: Sequence[LedgerOp]
    linked: bool
    now: datetime
    batch_id: str | None
    results: list[TransferResult | None]
    writes: Writes
    earlier: dict[str, Earlier]
    targets: dict[str, Target]
    accounts: dict[str, AccountState]
    #: Transfers decided as created, by id: (their operation, its plan).
    created: dict[str, tuple[LedgerOp, Plan]]
    # From step 1 (see ``_Batch._validate``).
    id_refusals: list[Refusal | None]
    static: list[Refusal | None]
    contents: list[dict[str, Any]]
    referenced: set[str]
    shard_key: str

    def _has_failure(self) -> bool:
        return any(
            result is not None and result.status is TransferStatus.FAILED for result in self.results
        )

    def _has_refusal(self) -> bool:
        return any(
            result is not None
            and result.status is TransferStatus.FAILED
            and not result.recorded_failure
            for result in self.results
        )

    def _decide_all(self) -> None:
        if self.linked:
            self._decide_linked()
        else:
            decide, results = self._decide, self.results
            for index in range(len(self.ops)):
                results[index] = decide(index)

    def _decide_linked(self) -> None:
        snapshot = (copy.deepcopy(self.accounts), copy.deepcopy(self.targets))
        for index in range(len(self.ops)):
            result = self._decide(index)
            self.results[index] = result
            if result.status is TransferStatus.FAILED:
                self._unlink(index, snapshot)
                return

    def _unlink(
        self, failed: int, snapshot: tuple[dict[str, AccountState], dict[str, Target]]
    ) -> None:
        """Undo a linked batch after member ``failed`` failed: nothing else is applied."""
        self.accounts, self.targets = snapshot
        kept_failure = [row for row in self.writes.failures if row[0] == self.ops[failed].id]
        self.writes = Writes(failures=kept_failure)
        self.created = {}
        for index, op in enumerate(self.ops):
            result = self.results[index]
            if index == failed:
                continue
            if result is not None and result.status is TransferStatus.EXISTS:
                # Stored before this batch: it stays. A copy of a member undone here does not.
                if not self.earlier[op.id].here:
                    continue
            self.results[index] = TransferResult(
                id=op.id,
                status=TransferStatus.FAILED,
                code=Rejection.LINKED_EVENT_FAILED,
                message=f"not applied: linked transfer {self.ops[failed].id} failed",
            )

    def _decide(self, index: int) -> TransferResult:
        op = self.ops[index]
        refusal = self.id_refusals[index]
        if refusal is not None:
            return _failed(op.id, refusal)
        earlier = self.earlier.get(op.id)
        if earlier is not None:
            return _repeat(op.id, earlier, self.contents[index])
        refusal = self.static[index]
        if refusal is not None:
            return _failed(op.id, refusal)
        target = None if type(op) is TransferRequest else target_id(op)
        planned = plan_operation(op, None if target is None else self.targets.get(target), self.now)
        if isinstance(planned, Refusal):
            return _failed(op.id, planned)
        refusal = self._account_refusal(planned)
        if refusal is None:
            refusal = self._apply(planned)
        if refusal is not None:
            if refusal.code.transient:
                self._record_failure(op, index, refusal)
            return _failed(op.id, refusal)
        self._record_created(op, index, planned)
        # The transfer itself is attached by _build (after the write is sent).
        return TransferResult(op.id, TransferStatus.CREATED)

    def _account_refusal(self, plan: Plan) -> Refusal | None:
        """Accounts must exist, hold the leg's currency, and be open: one rung at a time."""
        entries = plan.entries
        accounts = self.accounts
        for entry in entries:
            account = accounts.get(entry.account_id)
            if account is None or entry.currency != account.currency or account.closed:
                break
        else:
            return None  # the common case: every rung passes
        for entry in entries:
            if entry.account_id not in self.accounts:
                param = _leg_param(entry, "account_id")
                return Refusal(Rejection.ACCOUNT_NOT_FOUND, f"no account {entry.account_id}", param)
        for entry in entries:
            account = self.accounts[entry.account_id]
            if entry.currency != account.currency:
                return Refusal(
                    Rejection.CURRENCY_MISMATCH,
                    f"{account.id} holds {account.currency}, not {entry.currency}",
                    _leg_param(entry, "currency"),
                )
        if plan.moves_money:
            for entry in entries:
                if self.accounts[entry.account_id].closed:
                    return Refusal(
                        Rejection.ACCOUNT_CLOSED,
                        f"{entry.account_id} is closed",
                        _leg_param(entry, "account_id"),
                    )
        return None

    def _apply(self, plan: Plan) -> Refusal | None:
        """Apply to the balances if every limit holds; otherwise change nothing."""
        accounts = self.accounts
        proposed: dict[str, list[int]] = {}
        for entry in plan.entries:
            account = accounts[entry.account_id]
            values = account.values
            if values is None:  # a hot account: no balance to check
                if entry.shard is None:
                    entry.shard = account.shard_for(self.shard_key)
                continue
            entry.shard = 0
            changed = proposed.get(account.id)
            if changed is None:
                changed = proposed[account.id] = values.copy()
            changed[_field(entry)] += entry.amount_minor
        for entry in plan.entries:
            changed = proposed.get(entry.account_id)
            if changed is not None:
                account = accounts[entry.account_id]
                refusal = balance_refusal(changed, account.limits, _leg_param(entry, "account_id"))
                if refusal is not None:
                    return refusal
        # The point of no return: from here the transfer is applied.
        for account_id, values in proposed.items():
            account = accounts[account_id]
            account.values = values
            account.changed = True
            if account.start is not None:
                account.note_room()
        for entry in plan.entries:
            account = accounts[entry.account_id]
            if account.values is None:
                assert entry.shard is not None
                delta = account.deltas.get(entry.shard)
                if delta is None:
                    delta = account.deltas[entry.shard] = [0, 0, 0, 0]
                delta[_field(entry)] += entry.amount_minor
        return None

    def _record_created(self, op: LedgerOp, index: int, plan: Plan) -> None:
        transfer_id, content = op.id, self.contents[index]
        # An effective_at of now travels as None (the repositories fill it in).
        effective_at = None if plan.effective_at == self.now else plan.effective_at
        self.writes.transfers.append(
            (
                transfer_id,
                plan.kind,
                plan.reason_code,
                plan.metadata,
                effective_at,
                plan.pending_id,
                plan.reverses_id,
                plan.expires_at,
                stored_request(content),
            )
        )
        entry_rows = self.writes.entries
        for planned in plan.entries:
            entry_rows.append(
                (
                    transfer_id,
                    planned.account_id,
                    planned.shard,
                    planned.currency,
                    planned.direction,
                    planned.phase,
                    planned.amount_minor,
                    effective_at,
                )
            )
        if plan.kind is not TransferKind.STANDARD or transfer_id in self.referenced:
            self._track(op, plan)
        self.created[transfer_id] = (op, plan)
        self.earlier[transfer_id] = Earlier(content, None, None, None, here=True)

    def _track(self, op: LedgerOp, plan: Plan) -> None:
        """Keep targets current so later operations in this batch see this one."""
        if plan.pending_id is not None:
            hold = self.targets[plan.pending_id]
            hold.open = False
            hold.resolution = plan.kind
            if hold.created_here:
                self.writes.holds_opened = [
                    row for row in self.writes.holds_opened if row[0] != hold.id
                ]
            else:
                self.writes.holds_closed.append(hold.id)
        if plan.reverses_id is not None:
            original = self.targets[plan.reverses_id]
            for entry in plan.entries:
                key = (entry.account_id, str(Direction(entry.direction).opposite))
                original.reversed[key] = original.reversed.get(key, 0) + entry.amount_minor
        if plan.kind is TransferKind.PENDING:
            self.writes.holds_opened.append((op.id, plan.expires_at))
        # Only a transfer that a later operation of this batch acts on needs to be a target.
        if op.id in self.referenced and (
            plan.kind is TransferKind.PENDING or plan.kind in REVERSIBLE_KINDS
        ):
            self.targets[op.id] = Target(
                id=op.id,
                kind=plan.kind,
                reason_code=plan.reason_code,
                expires_at=plan.expires_at,
                entries=[
                    TargetEntry(
                        e.account_id, e.direction, e.phase, e.amount_minor, e.currency, e.shard or 0
                    )
                    for e in plan.entries
                ],
                open=plan.kind is TransferKind.PENDING,
                created_here=True,
            )

    def _record_failure(self, op: LedgerOp, index: int, refusal: Refusal) -> None:
        self.writes.failures.append(
            (
                op.id,
                str(op.kind),
                str(refusal.code),
                refusal.message[:500],
                refusal.param,
                stored_request(self.contents[index]),
            )
        )
        self.earlier[op.id] = Earlier(
            self.contents[index], refusal.code, refusal.message, refusal.param
        )


def _field(entry: PlannedEntry) -> int:
    """The balance column an entry moves (``BALANCE_FIELDS`` order), by identity: hashing an
    enum pair per entry shows in a batch's profile."""
    return (entry.direction is Direction.CREDIT) + 2 * (entry.phase is Phase.PENDING)


def _leg_param(entry: PlannedEntry, name: str) -> str | None:
    return None if entry.leg_index is None else f"legs[{entry.leg_index}].{name}"


def _failed(transfer_id: str, refusal: Refusal) -> TransferResult:
    return TransferResult(
        id=transfer_id,
        status=TransferStatus.FAILED,
        code=refusal.code,
        message=refusal.message,
        param=refusal.param,
    )


def _repeat(transfer_id: str, earlier: Earlier, content: dict[str, Any]) -> TransferResult:
    """The id was used before: the same content gets the same outcome, else a named conflict."""
    difference = compare_content(earlier.request, content)
    if difference is not None:
        return _failed(transfer_id, difference)
    if earlier.code is None:
        # The transfer is attached later: by _build when it is this batch's, else by _finish.
        return TransferResult(id=transfer_id, status=TransferStatus.EXISTS)
    return TransferResult(
        id=transfer_id,
        status=TransferStatus.FAILED,
        code=Rejection(earlier.code),
        message=earlier.message,
        param=earlier.param,
        replayed=True,
    )
