"""The transfer engine: one batch of ledger operations, decided in order, written in bulk.

A batch goes through five steps, each one pass over the whole batch:

1. **Validate** what needs no state (the id, the legs, amounts, reason code, metadata, time).
2. **Lock and read**: the transfers acted on, then the normal accounts' balance rows (see
   :mod:`.state`), then what the ledger already holds under the batch's ids. On PostgreSQL
   that last lookup is skipped at first: most transfers are new (see step 4).
3. **Decide** each operation in order, in memory: idempotency first, then the rest of the
   ladder, then the balances (limits count pending debits). Transfer 5 may fail while 6
   succeeds; in a linked batch the first failure undoes the others.
4. **Write** transfers, entries, failures and balances in bulk: one statement per table on
   SQLite, one statement in all on PostgreSQL, guarded so that it writes nothing if one of the
   batch's ids turns out to be stored already; then the batch looks its ids up and is decided
   again (a retry answers ``exists``). A refusal also sends the batch to look first, because
   precedence puts idempotency before every other check.
5. Emit domain events for the notable outcomes (holds, reversals, failures).

Nothing here raises for a refused transfer: each gets a :class:`TransferResult`.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy.exc import IntegrityError

from tallybook.db import Tx
from tallybook.kit.errors import IdempotencyError
from tallybook.kit.ids import new_id
from tallybook.kit.invariant import invariant
from tallybook.ledger import repository, repository_pg
from tallybook.ledger.domain import (
    FIELD_OF,
    Refusal,
    balance_refusal,
    check_transfer_id,
    compare_content,
    request_content,
    static_refusal,
)
from tallybook.ledger.metrics import TRANSFERS
from tallybook.ledger.plans import (
    REVERSIBLE_KINDS,
    Plan,
    PlannedEntry,
    Target,
    TargetEntry,
    plan_operation,
    target_id,
)
from tallybook.ledger.rejections import LedgerCode, Rejection
from tallybook.ledger.service import events, queries
from tallybook.ledger.service.state import AccountState, load_accounts, load_targets
from tallybook.ledger.values import (
    BATCH_TRANSFERS_MAX,
    Direction,
    Entry,
    ExpirePending,
    HoldStatus,
    LedgerOp,
    Transfer,
    TransferKind,
    TransferRequest,
    TransferResult,
    TransferStatus,
)

log = logging.getLogger(__name__)

#: Unique constraints a concurrent request with the same id (or resolving the same hold) hits.
_RACE_CONSTRAINTS = frozenset(
    {"pk_ledger_transfers", "pk_ledger_transfer_failures", "uq_ledger_transfers_pending_id"}
)


@dataclass(slots=True)
class _Earlier:
    """An outcome already stored under an id (in the database or earlier in this batch)."""

    request: dict[str, Any]
    code: str | None
    message: str | None
    param: str | None
    transfer: Transfer | None = None


@dataclass(slots=True)
class _Writes:
    transfers: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    holds_opened: list[dict[str, Any]] = field(default_factory=list)
    holds_closed: list[str] = field(default_factory=list)


def execute(tx: Tx, ops: Sequence[LedgerOp], *, linked: bool = False) -> list[TransferResult]:
    invariant(len(ops) <= BATCH_TRANSFERS_MAX, "batch larger than BATCH_TRANSFERS_MAX")
    if not ops:
        return []
    return _Batch(tx, ops, linked).run()


class _Batch:
    def __init__(self, tx: Tx, ops: Sequence[LedgerOp], linked: bool) -> None:
        self.tx = tx
        self.ops = ops
        self.linked = linked
        self.now = tx.now()
        self.batch_id = new_id("lnk") if linked else None
        self.results: list[TransferResult | None] = [None] * len(ops)
        self.writes = _Writes()
        self.earlier: dict[str, _Earlier] = {}
        self.targets: dict[str, Target] = {}
        self.accounts: dict[str, AccountState] = {}

    # 1 ----------------------------------------------------------------------------------
    def run(self) -> list[TransferResult]:
        # Earlier ORM work in this unit of work (a customer just created) must be visible.
        self.tx.session.flush()
        ops = self.ops
        self.id_refusals = [
            check_transfer_id(op.id, system=isinstance(op, ExpirePending)) for op in ops
        ]
        self.static = [
            static_refusal(op, self.now) if refusal is None else None
            for op, refusal in zip(ops, self.id_refusals, strict=True)
        ]
        self.contents = [request_content(op) for op in ops]
        self.referenced = {acted_on for op in ops if (acted_on := target_id(op)) is not None}
        # On PostgreSQL the batch is decided without looking its ids up first (most transfers
        # are new). Two things send it back to look: a refusal (precedence puts idempotency
        # first, and a refusal writes nothing that would reveal a stored id), and a write that
        # finds one of its ids stored by then. Elsewhere the lookup comes first.
        optimistic = self.tx.is_postgres
        self._read(lookup=not optimistic)
        self._decide_all()
        if optimistic and self._has_refusal():
            self._look_and_decide_again()
        if not self._write():
            log.info(
                "a ledger batch found one of its ids stored meanwhile; deciding it again",
                extra={"transfers": len(ops)},
            )
            self._look_and_decide_again()
            if not self._write():
                raise IdempotencyError(
                    LedgerCode.TRANSFER_ID_IN_USE,
                    "concurrent requests keep using this batch's transfer ids; retry",
                )
        return self._finish()

    def _has_refusal(self) -> bool:
        return any(
            result is not None
            and result.status is TransferStatus.FAILED
            and not result.recorded_failure
            for result in self.results
        )

    def _look_and_decide_again(self) -> None:
        self.results = [None] * len(self.ops)
        self.writes = _Writes()
        self.earlier = {}
        self._read(lookup=True)
        self._decide_all()

    def _decide_all(self) -> None:
        if self.linked:
            self._decide_linked()
        else:
            for index in range(len(self.ops)):
                self.results[index] = self._decide(index)

    # 2 ----------------------------------------------------------------------------------
    def _read(self, *, lookup: bool) -> None:
        live = [
            op
            for op, id_refusal, refusal in zip(self.ops, self.id_refusals, self.static, strict=True)
            if id_refusal is None and refusal is None
        ]
        target_ids = {acted_on for op in live if (acted_on := target_id(op)) is not None}
        self.targets = load_targets(self.tx, target_ids)
        account_ids = {
            leg.account_id for op in live if isinstance(op, TransferRequest) for leg in op.legs
        }
        for loaded in self.targets.values():
            account_ids.update(entry.account_id for entry in loaded.entries)
        valid_ids = [
            op.id for op, refusal in zip(self.ops, self.id_refusals, strict=True) if refusal is None
        ]
        self.accounts, stored = load_accounts(
            self.tx, account_ids, sorted(set(valid_ids)), lookup=lookup
        )
        for outcome in stored.values():
            self.earlier[outcome.id] = _Earlier(
                outcome.request, outcome.code, outcome.message, outcome.param
            )

    # 3 ----------------------------------------------------------------------------------
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
        kept_failure = [row for row in self.writes.failures if row["id"] == self.ops[failed].id]
        self.writes = _Writes(failures=kept_failure)
        for index, op in enumerate(self.ops):
            result = self.results[index]
            if index == failed or (result is not None and result.status is TransferStatus.EXISTS):
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
        target = target_id(op)
        planned = plan_operation(op, None if target is None else self.targets.get(target), self.now)
        if isinstance(planned, Refusal):
            return _failed(op.id, planned)
        refusal = self._account_refusal(planned)
        if refusal is None:
            refusal = self._apply(op.id, planned)
        if refusal is not None:
            if refusal.code.transient:
                self._record_failure(op, index, refusal)
            return _failed(op.id, refusal)
        transfer = self._record_created(op, index, planned)
        return TransferResult(id=op.id, status=TransferStatus.CREATED, transfer=transfer)

    def _account_refusal(self, plan: Plan) -> Refusal | None:
        """Accounts must exist, hold the leg's currency, and be open: one rung at a time."""
        entries = plan.entries
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

    def _apply(self, transfer_id: str, plan: Plan) -> Refusal | None:
        """Apply to the balances if every limit holds; otherwise change nothing."""
        proposed: dict[str, list[int]] = {}
        for entry in plan.entries:
            account = self.accounts[entry.account_id]
            if account.values is None:
                entry.shard = (
                    entry.shard if entry.shard is not None else account.shard_for(transfer_id)
                )
                continue
            entry.shard = 0
            values = proposed.get(account.id)
            if values is None:
                values = proposed[account.id] = account.values.copy()
            values[FIELD_OF[(entry.direction, entry.phase)]] += entry.amount_minor
        for entry in plan.entries:
            values = proposed.get(entry.account_id)
            if values is not None:
                account = self.accounts[entry.account_id]
                param = _leg_param(entry, "account_id")
                refusal = balance_refusal(values, account.limits, param)
                if refusal is not None:
                    return refusal
        # The point of no return: from here the transfer is applied.
        for account_id, values in proposed.items():
            account = self.accounts[account_id]
            account.values = values
            account.changed = True
        for entry in plan.entries:
            account = self.accounts[entry.account_id]
            if account.values is None:
                assert entry.shard is not None
                delta = account.deltas.setdefault(entry.shard, [0, 0, 0, 0])
                delta[FIELD_OF[(entry.direction, entry.phase)]] += entry.amount_minor
        return None

    def _record_created(self, op: LedgerOp, index: int, plan: Plan) -> Transfer:
        now = self.now
        row = {
            "id": op.id,
            "kind": str(plan.kind),
            "reason_code": plan.reason_code,
            "metadata": plan.metadata,
            "effective_at": plan.effective_at,
            "created_at": now,
            "pending_id": plan.pending_id,
            "reverses_id": plan.reverses_id,
            "expires_at": plan.expires_at,
            "batch_id": self.batch_id,
            "request": self.contents[index],
            "actor": self.tx.actor,
        }
        self.writes.transfers.append(row)
        entries: list[Entry] = []
        for planned in plan.entries:
            assert planned.shard is not None
            currency = planned.currency
            self.writes.entries.append(
                {
                    "transfer_id": op.id,
                    "account_id": planned.account_id,
                    "shard": planned.shard,
                    "currency": currency,
                    "direction": str(planned.direction),
                    "phase": str(planned.phase),
                    "amount_minor": planned.amount_minor,
                    "effective_at": plan.effective_at,
                    "created_at": now,
                }
            )
            entries.append(
                Entry(
                    transfer_id=op.id,
                    account_id=planned.account_id,
                    direction=planned.direction,
                    phase=planned.phase,
                    amount_minor=planned.amount_minor,
                    currency=currency,
                    effective_at=plan.effective_at,
                    created_at=now,
                    shard=planned.shard,
                )
            )
        self._track(op, plan)
        transfer = Transfer(
            id=op.id,
            kind=plan.kind,
            reason_code=plan.reason_code,
            metadata=plan.metadata,
            effective_at=plan.effective_at,
            created_at=now,
            entries=tuple(entries),
            pending_id=plan.pending_id,
            reverses_id=plan.reverses_id,
            expires_at=plan.expires_at,
            batch_id=self.batch_id,
            actor=self.tx.actor,
            hold_status=HoldStatus.PENDING if plan.kind is TransferKind.PENDING else None,
        )
        self.earlier[op.id] = _Earlier(self.contents[index], None, None, None, transfer)
        return transfer

    def _track(self, op: LedgerOp, plan: Plan) -> None:
        """Keep targets current so later operations in this batch see this one."""
        if plan.pending_id is not None:
            hold = self.targets[plan.pending_id]
            hold.open = False
            hold.resolution = plan.kind
            if hold.created_here:
                self.writes.holds_opened = [
                    row for row in self.writes.holds_opened if row["transfer_id"] != hold.id
                ]
            else:
                self.writes.holds_closed.append(hold.id)
        if plan.reverses_id is not None:
            original = self.targets[plan.reverses_id]
            for entry in plan.entries:
                key = (entry.account_id, str(Direction(entry.direction).opposite))
                original.reversed[key] = original.reversed.get(key, 0) + entry.amount_minor
        if plan.kind is TransferKind.PENDING:
            self.writes.holds_opened.append({"transfer_id": op.id, "expires_at": plan.expires_at})
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
        row = {
            "id": op.id,
            "kind": str(op.kind),
            "code": str(refusal.code),
            "message": refusal.message[:500],
            "param": refusal.param,
            "request": self.contents[index],
            "batch_id": self.batch_id,
            "failed_at": self.now,
            "actor": self.tx.actor,
        }
        self.writes.failures.append(row)
        self.earlier[op.id] = _Earlier(
            self.contents[index], refusal.code, refusal.message, refusal.param
        )

    # 4 ----------------------------------------------------------------------------------
    def _write(self) -> bool:
        balances_set = [
            (account.id, 0, account.values)
            for account in sorted(self.accounts.values(), key=lambda a: a.id)
            if account.changed and account.values is not None
        ]
        balances_added = [
            (account.id, shard, delta)
            for account in self.accounts.values()
            for shard, delta in account.deltas.items()
        ]
        writes = self.writes
        write_journal = (
            repository_pg.write_journal if self.tx.is_postgres else repository.write_journal
        )
        try:
            return write_journal(
                self.tx,
                transfers=writes.transfers,
                entries=writes.entries,
                failures=writes.failures,
                balances_set=balances_set,
                balances_added=balances_added,
                holds_opened=writes.holds_opened,
                holds_closed=writes.holds_closed,
            )
        except (IntegrityError, psycopg.IntegrityError) as error:
            cause = error.orig if isinstance(error, IntegrityError) else error
            constraint = getattr(getattr(cause, "diag", None), "constraint_name", None)
            if constraint in _RACE_CONSTRAINTS:
                raise IdempotencyError(
                    LedgerCode.TRANSFER_ID_IN_USE,
                    "a concurrent request used the same transfer id or resolved the same hold; "
                    "retry to get its outcome",
                ) from error
            raise

    # 5 ----------------------------------------------------------------------------------
    def _finish(self) -> list[TransferResult]:
        results: list[TransferResult] = []
        missing = [
            r.id
            for r in self.results
            if r is not None and r.status is TransferStatus.EXISTS and r.transfer is None
        ]
        loaded = queries.transfers_by_id(self.tx, missing) if missing else {}
        counts: Counter[tuple[str, str]] = Counter()
        for op, result in zip(self.ops, self.results, strict=True):
            invariant(result is not None, "every operation in a batch gets a result")
            assert result is not None
            if result.status is TransferStatus.EXISTS and result.transfer is None:
                result = TransferResult(
                    id=result.id, status=result.status, transfer=loaded.get(result.id)
                )
            results.append(result)
            counts[(str(op.kind), str(result.status))] += 1
        for (kind, status), count in counts.items():
            TRANSFERS.labels(kind, status).inc(count)
        events.emit_outcomes(self.tx, self.ops, results, self.accounts)
        return results


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


def _repeat(transfer_id: str, earlier: _Earlier, content: dict[str, Any]) -> TransferResult:
    """The id was used before: the same content gets the same outcome, else a named conflict."""
    difference = compare_content(earlier.request, content)
    if difference is not None:
        return _failed(transfer_id, difference)
    if earlier.code is None:
        return TransferResult(
            id=transfer_id, status=TransferStatus.EXISTS, transfer=earlier.transfer
        )
    return TransferResult(
        id=transfer_id,
        status=TransferStatus.FAILED,
        code=Rejection(earlier.code),
        message=earlier.message,
        param=earlier.param,
        replayed=True,
    )
