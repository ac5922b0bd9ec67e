"""Accounts: get-or-create by identity, read, list, close."""

from __future__ import annotations

import re
from typing import Any, Final

from sqlalchemy import Row

from tallybook.db import Tx
from tallybook.kit.errors import Conflict, IdempotencyError, InvalidRequest, NotFound
from tallybook.kit.ids import ID_PATTERN, new_id
from tallybook.kit.metadata import validate_metadata
from tallybook.kit.money import normalize_currency
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.ledger import repository
from tallybook.ledger.rejections import AccountCode
from tallybook.ledger.values import (
    BALANCE_SHARDS_MAX,
    Account,
    AccountKind,
    AccountSpec,
    OwnerType,
)
from tallybook.work import events

ACCOUNT_CODE_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
REFERENCE_PATTERN: Final = re.compile(r"^[A-Za-z0-9_\-.:]{0,120}$")


def account_of_row(row: Row[Any]) -> Account:
    return Account(
        id=row.id,
        code=row.code,
        currency=row.currency,
        kind=AccountKind(row.kind),
        owner_type=OwnerType(row.owner_type),
        owner_id=row.owner_id,
        reference=row.reference,
        metadata=dict(row.metadata),
        debits_must_not_exceed_credits=bool(row.debits_must_not_exceed_credits),
        credits_must_not_exceed_debits=bool(row.credits_must_not_exceed_debits),
        balance_shards=row.balance_shards,
        closed_at=row.closed_at,
        created_at=row.created_at,
    )


def _validated(tx: Tx, spec: AccountSpec) -> dict[str, Any]:
    if not isinstance(spec.code, str) or not ACCOUNT_CODE_PATTERN.match(spec.code):
        raise InvalidRequest(
            AccountCode.CODE_INVALID,
            "code must be 2-64 characters: a lower-case letter, then a-z 0-9 _",
            param="code",
        )
    currency = normalize_currency(spec.currency, allow_units=True)
    if spec.kind not in tuple(AccountKind):
        kinds = ", ".join(AccountKind)
        raise InvalidRequest(AccountCode.KIND_INVALID, f"kind must be one of {kinds}", param="kind")
    if spec.customer_id is not None:
        if not ID_PATTERN.match(spec.customer_id) or not spec.customer_id.startswith("cus_"):
            raise InvalidRequest(
                AccountCode.OWNER_INVALID,
                "customer must be a customer id (cus_…)",
                param="customer",
            )
        if not repository.customer_exists(tx, spec.customer_id):
            raise InvalidRequest(
                AccountCode.OWNER_NOT_FOUND, f"no customer {spec.customer_id}", param="customer"
            )
    if not isinstance(spec.reference, str) or not REFERENCE_PATTERN.match(spec.reference):
        raise InvalidRequest(
            AccountCode.REFERENCE_INVALID,
            "reference must be at most 120 characters of letters, digits and _-.:",
            param="reference",
        )
    limited = spec.debits_must_not_exceed_credits or spec.credits_must_not_exceed_debits
    if spec.debits_must_not_exceed_credits and spec.credits_must_not_exceed_debits:
        raise InvalidRequest(
            AccountCode.LIMITS_EXCLUSIVE,
            "an account limits its debits or its credits, not both",
            param="credits_must_not_exceed_debits",
        )
    shards = spec.balance_shards
    if (
        isinstance(shards, bool)
        or not isinstance(shards, int)
        or not 1 <= shards <= BALANCE_SHARDS_MAX
    ):
        raise InvalidRequest(
            AccountCode.SHARDS_INVALID,
            f"balance_shards must be 1 to {BALANCE_SHARDS_MAX}",
            param="balance_shards",
        )
    if shards > 1 and limited:
        raise InvalidRequest(
            AccountCode.SHARDED_WITH_LIMITS,
            "a limited account needs one balance row to check its limit; use balance_shards 1",
            param="balance_shards",
        )
    return {
        "code": spec.code,
        "currency": currency,
        "kind": str(AccountKind(spec.kind)),
        "owner_type": str(OwnerType.CUSTOMER if spec.customer_id else OwnerType.SYSTEM),
        "owner_id": spec.customer_id,
        "reference": spec.reference,
        "metadata": validate_metadata(spec.metadata),
        "debits_must_not_exceed_credits": bool(spec.debits_must_not_exceed_credits),
        "credits_must_not_exceed_debits": bool(spec.credits_must_not_exceed_debits),
        "balance_shards": shards,
    }


