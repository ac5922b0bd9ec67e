"""The transfer engine: one batch of ledger operations, decided in order, written in bulk.

A batch goes through five steps, each one pass over the whole batch:

1. **Validate** what needs no state (the id, the legs, amounts, reason code, metadata, time).
2. **Lock and read**: the transfers acted on, then the normal accounts' balance rows (see
   :mod:`.state`), then what the ledger already holds under the batch's ids. On PostgreSQL
   that last lookup is skipped at first: most transfers are new (see step 4); and a batch of
   plain transfers reads its balances first and locks them while it decides (see below).
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

A batch is one writer, so all of its new entries on a hot (sharded) account go to one shard
row, chosen from the batch's first id: concurrent batches spread over the shards, and a batch
increments one row per hot account instead of up to N (each of which every concurrent batch
would also have to lock). A single transfer's shard is chosen from its own id, as before.

This is the ledger's hot path, so its inner loops avoid what costs microseconds per transfer
in Python (enum construction, ABC isinstance checks, dicts per row): the rows to write are
tuples in the order of :data:`tallybook.ledger.repository.TRANSFER_ROW` and its siblings. On
PostgreSQL the statements are pipelined with the Python work around them, and the write goes
out before the results (transfers, entries) are built: the server executes while the client
computes.

**A batch of plain transfers decides before it holds its locks** (PostgreSQL; batches of at
least ``READ_FIRST_OPS_MIN``). Its accounts
are known from the legs, so it reads their balance rows without locking them while step 1
runs, then asks for the locks (in id order, as always) and decides on what it read while the
lock is taken, or waits behind another writer; the write queues behind the lock. The rows
stay locked for the write and the commit only: a batch that waited no longer holds every
other writer of its rows while it decides. What it read may be stale by the time it holds the
locks, so the write adds increments instead of setting balances, and writes only if, under
the locks, every account is still open and still has the room each of its limits needed at
the batch's deepest point (:meth:`.state.AccountState.note_room`); otherwise it writes nothing
and the batch decides again under the locks, as a batch whose id was stored meanwhile does. A
batch with any failure decides again under the locks too: a failure decided on stale balances
may not be the locked answer. Other batches (holds resolved, reversals) lock first, as before.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

import psycopg
from sqlalchemy.exc import IntegrityError

from tallybook.db import Tx
from tallybook.kit.errors import IdempotencyError
from tallybook.kit.ids import new_id
from tallybook.kit.invariant import invariant
from tallybook.ledger import repository, repository_pg
from tallybook.ledger.domain import (
    ACCOUNT_ID_PATTERN,
    Refusal,
    check_transfer_id,
    request_content,
    static_refusal,
)
from tallybook.ledger.metrics import TRANSFERS
from tallybook.ledger.plans import target_id
from tallybook.ledger.rejections import LedgerCode
from tallybook.ledger.service import events, queries, state
from tallybook.ledger.service.decisions import Decisions, Earlier, Writes
from tallybook.ledger.service.state import load_accounts, load_targets
from tallybook.ledger.values import (
    BATCH_TRANSFERS_MAX,
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

#: Batches of plain transfers this long or longer decide before they hold their locks (see the
#: module's docstring). Shorter ones decide in microseconds, so they lock first and save the
#: extra statement (single transfers ran 10–25 % slower with it).
READ_FIRST_OPS_MIN: Final = 16

#: Unique constraints a concurrent request with the same id (or resolving the same hold) hits.
_RACE_CONSTRAINTS = frozenset(
    {"pk_ledger_transfers", "pk_ledger_transfer_failures", "uq_ledger_transfers_pending_id"}
)


def execute(tx: Tx, ops: Sequence[LedgerOp], *, linked: bool = False) -> list[TransferResult]:
    invariant(len(ops) <= BATCH_TRANSFERS_MAX, "batch larger than BATCH_TRANSFERS_MAX")
    if not ops:
        return []
    return _Batch(tx, ops, linked).run()


class _Batch(Decisions):
    """One batch through the steps of the module's docstring (step 3 is :class:`Decisions`)."""

    def __init__(self, tx: Tx, ops: Sequence[LedgerOp], linked: bool) -> None:
        self.tx = tx
        self.ops = ops
        self.linked = linked
        self.now = tx.now()
        self.batch_id = new_id("lnk") if linked else None
        self.results = [None] * len(ops)
        self.writes = Writes()
        self.earlier = {}
        self.targets = {}
        self.accounts = {}
        # Their results are built by _build, after the write is on its way.
        self.created = {}
        self.is_postgres = tx.is_postgres

    # 1 ----------------------------------------------------------------------------------
    def run(self) -> list[TransferResult]:
        # Earlier ORM work in this unit of work (a customer just created) must be visible.
        self.tx.session.flush()
        if self.is_postgres:
            self._run_optimistic()
        else:
            self._validate()
            self._read(lookup=True)
            self._decide_all()
            self._write_now()
        return self._finish()

    def _validate(self) -> None:
        """Step 1, and what the later steps need from the requests alone."""
        ops, now = self.ops, self.now
        id_refusals: list[Refusal | None] = []
        static: list[Refusal | None] = []
        for op in ops:
            refusal = check_transfer_id(op.id, system=type(op) is ExpirePending)
            id_refusals.append(refusal)
            static.append(static_refusal(op, now) if refusal is None else None)
        self.id_refusals, self.static = id_refusals, static
        self.contents = [request_content(op) for op in ops]
        self.referenced = {acted_on for op in ops if (acted_on := target_id(op)) is not None}
        #: Where this batch's new entries on hot accounts go (see the module's docstring).
        self.shard_key = next(
            (op.id for op, refusal in zip(ops, id_refusals, strict=True) if refusal is None), ""
        )

    def _run_optimistic(self) -> None:
        """PostgreSQL: decide as if the batch's ids were new, write with a guard (see step 4).

        Two things send the batch back to look its ids up and decide again: a refusal
        (precedence puts idempotency first, and a refusal writes nothing that would reveal a
        stored id), and a guard that finds one of its ids stored by then.
        """
        plain = all(type(op) is TransferRequest for op in self.ops)
        read_first = plain and len(self.ops) >= READ_FIRST_OPS_MIN
        normal: list[str] = []
        if plain:
            # The accounts are known from the legs: read them while step 1 runs.
            fixed = state.fixed_attributes(self.tx, _leg_account_ids(self.ops))
            normal = state.normal_ids(fixed)
        else:
            self._validate()
            self._read(lookup=False)
        pending: repository_pg.PendingWrite | None = None
        locked: repository_pg.Pending | None = None
        try:
            with repository_pg.pipelined(self.tx):
                if plain and not read_first:
                    # The accounts to lock are known from the legs: lock them while step 1 runs.
                    lock = repository_pg.send_lock(self.tx, normal)
                    self._validate()
                    self.accounts = state.account_states(lock.rows(), fixed)
                    self.targets = {}
                elif plain:
                    # Read the balances (not locked), then ask for their locks: the client
                    # decides on what it read while the lock is taken (or waits for other
                    # writers), and the write queues behind the lock. The rows stay locked for
                    # the write and the commit, not while a waiting batch decides. (A result
                    # fetched in a pipeline waits for every statement sent before it, so the
                    # lock can only go out once the read is back.)
                    read = repository_pg.send_read(self.tx, normal)
                    self._validate()
                    self.accounts = state.account_states(read.rows(), fixed, unlocked=True)
                    self.targets = {}
                    locked = repository_pg.send_lock_only(self.tx, normal)
                self._decide_all()
                # Decided on balances read unlocked, a failure may not be the locked answer:
                # such a batch decides again under the locks (below).
                if not (self._has_failure() if read_first else self._has_refusal()):
                    pending = self._send_write()
                    self._build()
            if locked is not None:
                locked.rows()
            written = pending is not None and pending.succeeded()
        except psycopg.IntegrityError as error:
            raise _race_or(error) from error
        if pending is None:
            self._look_and_decide_again()
            written = self._write_now()
        if not written:
            log.info(
                "a ledger batch found one of its ids stored meanwhile; deciding it again",
                extra={"transfers": len(self.ops)},
            )
            self._look_and_decide_again()
            if not self._write_now():
                raise IdempotencyError(
                    LedgerCode.TRANSFER_ID_IN_USE,
                    "concurrent requests keep using this batch's transfer ids; retry",
                )

    def _look_and_decide_again(self) -> None:
        self.results = [None] * len(self.ops)
        self.writes = Writes()
        self.earlier = {}
        self.created = {}
        self._read(lookup=True)
        self._decide_all()

    # 2 ----------------------------------------------------------------------------------
    def _read(self, *, lookup: bool) -> None:
        account_ids: set[str] = set()
        target_ids: set[str] = set()
        valid_ids: set[str] = set()
        for op, id_refusal, refusal in zip(self.ops, self.id_refusals, self.static, strict=True):
            if id_refusal is not None:
                continue
            valid_ids.add(op.id)
            if refusal is not None:
                continue
            if type(op) is TransferRequest:
                account_ids.update([leg.account_id for leg in op.legs])
            elif (acted_on := target_id(op)) is not None:
                target_ids.add(acted_on)
        self.targets = load_targets(self.tx, target_ids)
        for loaded in self.targets.values():
            account_ids.update(entry.account_id for entry in loaded.entries)
        self.accounts, stored = load_accounts(
            self.tx, account_ids, sorted(valid_ids), lookup=lookup
        )
        for outcome in stored.values():
            self.earlier[outcome.id] = Earlier(
                outcome.request, outcome.code, outcome.message, outcome.param
            )

    def _build(self) -> None:
        """The created transfers as values, in their results (and in the results of repeats
        of their ids within the batch)."""
        now, actor, batch_id = self.now, self.tx.actor, self.batch_id
        built: dict[str, Transfer] = {}
        for transfer_id, (_, plan) in self.created.items():
            effective_at = plan.effective_at
            entries = tuple(
                [
                    Entry(
                        transfer_id,
                        planned.account_id,
                        planned.direction,
                        planned.phase,
                        planned.amount_minor,
                        planned.currency,
                        effective_at,
                        now,
                        planned.shard or 0,
                    )
                    for planned in plan.entries
                ]
            )
            built[transfer_id] = Transfer(
                transfer_id,
                plan.kind,
                plan.reason_code,
                plan.metadata,
                effective_at,
                now,
                entries,
                pending_id=plan.pending_id,
                reverses_id=plan.reverses_id,
                expires_at=plan.expires_at,
                batch_id=batch_id,
                actor=actor,
                hold_status=HoldStatus.PENDING if plan.kind is TransferKind.PENDING else None,
            )
        results = self.results
        for index, result in enumerate(results):
            if result is None or result.transfer is not None:
                continue
            transfer = built.get(result.id)
            if transfer is not None and result.status is not TransferStatus.FAILED:
                results[index] = TransferResult(result.id, result.status, transfer)

    # 4 ----------------------------------------------------------------------------------
    def _journal(self) -> dict[str, Any]:
        """What ``write_journal`` / ``send_write`` take."""
        balances_set = []
        balances_moved = []
        for account in sorted(self.accounts.values(), key=lambda a: a.id):
            values = account.values
            if not account.changed or values is None:
                continue
            start = account.start
            if start is None:
                balances_set.append((account.id, 0, values))
            else:
                balances_moved.append(
                    (
                        account.id,
                        account.debit_room_needed,
                        account.credit_room_needed,
                        values[0] - start[0],
                        values[1] - start[1],
                        values[2] - start[2],
                        values[3] - start[3],
                    )
                )
        balances_added = [
            (account.id, shard, delta)
            for account in self.accounts.values()
            for shard, delta in account.deltas.items()
        ]
        writes = self.writes
        return {
            "now": self.now,
            "actor": self.tx.actor,
            "batch_id": self.batch_id,
            "transfers": writes.transfers,
            "entries": writes.entries,
            "failures": writes.failures,
            "balances_set": balances_set,
            "balances_added": balances_added,
            "balances_moved": balances_moved,
            "holds_opened": writes.holds_opened,
            "holds_closed": writes.holds_closed,
        }

    def _send_write(self) -> repository_pg.PendingWrite:
        return repository_pg.send_write(self.tx, **self._journal())

    def _write_now(self) -> bool:
        """Build the results and write; False when the guard found a stored id (PostgreSQL)."""
        self._build()
        try:
            if self.is_postgres:
                return self._send_write().succeeded()
            journal = self._journal()
            # Only PostgreSQL's plain batches decide on balances read without their locks.
            invariant(not journal.pop("balances_moved"), "unlocked balances on SQLite")
            return repository.write_journal(self.tx, **journal)
        except (IntegrityError, psycopg.IntegrityError) as error:
            raise _race_or(error) from error

    # 5 ----------------------------------------------------------------------------------
    def _finish(self) -> list[TransferResult]:
        results: list[TransferResult] = []
        # Repeats of ids stored before this batch: their transfers come from the database.
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
            if result.transfer is None and result.status is TransferStatus.EXISTS:
                result = TransferResult(
                    id=result.id, status=result.status, transfer=loaded.get(result.id)
                )
            results.append(result)
            counts[(op.kind, result.status)] += 1
        for (kind, status), count in counts.items():
            TRANSFERS.labels(str(kind), str(status)).inc(count)
        events.emit_outcomes(self.tx, self.ops, results, self.accounts)
        return results


def _leg_account_ids(ops: Sequence[LedgerOp]) -> set[str]:
    """The account ids a batch of plain transfers names, read before the batch is validated (so
    without trusting its shape): what the batch will lock."""
    ids: set[str] = set()
    for op in ops:
        legs = getattr(op, "legs", None)
        if type(legs) is not list and type(legs) is not tuple:
            continue
        for leg in legs:
            account_id = getattr(leg, "account_id", None)
            if type(account_id) is str and ACCOUNT_ID_PATTERN.match(account_id):
                ids.add(account_id)
    return ids


def _race_or(error: Exception) -> Exception:
    """A unique constraint that a concurrent request with the same id (or resolving the same
    hold) hits becomes ``transfer_id_in_use``; anything else stays what it is."""
    cause = error.orig if isinstance(error, IntegrityError) else error
    constraint = getattr(getattr(cause, "diag", None), "constraint_name", None)
    if constraint in _RACE_CONSTRAINTS:
        return IdempotencyError(
            LedgerCode.TRANSFER_ID_IN_USE,
            "a concurrent request used the same transfer id or resolved the same hold; "
            "retry to get its outcome",
        )
    return error
