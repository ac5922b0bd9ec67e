"""Domain events for the ledger's notable outcomes (they feed webhooks and the console timeline).

Holds (created, posted, voided, expired), reversals and recorded failures are notable. Plain
transfers are not evented here: they are the ledger's volume, and the domain that causes one (a
grant issued, an invoice paid) emits its own business event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from tallybook.db import Tx
from tallybook.ledger.service.state import AccountState
from tallybook.ledger.values import (
    LedgerOp,
    TransferKind,
    TransferRequest,
    TransferResult,
    TransferStatus,
)
from tallybook.work import events

EVENT_BY_KIND: Final = {
    TransferKind.PENDING: "ledger_hold.created",
    TransferKind.POST_PENDING: "ledger_hold.posted",
    TransferKind.VOID_PENDING: "ledger_hold.voided",
    TransferKind.EXPIRE_PENDING: "ledger_hold.expired",
    TransferKind.REVERSAL: "ledger_transfer.reversed",
}


def _customer_of(account_ids: Sequence[str], accounts: Mapping[str, AccountState]) -> str | None:
    for account_id in account_ids:
        account = accounts.get(account_id)
        if account is not None and account.owner_id is not None:
            return account.owner_id
    return None


def emit_outcomes(
    tx: Tx,
    ops: Sequence[LedgerOp],
    results: Sequence[TransferResult],
    accounts: Mapping[str, AccountState],
) -> None:
    for op, result in zip(ops, results, strict=True):
        if result.status is TransferStatus.CREATED and result.transfer is not None:
            event_type = EVENT_BY_KIND.get(result.transfer.kind)
            if event_type is None:
                continue
            transfer = result.transfer
            legs = [
                {
                    "account_id": e.account_id,
                    "direction": e.direction,
                    "phase": e.phase,
                    "amount_minor": e.amount_minor,
                    "currency": e.currency,
                }
                for e in transfer.entries
            ]
            data: dict[str, Any] = {
                "transfer_id": transfer.id,
                "reason_code": transfer.reason_code,
                "pending_id": transfer.pending_id,
                "reverses_id": transfer.reverses_id,
                "legs": legs,
            }
            customer = _customer_of([e.account_id for e in transfer.entries], accounts)
            events.emit(tx, event_type, customer_id=customer, object_id=transfer.id, data=data)
        elif result.recorded_failure and not result.replayed:
            account_ids = (
                [leg.account_id for leg in op.legs] if isinstance(op, TransferRequest) else []
            )
            events.emit(
                tx,
                "ledger_transfer.failed",
                customer_id=_customer_of(account_ids, accounts),
                object_id=op.id,
                data={"transfer_id": op.id, "kind": op.kind, "code": result.code},
            )
