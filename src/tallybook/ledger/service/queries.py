"""Reads: a transfer with its legs, an account's balance (now or as of an instant), entries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Row

from tallybook.db import Tx
from tallybook.kit.clock import ensure_utc
from tallybook.kit.errors import CommonCode, InvalidRequest, NotFound
from tallybook.kit.money import Money
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.ledger import repository
from tallybook.ledger.rejections import LedgerCode
from tallybook.ledger.service.accounts import get_account
from tallybook.ledger.values import (
    HOLD_STATUS_BY_RESOLUTION,
    Balance,
    Direction,
    Entry,
    HoldStatus,
    Phase,
    Transfer,
    TransferKind,
)

ENTRY_ID_PREFIX: Final = "lent_"


def entry_public_id(entry_id: int) -> str:
    return f"{ENTRY_ID_PREFIX}{entry_id}"


def entry_of_row(row: Row[Any]) -> Entry:
    return Entry(
        transfer_id=row.transfer_id,
        account_id=row.account_id,
        direction=Direction(row.direction),
        phase=Phase(row.phase),
        amount_minor=row.amount_minor,
        currency=row.currency,
        effective_at=row.effective_at,
        created_at=row.created_at,
        shard=row.shard,
        id=row.id,
    )


def transfers_by_id(tx: Tx, transfer_ids: Sequence[str]) -> dict[str, Transfer]:
    """Stored transfers with their entries, hold status and reversals (missing ids are absent)."""
    rows = repository.transfers(tx, list(transfer_ids))
    if not rows:
        return {}
    ids = [row.id for row in rows]
    entries: dict[str, list[Entry]] = {transfer_id: [] for transfer_id in ids}
    for row in repository.entries_of(tx, ids):
        entries[row.transfer_id].append(entry_of_row(row))
    holds = [row.id for row in rows if row.kind == TransferKind.PENDING]
    resolved = repository.resolutions(tx, holds)
    reversals: dict[str, list[str]] = {}
    for row in repository.reversal_ids(tx, ids):
        reversals.setdefault(row.reverses_id, []).append(row.id)
    result: dict[str, Transfer] = {}
    for row in rows:
        hold_status = None
        resolved_by = None
        if row.kind == TransferKind.PENDING:
            hold_status = HoldStatus.PENDING
            if row.id in resolved:
                resolved_by, kind = resolved[row.id]
                hold_status = HOLD_STATUS_BY_RESOLUTION[TransferKind(kind)]
        result[row.id] = Transfer(
            id=row.id,
            kind=TransferKind(row.kind),
            reason_code=row.reason_code,
            metadata=dict(row.metadata),
            effective_at=row.effective_at,
            created_at=row.created_at,
            entries=tuple(entries[row.id]),
            pending_id=row.pending_id,
            reverses_id=row.reverses_id,
            expires_at=row.expires_at,
            batch_id=row.batch_id,
            actor=row.actor,
            hold_status=hold_status,
            resolved_by_id=resolved_by,
            reversed_by_ids=tuple(reversals.get(row.id, ())),
        )
    return result


def get_transfer(tx: Tx, transfer_id: str) -> Transfer:
    transfer = transfers_by_id(tx, [transfer_id]).get(transfer_id)
    if transfer is None:
        raise NotFound("ledger transfer", transfer_id)
    return transfer


def balance(
    tx: Tx, account_id: str, as_of: datetime | None = None, *, known_at: datetime | None = None
) -> Balance:
    """The balance now (from the stored totals), or as of a past instant (from the entries).

    ``as_of`` counts entries *effective* at or before that instant, including ones written later
    with a backdated ``effective_at``: the books as they now stand about that instant. Add
    ``known_at`` to see them as they stood at an earlier moment (entries written by then only),
    for example to reproduce a statement exactly as it was issued.
    """
    account = get_account(tx, account_id)
    now = tx.now()
    if as_of is None and known_at is None:
        values = repository.balance_totals(tx, account.id)
    else:
        instant = ensure_utc(as_of, param="as_of") if as_of is not None else now
        if instant > now:
            raise InvalidRequest(
                LedgerCode.AS_OF_IN_FUTURE, "as_of must not be in the future", param="as_of"
            )
        if known_at is not None:
            known_at = ensure_utc(known_at, param="known_at")
            if known_at > now:
                raise InvalidRequest(
                    LedgerCode.KNOWN_AT_INVALID,
                    "known_at must not be in the future",
                    param="known_at",
                )
        values = repository.balance_as_of(tx, account.id, instant, known_at)
        as_of = instant
    currency = account.currency
    return Balance(
        account_id=account.id,
        currency=currency,
        kind=account.kind,
        as_of=as_of,
        debits_posted=Money(values[0], currency),
        credits_posted=Money(values[1], currency),
        debits_pending=Money(values[2], currency),
        credits_pending=Money(values[3], currency),
    )


def entries(tx: Tx, account_id: str, request: PageRequest) -> Page[Entry]:
    """An account's entries, newest first; cursors are entry ids (``lent_…``)."""
    account = get_account(tx, account_id)
    for name, cursor in (
        ("starting_after", request.starting_after),
        ("ending_before", request.ending_before),
    ):
        if cursor is not None and not _is_entry_id(cursor):
            raise InvalidRequest(
                CommonCode.CURSOR_INVALID, f"{name} must be an entry id (lent_…)", param=name
            )
    rows = repository.entries_page(tx, account.id, request)
    return page_from_rows([entry_of_row(row) for row in rows], request)


def _is_entry_id(cursor: str) -> bool:
    digits = cursor.removeprefix(ENTRY_ID_PREFIX)
    return cursor.startswith(ENTRY_ID_PREFIX) and digits.isdigit() and len(digits) <= 19
