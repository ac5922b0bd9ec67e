"""``/v1/ledger/…``: accounts, balances, entries, transfers (one or a batch), holds, reversals.

A transfer refused for a transient reason (not enough balance) answers 409 *and* commits: the
failure is stored under the transfer id, so retrying the same id answers the same 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Depends, Query
from starlette.responses import Response

from tallybook.db import Tx
from tallybook.http.edge import Edge, Reply, make_router, page_params, require
from tallybook.http.errors import ERROR_RESPONSES
from tallybook.http.responses import ListEnvelope, list_envelope
from tallybook.kit.pagination import PageRequest
from tallybook.ledger import service
from tallybook.ledger.schemas import (
    LedgerAccountCreateBody,
    LedgerAccountOut,
    LedgerBalanceOut,
    LedgerEntryOut,
    LedgerPostBody,
    LedgerReverseBody,
    LedgerTransferBatchBody,
    LedgerTransferBatchOut,
    LedgerTransferCreateBody,
    LedgerTransferOut,
    LedgerTransferResultOut,
    LedgerVoidBody,
)
from tallybook.ledger.values import LedgerOp, TransferResult, TransferStatus

accounts_router = make_router("/v1/ledger/accounts", tags=["ledger"])
transfers_router = make_router("/v1/ledger/transfers", tags=["ledger"])

READ = require("ledger:read")
WRITE = require("ledger:write")


# Accounts ---------------------------------------------------------------------------------


@accounts_router.post("", response_model=LedgerAccountOut, responses=ERROR_RESPONSES)
def open_account(body: LedgerAccountCreateBody, edge: Edge = Depends(WRITE)) -> Response:
    """Get or create the account with this code, currency, customer and reference."""
    return edge.write(
        lambda tx: LedgerAccountOut.of(service.open_account(tx, body.to_spec())), fingerprint=body
    )


@accounts_router.get("", response_model=ListEnvelope[LedgerAccountOut], responses=ERROR_RESPONSES)
def list_accounts(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    customer: str | None = Query(None),
    code: str | None = Query(None),
    currency: str | None = Query(None),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = service.list_accounts(tx, page, customer_id=customer, code=code, currency=currency)
        return list_envelope(
            result, "/v1/ledger/accounts", [LedgerAccountOut.of(a) for a in result.data]
        )

    return edge.read(run)


@accounts_router.get("/{account_id}", response_model=LedgerAccountOut, responses=ERROR_RESPONSES)
def get_account(account_id: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: LedgerAccountOut.of(service.get_account(tx, account_id)))


@accounts_router.post(
    "/{account_id}/close", response_model=LedgerAccountOut, responses=ERROR_RESPONSES
)
def close_account(account_id: str, edge: Edge = Depends(WRITE)) -> Response:
    """Refuse new transfers to the account (it must have no open holds)."""
    return edge.write(lambda tx: LedgerAccountOut.of(service.close_account(tx, account_id)))


@accounts_router.get(
    "/{account_id}/balance", response_model=LedgerBalanceOut, responses=ERROR_RESPONSES
)
def get_balance(
    account_id: str,
    edge: Edge = Depends(READ),
    as_of: datetime | None = Query(None, description="A past instant (RFC 3339 with offset)"),
    known_at: datetime | None = Query(
        None, description="Count only entries written by then (statements as issued)"
    ),
) -> Response:
    return edge.read(
        lambda tx: LedgerBalanceOut.of(service.balance(tx, account_id, as_of, known_at=known_at))
    )


@accounts_router.get(
    "/{account_id}/entries",
    response_model=ListEnvelope[LedgerEntryOut],
    responses=ERROR_RESPONSES,
)
def list_entries(
    account_id: str, edge: Edge = Depends(READ), page: PageRequest = Depends(page_params)
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = service.entries(tx, account_id, page)
        url = f"/v1/ledger/accounts/{account_id}/entries"
        return list_envelope(result, url, [LedgerEntryOut.of(e) for e in result.data])

    return edge.read(run)


# Transfers --------------------------------------------------------------------------------


def _single(tx: Tx, op: LedgerOp) -> LedgerTransferOut | Reply:
    result: TransferResult = service.create_transfer(tx, op)
    if result.status is TransferStatus.FAILED:
        if result.recorded_failure:
            return Reply(result.error())
        raise result.error()
    assert result.transfer is not None
    return LedgerTransferOut.of(result.transfer)


@transfers_router.post("", response_model=LedgerTransferOut, responses=ERROR_RESPONSES)
def create_transfer(body: LedgerTransferCreateBody, edge: Edge = Depends(WRITE)) -> Response:
    """Create a transfer, or a hold with `pending: true`. The same `id` with the same content
    returns the original; with different content it is an `exists_with_different_*` error."""
    return edge.write(lambda tx: _single(tx, body.to_request()), fingerprint=body)


@transfers_router.post("/batch", response_model=LedgerTransferBatchOut, responses=ERROR_RESPONSES)
def create_batch(body: LedgerTransferBatchBody, edge: Edge = Depends(WRITE)) -> Response:
    """Several transfers in order, each with its own result; `linked: true` applies all or none."""

    def run(tx: Tx) -> LedgerTransferBatchOut:
        requests: list[LedgerOp] = [item.to_request() for item in body.transfers]
        if body.linked:
            results = service.create_linked_batch(tx, requests)
        else:
            results = service.create_transfers(tx, requests)
        return LedgerTransferBatchOut(
            linked=body.linked, data=[LedgerTransferResultOut.of(r) for r in results]
        )

    return edge.write(run, fingerprint=body)


@transfers_router.get("/{transfer_id}", response_model=LedgerTransferOut, responses=ERROR_RESPONSES)
def get_transfer(transfer_id: str, edge: Edge = Depends(READ)) -> Response:
    """A transfer with its legs; for a hold, its status and what resolved it."""
    return edge.read(lambda tx: LedgerTransferOut.of(service.get_transfer(tx, transfer_id)))


@transfers_router.post(
    "/{transfer_id}/post", response_model=LedgerTransferOut, responses=ERROR_RESPONSES
)
def post_hold(transfer_id: str, body: LedgerPostBody, edge: Edge = Depends(WRITE)) -> Response:
    """Post a hold in full, or `amount_minor` of it (the rest is released)."""
    return edge.write(lambda tx: _single(tx, body.to_request(transfer_id)), fingerprint=body)


@transfers_router.post(
    "/{transfer_id}/void", response_model=LedgerTransferOut, responses=ERROR_RESPONSES
)
def void_hold(transfer_id: str, body: LedgerVoidBody, edge: Edge = Depends(WRITE)) -> Response:
    return edge.write(lambda tx: _single(tx, body.to_request(transfer_id)), fingerprint=body)


@transfers_router.post(
    "/{transfer_id}/reverse", response_model=LedgerTransferOut, responses=ERROR_RESPONSES
)
def reverse(transfer_id: str, body: LedgerReverseBody, edge: Edge = Depends(WRITE)) -> Response:
    """Post the mirror of a transfer (or of part of it), linked to it."""
    return edge.write(lambda tx: _single(tx, body.to_request(transfer_id)), fingerprint=body)


routers = [accounts_router, transfers_router]
