"""A stateful property test: hypothesis drives random ledger operations (transfers, duplicate
ids, holds, partial posts, voids, expiries, reversals, linked batches with a failing member)
against the real service, and a tiny in-memory model predicts every outcome. After each step
the model's balances must equal the ledger's and ``check_invariants`` must pass.

Each example opens fresh accounts and uses fresh ids, so examples don't see each other's data
although they share the test's database. Runs on SQLite and PostgreSQL with modest counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tallybook.db import Database
from tallybook.kit.clock import TestClock
from tallybook.kit.ids import new_id
from tallybook.ledger import service as ledger
from tallybook.ledger.rejections import Rejection
from tallybook.ledger.values import (
    AccountKind,
    AccountSpec,
    LedgerOp,
    PostPending,
    ReverseTransfer,
    TransferResult,
    VoidPending,
)
from tests.ledger.conftest import move, new_customer

# Field positions in a balance: debits posted, credits posted, debits pending, credits pending.
DP, CP, DPP, CPP = range(4)
Legs = list[tuple[str, int, int]]  # (account, field, amount)


@dataclass
class Model:
    limited: set[str]
    balances: dict[str, list[int]]
    #: transfer id → (the request, its outcome code or None)
    sent: dict[str, tuple[LedgerOp, Rejection | None]] = field(default_factory=dict)
    #: hold id → (debit account, credit account, amount, expires_at, status)
    holds: dict[str, list[object]] = field(default_factory=dict)
    #: reversible transfer id → (debit account, credit account, amount, reversed so far)
    posted: dict[str, list[object]] = field(default_factory=dict)

    def fits(self, legs: Legs) -> bool:
        proposed = {account: list(values) for account, values in self.balances.items()}
        for account, position, amount in legs:
            proposed[account][position] += amount
        return all(proposed[a][DP] + proposed[a][DPP] <= proposed[a][CP] for a in self.limited)

    def apply(self, legs: Legs) -> None:
        for account, position, amount in legs:
            self.balances[account][position] += amount


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, db: Database, clock: TestClock) -> None:
        super().__init__()
        self.db = db
        self.clock = clock
        self.prefix = new_id("run")[-10:]
        with db.transaction() as tx:
            funding = ledger.open_account(
                tx, AccountSpec.system(f"funding_{self.prefix.lower()}", "USD", AccountKind.ASSET)
            )
            wallets = [
                ledger.open_account(tx, AccountSpec.customer_credit(new_customer(tx), "USD"))
                for _ in range(2)
            ]
            revenue = ledger.open_account(
                tx,
                AccountSpec.system(
                    f"revenue_{self.prefix.lower()}", "USD", AccountKind.REVENUE, balance_shards=3
                ),
            )
        self.accounts = [funding.id, *(w.id for w in wallets), revenue.id]
        self.model = Model(
            limited={w.id for w in wallets},
            balances={account: [0, 0, 0, 0] for account in self.accounts},
        )
        self.counter = 0

    def _id(self) -> str:
        self.counter += 1
        return f"{self.prefix}-{self.counter}"

    def _run(self, *ops: LedgerOp, linked: bool = False) -> list[TransferResult]:
        with self.db.transaction(actor="stateful") as tx:
            if linked:
                return ledger.create_linked_batch(tx, list(ops))
            return ledger.create_transfers(tx, list(ops))

    def _now(self) -> datetime:
        return self.clock.now()

    # Rules ------------------------------------------------------------------------------
    @rule(
        from_index=st.integers(0, 3),
        to_index=st.integers(0, 3),
        amount=st.integers(1, 1500),
        pending=st.booleans(),
        timeout=st.sampled_from([None, 30, 120]),
    )
    def transfer(
        self, from_index: int, to_index: int, amount: int, pending: bool, timeout: int | None
    ) -> None:
        if from_index == to_index:
            to_index = (to_index + 1) % 4
        debit, credit = self.accounts[from_index], self.accounts[to_index]
        transfer_id = self._id()
        request = move(
            transfer_id,
            debit,
            credit,
            amount,
            pending=pending,
            timeout_seconds=timeout if pending else None,
        )
        legs = [(debit, DPP if pending else DP, amount), (credit, CPP if pending else CP, amount)]
        expected = None if self.model.fits(legs) else Rejection.EXCEEDS_CREDITS
        (result,) = self._run(request)
        assert result.code is expected, (result, expected)
        self.model.sent[transfer_id] = (request, expected)
        if expected is None:
            self.model.apply(legs)
            if pending:
                expires = None if timeout is None else self._now() + timedelta(seconds=timeout)
                self.model.holds[transfer_id] = [debit, credit, amount, expires, "open"]
            else:
                self.model.posted[transfer_id] = [debit, credit, amount, 0]

    @rule(wallet=st.integers(1, 2), amount=st.integers(100, 2000))
    def fund(self, wallet: int, amount: int) -> None:
        self.transfer(0, wallet, amount, pending=False, timeout=None)

    @rule(
        wallet=st.integers(1, 2),
        to_index=st.sampled_from([0, 3, 3]),
        amount=st.integers(1, 1500),
        pending=st.booleans(),
        timeout=st.sampled_from([None, 30, 120]),
    )
    def spend(
        self, wallet: int, to_index: int, amount: int, pending: bool, timeout: int | None
    ) -> None:
        self.transfer(wallet, to_index, amount, pending, timeout)

    @precondition(lambda self: bool(self.model.sent))
    @rule(data=st.data(), same=st.booleans())
    def resend(self, data: st.DataObject, same: bool) -> None:
        """A retry of an earlier request: the same outcome, or a named conflict."""
        transfer_id = data.draw(st.sampled_from(sorted(self.model.sent)))
        request, outcome = self.model.sent[transfer_id]
        if same:
            (result,) = self._run(request)
            if outcome is None:
                assert result.status == "exists", result
            else:
                # A transient failure is replayed from storage; a permanent one is refused again.
                assert result.code is outcome, result
                assert result.replayed is outcome.transient, result
            return
        # Another kind of request under the same id.
        changed: LedgerOp = ReverseTransfer(transfer_id, "nothing", "changed")
        free_id_code = Rejection.TRANSFER_NOT_FOUND
        if isinstance(request, ReverseTransfer):
            changed = VoidPending(transfer_id, "nothing")
            free_id_code = Rejection.PENDING_TRANSFER_NOT_FOUND
        (result,) = self._run(changed)
        if outcome is None or outcome.transient:
            assert result.code is Rejection.EXISTS_WITH_DIFFERENT_KIND, result
        else:
            # A permanent refusal stored nothing, so the id is free: this is a new request.
            assert result.code is free_id_code, result

    @precondition(lambda self: any(h[4] == "open" for h in self.model.holds.values()))
    @rule(data=st.data(), post=st.booleans(), part=st.integers(1, 100))
    def resolve(self, data: st.DataObject, post: bool, part: int) -> None:
        hold_id = data.draw(
            st.sampled_from(sorted(h for h, v in self.model.holds.items() if v[4] == "open"))
        )
        debit, credit, amount, expires, _ = self.model.holds[hold_id]
        assert isinstance(amount, int) and isinstance(debit, str) and isinstance(credit, str)
        transfer_id = self._id()
        release = [(debit, DPP, -amount), (credit, CPP, -amount)]
        if post:
            posted = max(1, amount * part // 100)
            request: LedgerOp = PostPending(transfer_id, hold_id, amount_minor=posted)
            expired = expires is not None and self._now() >= expires  # type: ignore[operator]
            expected = Rejection.PENDING_TRANSFER_EXPIRED if expired else None
            legs = [*release, (debit, DP, posted), (credit, CP, posted)]
        else:
            request = VoidPending(transfer_id, hold_id)
            expected = None
            legs = release
        (result,) = self._run(request)
        assert result.code is expected, (result, expected)
        self.model.sent[transfer_id] = (request, expected)
        if expected is None:
            self.model.apply(legs)
            self.model.holds[hold_id][4] = "posted" if post else "voided"
            if post:
                self.model.posted[transfer_id] = [debit, credit, posted, 0]

    @rule(seconds=st.sampled_from([10, 45, 200]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)
        with self.db.transaction() as tx:
            results = ledger.expire_due_holds(tx)
        expired = {r.transfer.pending_id for r in results if r.transfer is not None}
        now = self._now()
        mine = {
            hold_id
            for hold_id, (_, _, _, expires, status) in self.model.holds.items()
            if status == "open" and expires is not None and expires <= now  # type: ignore[operator]
        }
        # Other examples' holds may expire too; ours must all be among them.
        assert mine <= expired
        for hold_id in mine:
            debit, credit, amount, _, _ = self.model.holds[hold_id]
            self.model.apply([(debit, DPP, -amount), (credit, CPP, -amount)])  # type: ignore[list-item]
            self.model.holds[hold_id][4] = "expired"

    @precondition(lambda self: bool(self.model.posted))
    @rule(data=st.data(), partial=st.integers(0, 100))
    def reverse(self, data: st.DataObject, partial: int) -> None:
        original = data.draw(st.sampled_from(sorted(self.model.posted)))
        debit, credit, amount, done = self.model.posted[original]
        assert isinstance(amount, int) and isinstance(done, int)
        assert isinstance(debit, str) and isinstance(credit, str)
        left = amount - done
        wanted = None if partial == 0 else max(1, amount * partial // 100)
        transfer_id = self._id()
        request = ReverseTransfer(transfer_id, original, "correction", amount_minor=wanted)
        size = left if wanted is None else wanted
        legs = [(debit, CP, size), (credit, DP, size)]
        if left == 0:
            expected: Rejection | None = Rejection.TRANSFER_ALREADY_REVERSED
        elif wanted is not None and wanted > left:
            expected = Rejection.REVERSAL_AMOUNT_EXCEEDED
        elif not self.model.fits(legs):
            expected = Rejection.EXCEEDS_CREDITS
        else:
            expected = None
        (result,) = self._run(request)
        assert result.code is expected, (result, expected)
        self.model.sent[transfer_id] = (request, expected)
        if expected is None:
            self.model.apply(legs)
            self.model.posted[original][3] = done + size

    @rule(amount=st.integers(1, 500), wallet=st.integers(1, 2))
    def linked_batch_with_a_failing_member(self, amount: int, wallet: int) -> None:
        """Top up a wallet and overspend it in one linked batch: nothing is applied."""
        account = self.accounts[wallet]
        funding, revenue = self.accounts[0], self.accounts[3]
        balance = self.model.balances[account]
        too_much = balance[CP] - balance[DP] - balance[DPP] + amount + 1
        first, second = self._id(), self._id()
        results = self._run(
            move(first, funding, account, amount),
            move(second, account, revenue, too_much),
            linked=True,
        )
        assert [r.code for r in results] == [
            Rejection.LINKED_EVENT_FAILED,
            Rejection.EXCEEDS_CREDITS,
        ]
        self.model.sent[second] = (
            move(second, account, revenue, too_much),
            Rejection.EXCEEDS_CREDITS,
        )

    # Invariants -------------------------------------------------------------------------
    @invariant()
    def balances_match_the_model(self) -> None:
        with self.db.read() as tx:
            for account in self.accounts:
                b = ledger.balance(tx, account)
                stored = [
                    b.debits_posted.amount_minor,
                    b.credits_posted.amount_minor,
                    b.debits_pending.amount_minor,
                    b.credits_pending.amount_minor,
                ]
                assert stored == self.model.balances[account], account

    @invariant()
    def the_ledger_checks_out(self) -> None:
        with self.db.read() as tx:
            report = ledger.check_invariants(tx)
        assert report.ok, report.breaches


def test_random_operations_match_the_model(db: Database, clock: TestClock) -> None:
    run_state_machine_as_test(
        lambda: LedgerMachine(db, clock),
        settings=settings(
            max_examples=15,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
