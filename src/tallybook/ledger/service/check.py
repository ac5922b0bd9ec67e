"""``tallybook ledger check``: recompute what the ledger guarantees and report every breach.

The transfer path checks before it writes; this checks again after reading (TigerStyle's pair
assertions), from the journal alone:

- every transfer's entries sum to zero per currency and phase;
- every stored balance row equals the sum of its entries;
- no limited account is past its limit, and balance rows carry their account's flags;
- the open-hold index lists exactly the holds not yet posted, voided or expired;
- no id is both a transfer and a recorded failure;
- no transfer is reversed by more than it moved.

Errors are collected as values (as beancount does) so one run reports everything it finds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import sqlalchemy as sa
from sqlalchemy import func, select

from tallybook.db import Tx
from tallybook.ledger.metrics import CHECK_BREACHES
from tallybook.ledger.repository import (
    ACCOUNTS,
    BALANCES,
    ENTRIES,
    FAILURES,
    OPEN_HOLDS,
    TRANSFERS,
)

BREACHES_PER_KIND_MAX: Final = 100


@dataclass(frozen=True, slots=True)
class Breach:
    kind: str
    subject: str
    detail: str


@dataclass(frozen=True, slots=True)
class CheckReport:
    breaches: tuple[Breach, ...]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.breaches


def _signed() -> sa.ColumnElement[int]:
    return sa.case(
        (ENTRIES.c.direction == "debit", ENTRIES.c.amount_minor), else_=-ENTRIES.c.amount_minor
    )


def _field_sum(direction: str, phase: str, label: str) -> sa.Label[int]:
    matches = sa.and_(ENTRIES.c.direction == direction, ENTRIES.c.phase == phase)
    return func.coalesce(func.sum(sa.case((matches, ENTRIES.c.amount_minor), else_=0)), 0).label(
        label
    )


def _unbalanced_transfers(tx: Tx) -> list[Breach]:
    query = (
        select(ENTRIES.c.transfer_id, ENTRIES.c.currency, ENTRIES.c.phase, func.sum(_signed()))
        .group_by(ENTRIES.c.transfer_id, ENTRIES.c.currency, ENTRIES.c.phase)
        .having(func.sum(_signed()) != 0)
        .limit(BREACHES_PER_KIND_MAX)
    )
    return [
        Breach(
            "unbalanced_transfer",
            row[0],
            f"{row[1]} {row[2]} debits minus credits = {int(row[3])}, not 0",
        )
        for row in tx.session.connection().execute(query)
    ]


def _balance_mismatches(tx: Tx) -> list[Breach]:
    sums = (
        select(
            ENTRIES.c.account_id,
            ENTRIES.c.shard,
            _field_sum("debit", "posted", "dp"),
            _field_sum("credit", "posted", "cp"),
            _field_sum("debit", "pending", "dpp"),
            _field_sum("credit", "pending", "cpp"),
        )
        .group_by(ENTRIES.c.account_id, ENTRIES.c.shard)
        .subquery()
    )
    joined = BALANCES.outerjoin(
        sums, sa.and_(sums.c.account_id == BALANCES.c.account_id, sums.c.shard == BALANCES.c.shard)
    )
    pairs = [
        (BALANCES.c.debits_posted, sums.c.dp),
        (BALANCES.c.credits_posted, sums.c.cp),
        (BALANCES.c.debits_pending, sums.c.dpp),
        (BALANCES.c.credits_pending, sums.c.cpp),
    ]
    query = (
        select(BALANCES.c.account_id, BALANCES.c.shard, *(p for pair in pairs for p in pair))
        .select_from(joined)
        .where(sa.or_(*(stored != func.coalesce(summed, 0) for stored, summed in pairs)))
        .limit(BREACHES_PER_KIND_MAX)
    )
    names = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
    breaches = []
    for row in tx.session.connection().execute(query):
        values = list(row[2:])
        differences = [
            f"{name} stored {int(values[2 * i])}, entries sum to {int(values[2 * i + 1] or 0)}"
            for i, name in enumerate(names)
            if int(values[2 * i]) != int(values[2 * i + 1] or 0)
        ]
        breaches.append(Breach("balance_mismatch", f"{row[0]}#{row[1]}", "; ".join(differences)))
    orphan = (
        select(ENTRIES.c.account_id, ENTRIES.c.shard)
        .where(
            ~sa.exists().where(
                BALANCES.c.account_id == ENTRIES.c.account_id, BALANCES.c.shard == ENTRIES.c.shard
            )
        )
        .distinct()
        .limit(BREACHES_PER_KIND_MAX)
    )
    for row in tx.session.connection().execute(orphan):
        breaches.append(
            Breach("balance_mismatch", f"{row[0]}#{row[1]}", "entries without a balance row")
        )
    return breaches


def _limit_breaches(tx: Tx) -> list[Breach]:
    query = (
        select(
            ACCOUNTS.c.id,
            ACCOUNTS.c.debits_must_not_exceed_credits,
            ACCOUNTS.c.credits_must_not_exceed_debits,
            BALANCES.c.shard,
            BALANCES.c.debits_must_not_exceed_credits,
            BALANCES.c.credits_must_not_exceed_debits,
            ACCOUNTS.c.closed_at,
            BALANCES.c.closed,
            BALANCES.c.debits_posted,
            BALANCES.c.credits_posted,
            BALANCES.c.debits_pending,
            BALANCES.c.credits_pending,
        )
        .join_from(ACCOUNTS, BALANCES, BALANCES.c.account_id == ACCOUNTS.c.id)
        .where(
            sa.or_(
                ACCOUNTS.c.debits_must_not_exceed_credits,
                ACCOUNTS.c.credits_must_not_exceed_debits,
                BALANCES.c.debits_must_not_exceed_credits,
                BALANCES.c.credits_must_not_exceed_debits,
                ACCOUNTS.c.closed_at.is_not(None),
                BALANCES.c.closed,
            )
        )
    )
    breaches = []
    for row in tx.session.connection().execute(query):
        (account_id, debit_limit, credit_limit, shard, row_debit_limit, row_credit_limit) = row[:6]
        closed_at, row_closed = row[6:8]
        debits_posted, credits_posted, debits_pending, credits_pending = (int(v) for v in row[8:])
        flags = (bool(debit_limit), bool(credit_limit), closed_at is not None)
        if flags != (bool(row_debit_limit), bool(row_credit_limit), bool(row_closed)):
            breaches.append(
                Breach(
                    "flags_mismatch",
                    f"{account_id}#{shard}",
                    "the balance row's limit or closed flags differ from its account's",
                )
            )
        if debit_limit and debits_posted + debits_pending > credits_posted:
            breaches.append(
                Breach(
                    "limit_breach",
                    account_id,
                    f"debits {debits_posted} + pending {debits_pending} exceed credits "
                    f"{credits_posted}",
                )
            )
        if credit_limit and credits_posted + credits_pending > debits_posted:
            breaches.append(
                Breach(
                    "limit_breach",
                    account_id,
                    f"credits {credits_posted} + pending {credits_pending} exceed debits "
                    f"{debits_posted}",
                )
            )
        if len(breaches) >= BREACHES_PER_KIND_MAX:
            break
    return breaches


def _hold_mismatches(tx: Tx) -> list[Breach]:
    resolver = TRANSFERS.alias("resolver")
    unresolved = sa.exists().where(resolver.c.pending_id == TRANSFERS.c.id)
    listed = sa.exists().where(OPEN_HOLDS.c.transfer_id == TRANSFERS.c.id)
    conn = tx.session.connection()
    missing = conn.execute(
        select(TRANSFERS.c.id)
        .where(TRANSFERS.c.kind == "pending", ~unresolved, ~listed)
        .limit(BREACHES_PER_KIND_MAX)
    )
    breaches = [Breach("hold_index", row[0], "open hold missing from the index") for row in missing]
    stale = conn.execute(
        select(OPEN_HOLDS.c.transfer_id)
        .join_from(OPEN_HOLDS, TRANSFERS, TRANSFERS.c.id == OPEN_HOLDS.c.transfer_id)
        .where(sa.or_(TRANSFERS.c.kind != "pending", unresolved))
        .limit(BREACHES_PER_KIND_MAX)
    )
    breaches.extend(
        Breach("hold_index", row[0], "resolved or not a hold, yet listed as open") for row in stale
    )
    return breaches


def _ids_created_and_failed(tx: Tx) -> list[Breach]:
    query = (
        select(FAILURES.c.id)
        .join_from(FAILURES, TRANSFERS, TRANSFERS.c.id == FAILURES.c.id)
        .limit(BREACHES_PER_KIND_MAX)
    )
    return [
        Breach("id_created_and_failed", row[0], "the id is both a transfer and a failure")
        for row in tx.session.connection().execute(query)
    ]


def _over_reversed(tx: Tx) -> list[Breach]:
    reversal = TRANSFERS.alias("reversal")
    reversal_entries = ENTRIES.alias("reversal_entries")
    reversed_sums = (
        select(
            reversal.c.reverses_id.label("original_id"),
            reversal_entries.c.account_id,
            reversal_entries.c.direction,
            func.sum(reversal_entries.c.amount_minor).label("amount_minor"),
        )
        .join_from(reversal, reversal_entries, reversal_entries.c.transfer_id == reversal.c.id)
        .where(reversal.c.reverses_id.is_not(None))
        .group_by(
            reversal.c.reverses_id, reversal_entries.c.account_id, reversal_entries.c.direction
        )
        .subquery()
    )
    query = (
        select(
            reversed_sums.c.original_id,
            reversed_sums.c.account_id,
            reversed_sums.c.amount_minor,
            ENTRIES.c.amount_minor,
        )
        .select_from(
            reversed_sums.outerjoin(
                ENTRIES,
                sa.and_(
                    ENTRIES.c.transfer_id == reversed_sums.c.original_id,
                    ENTRIES.c.account_id == reversed_sums.c.account_id,
                    ENTRIES.c.phase == "posted",
                    ENTRIES.c.direction != reversed_sums.c.direction,
                ),
            )
        )
        .where(
            sa.or_(
                ENTRIES.c.amount_minor.is_(None),
                reversed_sums.c.amount_minor > ENTRIES.c.amount_minor,
            )
        )
        .limit(BREACHES_PER_KIND_MAX)
    )
    return [
        Breach(
            "over_reversed",
            row[0],
            f"{row[1]}: reversed {int(row[2])} of {0 if row[3] is None else int(row[3])}",
        )
        for row in tx.session.connection().execute(query)
    ]


def _counts(tx: Tx) -> dict[str, int]:
    conn = tx.session.connection()
    return {
        "accounts": int(conn.execute(select(func.count()).select_from(ACCOUNTS)).scalar_one()),
        "transfers": int(conn.execute(select(func.count()).select_from(TRANSFERS)).scalar_one()),
        "entries": int(conn.execute(select(func.count()).select_from(ENTRIES)).scalar_one()),
        "open_holds": int(conn.execute(select(func.count()).select_from(OPEN_HOLDS)).scalar_one()),
    }


def check_invariants(tx: Tx) -> CheckReport:
    """Recompute the ledger's invariants from the journal; an empty report means all hold."""
    breaches: list[Breach] = []
    for check in (
        _unbalanced_transfers,
        _balance_mismatches,
        _limit_breaches,
        _hold_mismatches,
        _ids_created_and_failed,
        _over_reversed,
    ):
        breaches.extend(check(tx))
    for breach in breaches:
        CHECK_BREACHES.labels(breach.kind).inc()
    return CheckReport(breaches=tuple(breaches), counts=_counts(tx))
