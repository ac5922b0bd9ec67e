"""All of the ledger's SQL.

The transfer path uses SQLAlchemy Core on the session's connection (compiled statements are
cached; many rows go in one ``executemany``), not ORM flushes. Lock order, everywhere:

1. target transfers (the holds being posted or voided, the transfers being reversed), by id;
2. normal accounts' balance rows, by account id;
3. shard rows of hot accounts, by (account id, shard), taken by their UPDATE.

Every writer follows it, so two transactions never wait for each other in a cycle whatever the
order of legs in their requests. SQLite serializes writers (``BEGIN IMMEDIATE``), so it takes no
row locks at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy import Connection, bindparam, func, select, union_all
from sqlalchemy.dialects import postgresql, sqlite

from tallybook.db import Tx
from tallybook.kit.pagination import PageRequest
from tallybook.ledger.models import (
    LedgerAccount,
    LedgerBalance,
    LedgerEntry,
    LedgerOpenHold,
    LedgerTransfer,
    LedgerTransferFailure,
)

ACCOUNTS = cast(sa.Table, LedgerAccount.__table__)
BALANCES = cast(sa.Table, LedgerBalance.__table__)
TRANSFERS = cast(sa.Table, LedgerTransfer.__table__)
ENTRIES = cast(sa.Table, LedgerEntry.__table__)
FAILURES = cast(sa.Table, LedgerTransferFailure.__table__)
OPEN_HOLDS = cast(sa.Table, LedgerOpenHold.__table__)
#: Customers are a sibling domain; the ledger only needs to know that an owner exists.
CUSTOMERS = sa.table("customers", sa.column("id", sa.String))

_BALANCE_VALUES = (
    BALANCES.c.debits_posted,
    BALANCES.c.credits_posted,
    BALANCES.c.debits_pending,
    BALANCES.c.credits_pending,
)
_ACCOUNT_COLUMNS = tuple(ACCOUNTS.c)
_LIMIT_FLAGS = (
    BALANCES.c.debits_must_not_exceed_credits,
    BALANCES.c.credits_must_not_exceed_debits,
)


def _conn(tx: Tx) -> Connection:
    return tx.session.connection()


def _insert(tx: Tx) -> Any:
    return postgresql.insert if tx.is_postgres else sqlite.insert


# Accounts ---------------------------------------------------------------------------------


def customer_exists(tx: Tx, customer_id: str) -> bool:
    found = _conn(tx).execute(select(CUSTOMERS.c.id).where(CUSTOMERS.c.id == customer_id))
    return found.first() is not None


def insert_account(tx: Tx, values: Mapping[str, Any]) -> bool:
    """Insert unless an account with the same identity exists; True when inserted."""
    owned = values["owner_id"] is not None
    where = ACCOUNTS.c.owner_id.is_not(None) if owned else ACCOUNTS.c.owner_id.is_(None)
    elements = ["owner_id", "code", "currency", "reference"] if owned else []
    if not owned:
        elements = ["code", "currency", "reference"]
    statement = (
        _insert(tx)(ACCOUNTS)
        .values(**values)
        .on_conflict_do_nothing(index_elements=elements, index_where=where)
        .returning(ACCOUNTS.c.id)
    )
    return _conn(tx).execute(statement).first() is not None


def insert_balance_rows(tx: Tx, rows: Sequence[Mapping[str, Any]]) -> None:
    _conn(tx).execute(sa.insert(BALANCES), list(rows))


def account_by_identity(
    tx: Tx, *, code: str, currency: str, owner_id: str | None, reference: str
) -> sa.Row[Any] | None:
    owner = ACCOUNTS.c.owner_id.is_(None) if owner_id is None else ACCOUNTS.c.owner_id == owner_id
    query = select(*_ACCOUNT_COLUMNS).where(
        ACCOUNTS.c.code == code,
        ACCOUNTS.c.currency == currency,
        ACCOUNTS.c.reference == reference,
        owner,
    )
    return _conn(tx).execute(query).first()


def account(tx: Tx, account_id: str) -> sa.Row[Any] | None:
    query = select(*_ACCOUNT_COLUMNS).where(ACCOUNTS.c.id == account_id)
    return _conn(tx).execute(query).first()


def lock_for_close(tx: Tx, account_id: str) -> None:
    """Lock an account's balance rows (shard order), as the transfer path does, so a close and
    a transfer to the account run one after the other."""
    if tx.is_postgres:
        _conn(tx).execute(
            select(BALANCES.c.shard)
            .where(BALANCES.c.account_id == account_id)
            .order_by(BALANCES.c.shard)
            .with_for_update(key_share=True)
        ).all()


def accounts(tx: Tx, account_ids: Sequence[str]) -> list[sa.Row[Any]]:
    if not account_ids:
        return []
    query = select(*_ACCOUNT_COLUMNS).where(ACCOUNTS.c.id.in_(bindparam("ids", expanding=True)))
    return list(_conn(tx).execute(query, {"ids": list(account_ids)}))


def accounts_page(
    tx: Tx,
    request: PageRequest,
    *,
    owner_id: str | None = None,
    code: str | None = None,
    currency: str | None = None,
) -> list[sa.Row[Any]]:
    query = select(*_ACCOUNT_COLUMNS)
    if owner_id is not None:
        query = query.where(ACCOUNTS.c.owner_id == owner_id)
    if code is not None:
        query = query.where(ACCOUNTS.c.code == code)
    if currency is not None:
        query = query.where(ACCOUNTS.c.currency == currency)
    return _page(tx, query, ACCOUNTS.c.id, request)


def _page(tx: Tx, query: Any, key: Any, request: PageRequest) -> list[sa.Row[Any]]:
    """Newest first; up to ``limit + 1`` rows so the caller can tell ``has_more``."""
    if request.starting_after:
        query = query.where(key < request.starting_after).order_by(key.desc())
    elif request.ending_before:
        query = query.where(key > request.ending_before).order_by(key.asc())
    else:
        query = query.order_by(key.desc())
    rows = list(_conn(tx).execute(query.limit(request.limit + 1)))
    if request.ending_before:
        rows = list(reversed(rows[: request.limit])) + rows[request.limit :]
    return rows


def set_closed(tx: Tx, account_id: str, closed_at: datetime) -> None:
    conn = _conn(tx)
    conn.execute(sa.update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(closed_at=closed_at))
    conn.execute(sa.update(BALANCES).where(BALANCES.c.account_id == account_id).values(closed=True))


# The transfer path ------------------------------------------------------------------------


_LOCK_BALANCE_ROWS = (
    select(BALANCES.c.account_id, BALANCES.c.closed, *_LIMIT_FLAGS, *_BALANCE_VALUES)
    .where(BALANCES.c.account_id.in_(bindparam("ids", expanding=True)), BALANCES.c.shard == 0)
    .order_by(BALANCES.c.account_id)
)
_LOCK_BALANCE_ROWS_PG = _LOCK_BALANCE_ROWS.with_for_update(key_share=True)


def lock_balance_rows(tx: Tx, account_ids: Sequence[str]) -> list[sa.Row[Any]]:
    """Lock normal (unsharded) accounts' balance rows in id order. Hot sharded accounts are
    never passed here: they take no row lock before their increments. Only balance rows are
    locked; what can change about an account (``closed``) is on that row, so a transfer that
    waited for a close sees it."""
    if not account_ids:
        return []
    statement = _LOCK_BALANCE_ROWS_PG if tx.is_postgres else _LOCK_BALANCE_ROWS
    return list(_conn(tx).execute(statement, {"ids": list(account_ids)}))


_EXISTING = union_all(
    select(
        TRANSFERS.c.id,
        TRANSFERS.c.request,
        sa.null().label("code"),
        sa.null().label("message"),
        sa.null().label("param"),
    ).where(TRANSFERS.c.id.in_(bindparam("ids", expanding=True))),
    select(
        FAILURES.c.id, FAILURES.c.request, FAILURES.c.code, FAILURES.c.message, FAILURES.c.param
    ).where(FAILURES.c.id.in_(bindparam("ids", expanding=True))),
)


@dataclass(frozen=True, slots=True)
class Stored:
    """A transfer id already in the ledger: created (``code`` None) or failed."""

    id: str
    request: dict[str, Any]
    code: str | None
    message: str | None
    param: str | None


def stored_outcomes(tx: Tx, transfer_ids: Sequence[str]) -> dict[str, Stored]:
    if not transfer_ids:
        return {}
    rows = _conn(tx).execute(_EXISTING, {"ids": list(transfer_ids)})
    return {row.id: Stored(row.id, row.request, row.code, row.message, row.param) for row in rows}


_TARGETS = select(
    TRANSFERS.c.id,
    TRANSFERS.c.kind,
    TRANSFERS.c.reason_code,
    TRANSFERS.c.expires_at,
).where(TRANSFERS.c.id.in_(bindparam("ids", expanding=True)))
_TARGETS_PG = _TARGETS.order_by(TRANSFERS.c.id).with_for_update(key_share=True)


def lock_transfers(tx: Tx, transfer_ids: Sequence[str]) -> list[sa.Row[Any]]:
    """Lock the transfers being posted, voided, expired or reversed (by id), so two resolutions
    of one hold, or two reversals of one transfer, run one after the other."""
    statement = _TARGETS_PG if tx.is_postgres else _TARGETS
    return list(_conn(tx).execute(statement, {"ids": list(transfer_ids)}))


def entries_of(tx: Tx, transfer_ids: Sequence[str]) -> list[sa.Row[Any]]:
    query = (
        select(*ENTRIES.c)
        .where(ENTRIES.c.transfer_id.in_(bindparam("ids", expanding=True)))
        .order_by(ENTRIES.c.id)
    )
    return list(_conn(tx).execute(query, {"ids": list(transfer_ids)}))


def open_hold_ids(tx: Tx, transfer_ids: Sequence[str]) -> set[str]:
    query = select(OPEN_HOLDS.c.transfer_id).where(
        OPEN_HOLDS.c.transfer_id.in_(bindparam("ids", expanding=True))
    )
    return {row[0] for row in _conn(tx).execute(query, {"ids": list(transfer_ids)})}


def resolutions(tx: Tx, pending_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """For each resolved hold: (the resolving transfer's id, its kind)."""
    if not pending_ids:
        return {}
    query = select(TRANSFERS.c.pending_id, TRANSFERS.c.id, TRANSFERS.c.kind).where(
        TRANSFERS.c.pending_id.in_(bindparam("ids", expanding=True))
    )
    rows = _conn(tx).execute(query, {"ids": list(pending_ids)})
    return {row.pending_id: (row.id, row.kind) for row in rows}


def reversal_totals(tx: Tx, transfer_ids: Sequence[str]) -> list[sa.Row[Any]]:
    """(reverses_id, account_id, direction, amount) summed over the reversals of each transfer."""
    query = (
        select(
            TRANSFERS.c.reverses_id,
            ENTRIES.c.account_id,
            ENTRIES.c.direction,
            func.sum(ENTRIES.c.amount_minor).label("amount_minor"),
        )
        .join_from(TRANSFERS, ENTRIES, ENTRIES.c.transfer_id == TRANSFERS.c.id)
        .where(TRANSFERS.c.reverses_id.in_(bindparam("ids", expanding=True)))
        .group_by(TRANSFERS.c.reverses_id, ENTRIES.c.account_id, ENTRIES.c.direction)
    )
    return list(_conn(tx).execute(query, {"ids": list(transfer_ids)}))


def reversal_ids(tx: Tx, transfer_ids: Sequence[str]) -> list[sa.Row[Any]]:
    query = (
        select(TRANSFERS.c.reverses_id, TRANSFERS.c.id)
        .where(TRANSFERS.c.reverses_id.in_(bindparam("ids", expanding=True)))
        .order_by(TRANSFERS.c.created_at, TRANSFERS.c.id)
    )
    return list(_conn(tx).execute(query, {"ids": list(transfer_ids)}))


_SET_BALANCE = (
    sa.update(BALANCES)
    .where(
        BALANCES.c.account_id == bindparam("k_account"), BALANCES.c.shard == bindparam("k_shard")
    )
    .values(
        debits_posted=bindparam("v_dp"),
        credits_posted=bindparam("v_cp"),
        debits_pending=bindparam("v_dpp"),
        credits_pending=bindparam("v_cpp"),
    )
)
_ADD_TO_BALANCE = (
    sa.update(BALANCES)
    .where(
        BALANCES.c.account_id == bindparam("k_account"), BALANCES.c.shard == bindparam("k_shard")
    )
    .values(
        debits_posted=BALANCES.c.debits_posted + bindparam("v_dp"),
        credits_posted=BALANCES.c.credits_posted + bindparam("v_cp"),
        debits_pending=BALANCES.c.debits_pending + bindparam("v_dpp"),
        credits_pending=BALANCES.c.credits_pending + bindparam("v_cpp"),
    )
)


def _balance_params(items: Iterable[tuple[str, int, Sequence[int]]]) -> list[dict[str, Any]]:
    return [
        {
            "k_account": account_id,
            "k_shard": shard,
            "v_dp": values[0],
            "v_cp": values[1],
            "v_dpp": values[2],
            "v_cpp": values[3],
        }
        for account_id, shard, values in items
    ]


#: The order of the fields in the rows the transfer engine hands to ``write_journal`` (tuples:
#: a batch builds hundreds of them). What the whole batch shares (the time, the actor, the
#: linked batch's id) is passed once; ``effective_at`` None means now.
TRANSFER_ROW: Final = (
    "id",
    "kind",
    "reason_code",
    "metadata",
    "effective_at",
    "pending_id",
    "reverses_id",
    "expires_at",
    "request",
)
ENTRY_ROW: Final = (
    "transfer_id",
    "account_id",
    "shard",
    "currency",
    "direction",
    "phase",
    "amount_minor",
    "effective_at",
)
FAILURE_ROW: Final = ("id", "kind", "code", "message", "param", "request")
HOLD_ROW: Final = ("transfer_id", "expires_at")


def write_journal(
    tx: Tx,
    *,
    now: datetime,
    actor: str,
    batch_id: str | None,
    transfers: Sequence[Sequence[Any]],
    entries: Sequence[Sequence[Any]],
    failures: Sequence[Sequence[Any]],
    balances_set: Sequence[tuple[str, int, Sequence[int]]],
    balances_added: Sequence[tuple[str, int, Sequence[int]]],
    holds_opened: Sequence[Sequence[Any]],
    holds_closed: Sequence[str],
) -> bool:
    """Write one batch's outcome: the journal rows in bulk, then the balances. Always True:
    this path looks the ids up before deciding (see :mod:`.repository_pg` for the other way).

    Rows are tuples in the order of :data:`TRANSFER_ROW`, :data:`ENTRY_ROW`,
    :data:`FAILURE_ROW` and :data:`HOLD_ROW`. Transfers go in id order and shard increments in
    (account, shard) order, so concurrent batches meet on any shared row in the same order.
    """
    conn = _conn(tx)
    if transfers:
        shared = {"created_at": now, "batch_id": batch_id, "actor": actor}
        rows = [_with_now(TRANSFER_ROW, row, now) | shared for row in transfers]
        conn.execute(sa.insert(TRANSFERS), _insert_order(rows))
    if entries:
        conn.execute(
            sa.insert(ENTRIES),
            [_with_now(ENTRY_ROW, row, now) | {"created_at": now} for row in entries],
        )
    if failures:
        shared = {"failed_at": now, "batch_id": batch_id, "actor": actor}
        rows = [dict(zip(FAILURE_ROW, row, strict=True)) | shared for row in failures]
        conn.execute(sa.insert(FAILURES), sorted(rows, key=lambda row: row["id"]))
    if holds_opened:
        conn.execute(
            sa.insert(OPEN_HOLDS), [dict(zip(HOLD_ROW, row, strict=True)) for row in holds_opened]
        )
    if holds_closed:
        conn.execute(
            sa.delete(OPEN_HOLDS).where(
                OPEN_HOLDS.c.transfer_id.in_(bindparam("ids", expanding=True))
            ),
            {"ids": sorted(holds_closed)},
        )
    if balances_set:
        conn.execute(_SET_BALANCE, _balance_params(balances_set))
    if balances_added:
        conn.execute(_ADD_TO_BALANCE, _balance_params(sorted(balances_added)))
    return True


def _with_now(fields: Sequence[str], row: Sequence[Any], now: datetime) -> dict[str, Any]:
    values = dict(zip(fields, row, strict=True))
    if values["effective_at"] is None:
        values["effective_at"] = now
    return values


def _insert_order(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Id order, unless a row references another row of the same batch (a hold posted in the
    batch that created it): then batch order, which already has every target first."""
    ids = {row["id"] for row in rows}
    if any(row["pending_id"] in ids or row["reverses_id"] in ids for row in rows):
        return list(rows)
    return sorted(rows, key=lambda row: row["id"])


def due_hold_ids(tx: Tx, now: datetime, limit: int) -> list[str]:
    query = (
        select(OPEN_HOLDS.c.transfer_id)
        .where(OPEN_HOLDS.c.expires_at <= now)
        .order_by(OPEN_HOLDS.c.expires_at, OPEN_HOLDS.c.transfer_id)
        .limit(limit)
    )
    return [row[0] for row in _conn(tx).execute(query)]


# Reads ------------------------------------------------------------------------------------


def transfers(tx: Tx, transfer_ids: Sequence[str]) -> list[sa.Row[Any]]:
    if not transfer_ids:
        return []
    query = select(*TRANSFERS.c).where(TRANSFERS.c.id.in_(bindparam("ids", expanding=True)))
    return list(_conn(tx).execute(query, {"ids": list(transfer_ids)}))


def balance_totals(tx: Tx, account_id: str) -> tuple[int, int, int, int]:
    query = select(*(func.coalesce(func.sum(column), 0) for column in _BALANCE_VALUES)).where(
        BALANCES.c.account_id == account_id
    )
    row = _conn(tx).execute(query).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _sum_where(direction: str, phase: str) -> Any:
    matches = sa.and_(ENTRIES.c.direction == direction, ENTRIES.c.phase == phase)
    return func.coalesce(func.sum(sa.case((matches, ENTRIES.c.amount_minor), else_=0)), 0)


_AS_OF_SUMS = (
    _sum_where("debit", "posted"),
    _sum_where("credit", "posted"),
    _sum_where("debit", "pending"),
    _sum_where("credit", "pending"),
)


def balance_as_of(
    tx: Tx, account_id: str, as_of: datetime, known_at: datetime | None
) -> tuple[int, int, int, int]:
    query = select(*_AS_OF_SUMS).where(
        ENTRIES.c.account_id == account_id, ENTRIES.c.effective_at <= as_of
    )
    if known_at is not None:
        query = query.where(ENTRIES.c.created_at <= known_at)
    row = _conn(tx).execute(query).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def entries_page(tx: Tx, account_id: str, request: PageRequest) -> list[sa.Row[Any]]:
    """An account's entries newest first, keyed by the entry's integer id."""
    query = select(*ENTRIES.c).where(ENTRIES.c.account_id == account_id)
    key = ENTRIES.c.id
    after = _entry_cursor(request.starting_after)
    before = _entry_cursor(request.ending_before)
    if after is not None:
        query = query.where(key < after).order_by(key.desc())
    elif before is not None:
        query = query.where(key > before).order_by(key.asc())
    else:
        query = query.order_by(key.desc())
    rows = list(_conn(tx).execute(query.limit(request.limit + 1)))
    if before is not None:
        rows = list(reversed(rows[: request.limit])) + rows[request.limit :]
    return rows


def _entry_cursor(cursor: str | None) -> int | None:
    return None if cursor is None else int(cursor.removeprefix("lent_"))
