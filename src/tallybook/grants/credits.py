"""What invoicing (and reservations) call: the live credit sources of a customer, and posting
the credits an invoice consumes.

Invoicing, per ADR 0002::

    sources = grants.service.credit_sources(tx, customer_id, at=period_end, meter_id=meter.id)
    applications = grants.domain.burn_down(sources, [Demand.units(asset, billable, key=line)])
    ...                                       # price the billable quantity left
    grants.service.apply_credits(tx, applications, invoice_id=invoice.id)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tallybook.catalog import meters as catalog_meters
from tallybook.db import Tx
from tallybook.grants import accounts, repository
from tallybook.grants.domain import (
    USAGE_CREDIT_CONSUMED,
    CreditApplication,
    CreditSource,
    GrantKind,
    GrantSource,
    burn_order,
    invoice_credit_transfer_id,
)
from tallybook.grants.errors import GrantCode
from tallybook.grants.models import Grant
from tallybook.kit.assets import unit_asset_for_meter_key
from tallybook.kit.errors import Conflict, InvalidRequest
from tallybook.kit.invariant import invariant
from tallybook.kit.money import Money, normalize_currency
from tallybook.ledger import service as ledger
from tallybook.ledger.rejections import Rejection
from tallybook.ledger.values import Leg, TransferRequest, TransferResult, TransferStatus
from tallybook.work import events


def asset_of(tx: Tx, *, currency: str | None, meter_id: str | None) -> str | None:
    """The ledger asset for a currency or a meter (its key's unit asset)."""
    if currency is not None and meter_id is not None:
        raise InvalidRequest(
            GrantCode.APPLICATION_INVALID, "pass currency or meter_id, not both", param="meter_id"
        )
    if currency is not None:
        return normalize_currency(currency)
    if meter_id is not None:
        return unit_asset_for_meter_key(catalog_meters.get_meter(tx, meter_id).key)
    return None


def source_of(grant: Grant, available_minor: int) -> CreditSource:
    return CreditSource(
        grant_id=grant.id,
        customer_id=grant.customer_id,
        account_id=grant.account_id,
        kind=GrantKind(grant.kind),
        source=GrantSource(grant.source),
        asset=grant.asset,
        currency=grant.currency,
        meter_id=grant.meter_id,
        priority=grant.priority,
        effective_at=grant.effective_at,
        expires_at=grant.expires_at,
        available_minor=available_minor,
    )


def credit_sources(
    tx: Tx,
    customer_id: str,
    *,
    at: datetime,
    currency: str | None = None,
    meter_id: str | None = None,
) -> list[CreditSource]:
    """The customer's grants usable at ``at`` (active, effective, not expired) that still
    hold something, with their ledger balances, in burn-down order. ``currency`` narrows to
    monetary grants in it; ``meter_id`` to usage grants of that meter's unit asset (every
    version of the meter's key shares it)."""
    asset = asset_of(tx, currency=currency, meter_id=meter_id)
    sources = []
    for grant in repository.live_grants(tx, customer_id, at=at, asset=asset):
        available = ledger.balance(tx, grant.account_id).available.amount_minor
        if available > 0:
            sources.append(source_of(grant, available))
    return sorted(sources, key=burn_order)


@dataclass(frozen=True, slots=True)
class _Posting:
    grant: Grant
    amount_minor: int


def _postings(tx: Tx, applications: Sequence[CreditApplication]) -> list[_Posting]:
    """One posting per grant (several demands may draw on one grant), in first-seen order."""
    totals: dict[str, int] = {}
    for index, application in enumerate(applications):
        if application.amount_minor <= 0:
            raise InvalidRequest(
                GrantCode.APPLICATION_INVALID,
                "an application moves a positive amount",
                param=f"applications[{index}].amount_minor",
            )
        totals[application.grant_id] = totals.get(application.grant_id, 0) + (
            application.amount_minor
        )
    grants = repository.grants_by_id(tx, list(totals))
    postings = []
    for index, application in enumerate(applications):
        grant = grants.get(application.grant_id)
        if grant is None or grant.account_id != application.account_id:
            raise InvalidRequest(
                GrantCode.APPLICATION_INVALID,
                f"no grant {application.grant_id} with wallet {application.account_id}",
                param=f"applications[{index}].grant_id",
            )
        if grant.id in totals:
            postings.append(_Posting(grant, totals.pop(grant.id)))
    return postings


def _failure(results: Sequence[TransferResult]) -> Exception:
    failed = [r for r in results if r.status is TransferStatus.FAILED]
    first = next((r for r in failed if r.code is not Rejection.LINKED_EVENT_FAILED), failed[0])
    if first.code is Rejection.EXCEEDS_CREDITS:
        return Conflict(
            GrantCode.BALANCE_INSUFFICIENT,
            "a grant no longer holds what the applications take (it was used, voided or "
            "expired since credit_sources was read): read the sources again",
            param="applications",
        )
    return first.error()


def apply_credits(tx: Tx, applications: Sequence[CreditApplication], *, invoice_id: str) -> None:
    """Post the credits an invoice consumes, all or nothing, idempotent by transfer id:

    - monetary: ``icr:<invoice>:<grant>``: Dr the grant's ``credit_grant`` wallet, Cr the
      customer's ``accounts_receivable``;
    - usage: ``iuc:<invoice>:<grant>``: Dr the ``usage_credit_grant`` wallet, Cr
      ``usage_credit_consumed``.

    Calling it again for the same invoice with the same applications changes nothing; with
    different amounts it is an ``exists_with_different_legs`` idempotency error. If a wallet
    holds less than asked (the ledger's limit refuses it) this raises
    ``grant_balance_insufficient`` and the caller's transaction must roll back (nothing of it
    is recorded then), re-read the sources and burn down again."""
    if not applications:
        return
    postings = _postings(tx, applications)
    requests = []
    for posting in postings:
        grant = posting.grant
        amount = Money(posting.amount_minor, grant.asset)
        kind = GrantKind(grant.kind)
        if kind is GrantKind.MONETARY:
            invariant(grant.currency is not None, "a monetary grant has a currency")
            target = accounts.accounts_receivable(tx, grant.customer_id, grant.asset)
            reason_code = "grant.credit_applied"
        else:
            target = accounts.system(tx, USAGE_CREDIT_CONSUMED, grant.asset)
            reason_code = "grant.usage_credit_applied"
        requests.append(
            TransferRequest(
                id=invoice_credit_transfer_id(invoice_id, grant.id, kind),
                legs=[Leg.debit(grant.account_id, amount), Leg.credit(target.id, amount)],
                reason_code=reason_code,
                metadata={"invoice_id": invoice_id, "grant_id": grant.id},
            )
        )
    results = ledger.create_linked_batch(tx, requests)
    if any(r.status is TransferStatus.FAILED for r in results):
        raise _failure(results)
    for posting, result in zip(postings, results, strict=True):
        if result.status is TransferStatus.CREATED:
            events.emit(
                tx,
                "grant.applied",
                customer_id=posting.grant.customer_id,
                object_id=posting.grant.id,
                data={
                    "grant_id": posting.grant.id,
                    "invoice_id": invoice_id,
                    "asset": posting.grant.asset,
                    "amount_minor": posting.amount_minor,
                },
            )
