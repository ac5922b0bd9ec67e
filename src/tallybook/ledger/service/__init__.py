"""The ledger's service API: what other domains call. Services take a ``Tx`` and never commit.

Accounts::

    open_account(tx, AccountSpec(...)) -> Account          # get-or-create by identity
    get_account(tx, account_id) -> Account
    list_accounts(tx, PageRequest, customer_id=, code=, currency=) -> Page[Account]
    close_account(tx, account_id) -> Account

Transfers (results, never exceptions, for refused transfers)::

    create_transfer(tx, TransferRequest | PostPending | VoidPending | ReverseTransfer) -> TransferResult
    create_transfers(tx, [ops]) -> list[TransferResult]        # each on its own
    create_linked_batch(tx, [ops]) -> list[TransferResult]     # all or nothing
    post_pending(tx, PostPending(...)), void_pending(tx, VoidPending(...))
    reverse_transfer(tx, ReverseTransfer(...))
    expire_due_holds(tx) -> list[TransferResult]

Reads::

    balance(tx, account_id, as_of=None, known_at=None) -> Balance
    entries(tx, account_id, PageRequest) -> Page[Entry]
    get_transfer(tx, transfer_id) -> Transfer
    check_invariants(tx) -> CheckReport
"""

from tallybook.ledger.service.accounts import (
    close_account,
    get_account,
    list_accounts,
    open_account,
)
from tallybook.ledger.service.check import Breach, CheckReport, check_invariants
from tallybook.ledger.service.queries import (
    balance,
    entries,
    entry_public_id,
    get_transfer,
    transfers_by_id,
)
from tallybook.ledger.service.transfers import (
    create_linked_batch,
    create_transfer,
    create_transfers,
    expire_due_holds,
    post_pending,
    reverse_transfer,
    run_expire_holds,
    void_pending,
)

__all__ = [
    "Breach",
    "CheckReport",
    "balance",
    "check_invariants",
    "close_account",
    "create_linked_batch",
    "create_transfer",
    "create_transfers",
    "entries",
    "entry_public_id",
    "expire_due_holds",
    "get_account",
    "get_transfer",
    "list_accounts",
    "open_account",
    "post_pending",
    "reverse_transfer",
    "run_expire_holds",
    "transfers_by_id",
    "void_pending",
]