def open_account(tx: Tx, spec: AccountSpec) -> Account:
    """Get or create the account with this identity (code, currency, owner, reference).

    Idempotent and safe under concurrency: two transactions opening the same account get the
    same one. Opening an existing identity with a different kind, limits or shard count is an
    ``account_exists_with_different_*`` conflict; ``metadata`` is kept from the first opening.
    """
    values = _validated(tx, spec)
    now = tx.now()
    account_id = new_id("acc")
    inserted = repository.insert_account(
        tx, {**values, "id": account_id, "closed_at": None, "created_at": now}
    )
    if inserted:
        repository.insert_balance_rows(
            tx,
            [
                {
                    "account_id": account_id,
                    "shard": shard,
                    "debits_posted": 0,
                    "credits_posted": 0,
                    "debits_pending": 0,
                    "credits_pending": 0,
                    "debits_must_not_exceed_credits": values["debits_must_not_exceed_credits"],
                    "credits_must_not_exceed_debits": values["credits_must_not_exceed_debits"],
                    "closed": False,
                }
                for shard in range(values["balance_shards"])
            ],
        )
    row = repository.account_by_identity(
        tx,
        code=values["code"],
        currency=values["currency"],
        owner_id=values["owner_id"],
        reference=values["reference"],
    )
    assert row is not None
    account = account_of_row(row)
    if inserted:
        events.emit(
            tx,
            "ledger_account.created",
            customer_id=account.owner_id,
            object_id=account.id,
            data={"code": account.code, "currency": account.currency, "kind": account.kind},
        )
    else:
        _check_same(account, values)
    return account


def _check_same(account: Account, values: dict[str, Any]) -> None:
    if account.kind != values["kind"]:
        raise IdempotencyError(
            AccountCode.EXISTS_WITH_DIFFERENT_KIND,
            f"{account.id} exists with kind {account.kind}",
            param="kind",
        )
    if (
        account.debits_must_not_exceed_credits != values["debits_must_not_exceed_credits"]
        or account.credits_must_not_exceed_debits != values["credits_must_not_exceed_debits"]
    ):
        raise IdempotencyError(
            AccountCode.EXISTS_WITH_DIFFERENT_LIMITS,
            f"{account.id} exists with different limit flags",
            param="debits_must_not_exceed_credits",
        )
    if account.balance_shards != values["balance_shards"]:
        raise IdempotencyError(
            AccountCode.EXISTS_WITH_DIFFERENT_BALANCE_SHARDS,
            f"{account.id} exists with {account.balance_shards} balance shards",
            param="balance_shards",
        )


def get_account(tx: Tx, account_id: str) -> Account:
    row = repository.account(tx, account_id)
    if row is None:
        raise NotFound("ledger account", account_id)
    return account_of_row(row)


def list_accounts(
    tx: Tx,
    request: PageRequest,
    *,
    customer_id: str | None = None,
    code: str | None = None,
    currency: str | None = None,
) -> Page[Account]:
    rows = repository.accounts_page(
        tx,
        request,
        owner_id=customer_id,
        code=code,
        currency=normalize_currency(currency, allow_units=True) if currency is not None else None,
    )
    return page_from_rows([account_of_row(row) for row in rows], request)


def close_account(tx: Tx, account_id: str) -> Account:
    """Refuse new transfers to the account from now on (idempotent).

    Voids and expiries of its holds are still allowed, but closing waits until it has none:
    a closed account's pending balances are zero. Hot (sharded) accounts can't be closed, which
    is what lets the transfer path read them without a lock.
    """
    if repository.account(tx, account_id) is None:
        raise NotFound("ledger account", account_id)
    repository.lock_for_close(tx, account_id)
    row = repository.account(tx, account_id)
    assert row is not None
    account = account_of_row(row)
    if account.closed_at is not None:
        return account
    if account.is_sharded:
        raise Conflict(
            AccountCode.SHARDED_CANNOT_CLOSE, f"{account.id} is sharded and can't be closed"
        )
    _, _, debits_pending, credits_pending = repository.balance_totals(tx, account.id)
    if debits_pending or credits_pending:
        raise Conflict(
            AccountCode.HAS_PENDING,
            f"{account.id} has open holds; post or void them first",
        )
    repository.set_closed(tx, account.id, tx.now())
    events.emit(
        tx,
        "ledger_account.closed",
        customer_id=account.owner_id,
        object_id=account.id,
        data={"code": account.code, "currency": account.currency},
    )
    return get_account(tx, account.id)
