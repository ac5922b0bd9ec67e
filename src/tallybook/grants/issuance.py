"""Issuing, voiding and expiring credit grants. Every money movement is a ledger transfer in
the caller's transaction (ADR 0002), so a grant's balance is always the ledger's.

Postings (transfer ids are deterministic, so each posting is idempotent):

- issue: ``grant:<id>:issue``: Dr the source (``promotion_expense``; ``accounts_receivable``
  for purchased credits; ``usage_credit_issuance`` for usage credits), Cr the grant's wallet;
- void / expire: ``grant:<id>:void`` / ``grant:<id>:expire``: Dr the wallet, Cr where the
  remainder goes (``promotion_expense``, ``credit_breakage``, ``usage_credit_issuance``);
- sweep: ``grant:<id>:sweep:<n>``: a remainder released into an ended grant's wallet later (a
  money reservation's hold voided after the grant ended) goes the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tallybook.catalog.meter_models import Aggregation, Meter
from tallybook.customers import service as customers
from tallybook.customers.models import Customer
from tallybook.db import Tx
from tallybook.grants import accounts, repository
from tallybook.grants.domain import (
    PRIORITY_DEFAULT,
    PRIORITY_MAX,
    REASON_LENGTH_MAX,
    GrantKind,
    GrantSource,
    GrantStatus,
    end_transfer_id,
    funding_code,
    issue_transfer_id,
    return_code,
    rollover_transfer_id,
    sweep_transfer_id,
)
from tallybook.grants.errors import GrantCode
from tallybook.grants.models import Grant
from tallybook.kit.assets import quantity_to_minor, unit_asset_for_meter_key
from tallybook.kit.clock import ensure_utc
from tallybook.kit.errors import Conflict, InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.invariant import invariant
from tallybook.kit.metadata import validate_metadata
from tallybook.kit.money import AMOUNT_MINOR_MAX, Money, check_amount_minor, normalize_currency
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.kit.quantity import to_decimal
from tallybook.ledger import service as ledger
from tallybook.ledger.values import Balance, Leg, TransferRequest
from tallybook.metering import service as metering
from tallybook.work import events

#: Usage credits add up in the ledger: only meters whose usage adds up can be credited.
COUNTABLE_AGGREGATIONS = frozenset({Aggregation.SUM, Aggregation.COUNT})


@dataclass(frozen=True, slots=True)
class GrantInput:
    """A grant to issue. Monetary grants take ``amount_minor`` (and ``currency``, default the
    customer's); usage grants take ``meter`` (id or key) and ``quantity`` (units)."""

    customer: str
    kind: str = GrantKind.MONETARY
    amount_minor: int | None = None
    currency: str | None = None
    meter: str | None = None
    quantity: Decimal | int | str | None = None
    source: str = GrantSource.GOODWILL
    priority: int = PRIORITY_DEFAULT
    effective_at: datetime | None = None
    expires_at: datetime | None = None
    reason: str | None = None
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class GrantView:
    """A grant with its ledger balance: ``remaining`` is what it can still give (posted minus
    holds), ``held`` what money reservations hold on it."""

    grant: Grant
    balance: Balance

    @property
    def remaining_minor(self) -> int:
        return self.balance.available.amount_minor

    @property
    def held_minor(self) -> int:
        return self.balance.debits_pending.amount_minor

    @property
    def posted_minor(self) -> int:
        return self.balance.posted.amount_minor


def _enum(enum: type[Any], value: object, code: StrEnum, param: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(str(item) for item in enum)
        raise InvalidRequest(code, f"{param} must be one of {choices}", param=param) from None


def check_reason(reason: object, *, required: bool = True) -> str:
    if reason is None or (isinstance(reason, str) and not reason.strip()):
        if not required:
            return ""
        raise InvalidRequest(
            GrantCode.REASON_REQUIRED,
            "say why (reason): every manual grant records who issued it and why",
            param="reason",
        )
    if not isinstance(reason, str) or len(reason) > REASON_LENGTH_MAX:
        raise InvalidRequest(
            GrantCode.REASON_REQUIRED,
            f"reason must be text of at most {REASON_LENGTH_MAX} characters",
            param="reason",
        )
    return reason.strip()


def check_priority(priority: object) -> int:
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not (0 <= priority <= PRIORITY_MAX)
    ):
        raise InvalidRequest(
            GrantCode.PRIORITY_INVALID,
            f"priority must be an integer from 0 (first) to {PRIORITY_MAX}",
            param="priority",
        )
    return priority


def countable_meter(tx: Tx, meter_ref: str | None, *, param: str = "meter") -> Meter:
    if not meter_ref:
        raise InvalidRequest(
            GrantCode.METER_REQUIRED, "a usage grant names the meter it credits", param=param
        )
    try:
        meter = metering.resolve_meter(tx, meter_ref, param=param)
    except NotFound:
        raise InvalidRequest(
            GrantCode.METER_NOT_FOUND, f"no such meter: '{meter_ref}'", param=param
        ) from None
    if meter.aggregation not in COUNTABLE_AGGREGATIONS:
        raise InvalidRequest(
            GrantCode.METER_NOT_COUNTABLE,
            f"meter {meter.key} aggregates by {meter.aggregation}; usage credits need a sum or "
            "count meter",
            param=param,
        )
    return meter


def positive_amount(value: object, *, param: str = "amount_minor") -> int:
    amount = check_amount_minor(value, param=param)
    if amount <= 0:
        raise InvalidRequest(GrantCode.AMOUNT_INVALID, f"{param} must be positive", param=param)
    return amount


def positive_units(value: object, *, param: str = "quantity") -> int:
    quantity = to_decimal(value, param=param)
    if quantity <= 0:
        raise InvalidRequest(GrantCode.AMOUNT_INVALID, f"{param} must be positive", param=param)
    minor = quantity_to_minor(quantity, param=param)
    if minor > AMOUNT_MINOR_MAX:
        raise InvalidRequest(GrantCode.AMOUNT_INVALID, f"{param} is too large", param=param)
    return minor


def grant_currency(tx: Tx, customer: Customer, currency: object) -> str:
    """A monetary grant is in the customer's billing currency (set it if still unset)."""
    if currency is None:
        if customer.currency is None:
            raise InvalidRequest(
                GrantCode.CURRENCY_MISMATCH,
                "the customer has no billing currency yet: pass currency",
                param="currency",
            )
        return customer.currency
    code = normalize_currency(currency)
    if customer.currency is not None and customer.currency != code:
        raise InvalidRequest(
            GrantCode.CURRENCY_MISMATCH,
            f"the customer bills in {customer.currency}; a grant in {code} could never be used",
            param="currency",
        )
    customers.set_currency_if_unset(tx, customer, code)
    return code


@dataclass(frozen=True, slots=True)
class _Checked:
    customer: Customer
    kind: GrantKind
    source: GrantSource
    asset: str
    currency: str | None
    meter_id: str | None
    amount_minor: int
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    reason: str
    metadata: dict[str, str]


def _check(tx: Tx, data: GrantInput, *, reason_required: bool) -> _Checked:
    """The validation ladder; the first failure names the field."""
    customer = customers.resolve(tx, data.customer)
    kind = _enum(GrantKind, data.kind, GrantCode.KIND_INVALID, "kind")
    source = _enum(GrantSource, data.source, GrantCode.SOURCE_INVALID, "source")
    if kind is GrantKind.MONETARY:
        if data.meter is not None or data.quantity is not None:
            raise InvalidRequest(
                GrantCode.METER_NOT_ALLOWED,
                "a monetary grant takes amount_minor and currency, not meter or quantity",
                param="meter" if data.meter is not None else "quantity",
            )
        amount = positive_amount(data.amount_minor)
        currency: str | None = grant_currency(tx, customer, data.currency)
        asset = currency
        meter_id = None
    else:
        if data.amount_minor is not None or data.currency is not None:
            raise InvalidRequest(
                GrantCode.METER_NOT_ALLOWED,
                "a usage grant takes meter and quantity, not amount_minor or currency",
                param="amount_minor" if data.amount_minor is not None else "currency",
            )
        if source is GrantSource.PURCHASE:
            raise InvalidRequest(
                GrantCode.SOURCE_INVALID,
                "purchased credits are monetary (they are invoiced); usage credits come from "
                "promotions, goodwill or plans",
                param="source",
            )
        meter = countable_meter(tx, data.meter)
        amount = positive_units(data.quantity)
        asset = unit_asset_for_meter_key(meter.key)
        currency = None
        meter_id = meter.id
    assert asset is not None
    priority = check_priority(data.priority)
    now = tx.now()
    effective_at = ensure_utc(data.effective_at, param="effective_at") if data.effective_at else now
    expires_at = ensure_utc(data.expires_at, param="expires_at") if data.expires_at else None
    if expires_at is not None and (expires_at <= effective_at or expires_at <= now):
        raise InvalidRequest(
            GrantCode.WINDOW_INVALID,
            "expires_at must be after effective_at and in the future",
            param="expires_at",
        )
    return _Checked(
        customer=customer,
        kind=kind,
        source=source,
        asset=asset,
        currency=currency,
        meter_id=meter_id,
        amount_minor=amount,
        priority=priority,
        effective_at=effective_at,
        expires_at=expires_at,
        reason=check_reason(data.reason, required=reason_required),
        metadata=validate_metadata(data.metadata),
    )


def issue_grant(
    tx: Tx,
    data: GrantInput,
    *,
    issued_by: str | None = None,
    grant_id: str | None = None,
    recurring_grant_id: str | None = None,
    period_index: int | None = None,
    rollover_from: Grant | None = None,
    rollover_minor: int = 0,
    promotion_redemption_id: str | None = None,
    reason_required: bool = True,
) -> Grant:
    """Issue a grant and fund its wallet (``grant:<id>:issue``), in the caller's transaction.

    ``issued_by`` defaults to the transaction's actor. ``rollover_from``/``rollover_minor``
    (recurring grants) move part of the previous instance's remainder into this one
    (``grant:<id>:rollover``)."""
    checked = _check(tx, data, reason_required=reason_required)
    now = tx.now()
    grant = Grant(
        id=grant_id or new_id("grt"),
        customer_id=checked.customer.id,
        kind=str(checked.kind),
        asset=checked.asset,
        currency=checked.currency,
        meter_id=checked.meter_id,
        amount_minor=checked.amount_minor + rollover_minor,
        rollover_minor=rollover_minor,
        source=str(checked.source),
        priority=checked.priority,
        effective_at=checked.effective_at,
        expires_at=checked.expires_at,
        status=str(GrantStatus.ACTIVE),
        account_id="",
        issued_by=issued_by or tx.actor,
        reason=checked.reason,
        recurring_grant_id=recurring_grant_id,
        period_index=period_index,
        promotion_redemption_id=promotion_redemption_id,
        metadata_=checked.metadata,
        sweeps=0,
        created_at=now,
        updated_at=now,
    )
    wallet = accounts.wallet(
        tx,
        kind=checked.kind,
        customer_id=grant.customer_id,
        asset=grant.asset,
        grant_id=grant.id,
    )
    grant.account_id = wallet.id
    tx.session.add(grant)
    tx.session.flush()
    funding = accounts.counterpart(
        tx,
        funding_code(checked.kind, checked.source),
        customer_id=grant.customer_id,
        asset=grant.asset,
    )
    amount = Money(checked.amount_minor, grant.asset)
    ledger.create_transfer(
        tx,
        TransferRequest(
            id=issue_transfer_id(grant.id),
            legs=[Leg.debit(funding.id, amount), Leg.credit(wallet.id, amount)],
            reason_code="grant.issue",
            metadata={"grant_id": grant.id, "source": grant.source},
        ),
    ).raise_for_error()
    if rollover_from is not None and rollover_minor > 0:
        moved = Money(rollover_minor, grant.asset)
        ledger.create_transfer(
            tx,
            TransferRequest(
                id=rollover_transfer_id(grant.id),
                legs=[
                    Leg.debit(rollover_from.account_id, moved),
                    Leg.credit(wallet.id, moved),
                ],
                reason_code="grant.rollover",
                metadata={"grant_id": grant.id, "from_grant_id": rollover_from.id},
            ),
        ).raise_for_error()
    events.emit(
        tx,
        "grant.created",
        customer_id=grant.customer_id,
        object_id=grant.id,
        data=grant_event_data(grant),
    )
    return grant


def grant_event_data(grant: Grant) -> dict[str, Any]:
    return {
        "grant": {
            "id": grant.id,
            "kind": grant.kind,
            "source": grant.source,
            "asset": grant.asset,
            "currency": grant.currency,
            "meter_id": grant.meter_id,
            "amount_minor": grant.amount_minor,
            "priority": grant.priority,
            "effective_at": grant.effective_at,
            "expires_at": grant.expires_at,
            "status": grant.status,
            "issued_by": grant.issued_by,
            "reason": grant.reason,
        }
    }


def get_grant(tx: Tx, grant_id: str) -> Grant:
    grant = repository.get_grant(tx, grant_id)
    if grant is None:
        raise NotFound("grant", grant_id)
    return grant


def view(tx: Tx, grant: Grant) -> GrantView:
    return GrantView(grant, ledger.balance(tx, grant.account_id))


def get_view(tx: Tx, grant_id: str) -> GrantView:
    return view(tx, get_grant(tx, grant_id))


def list_views(
    tx: Tx,
    request: PageRequest,
    *,
    customer: str | None = None,
    status: str | None = None,
) -> Page[GrantView]:
    customer_id = customers.resolve(tx, customer).id if customer else None
    if status is not None:
        _enum(GrantStatus, status, GrantCode.NOT_ACTIVE, "status")
    page = page_from_rows(
        repository.grants_page(tx, request, customer_id=customer_id, status=status), request
    )
    return Page(data=[view(tx, grant) for grant in page.data], has_more=page.has_more)


def _return_remainder(tx: Tx, grant: Grant, transfer_id: str, reason_code: str) -> int:
    """Move what the wallet can still give back to where it came from; returns the amount.
    Money held by open reservations stays until they resolve (then it is swept)."""
    remaining = ledger.balance(tx, grant.account_id).available.amount_minor
    if remaining <= 0:
        return 0
    kind, source = GrantKind(grant.kind), GrantSource(grant.source)
    target = accounts.counterpart(
        tx, return_code(kind, source), customer_id=grant.customer_id, asset=grant.asset
    )
    amount = Money(remaining, grant.asset)
    ledger.create_transfer(
        tx,
        TransferRequest(
            id=transfer_id,
            legs=[Leg.debit(grant.account_id, amount), Leg.credit(target.id, amount)],
            reason_code=reason_code,
            metadata={"grant_id": grant.id},
        ),
    ).raise_for_error()
    return remaining


def void_grant(tx: Tx, grant_id: str, *, reason: object) -> Grant:
    """End a grant now; its remainder leaves through the ledger (``grant:<id>:void``).
    Voiding a voided grant again returns it unchanged; an expired one is ``grant_not_active``."""
    text = check_reason(reason)
    grant = repository.get_grant(tx, grant_id, for_update=True)
    if grant is None:
        raise NotFound("grant", grant_id)
    if grant.status == GrantStatus.VOIDED:
        return grant
    if grant.status != GrantStatus.ACTIVE:
        raise Conflict(GrantCode.NOT_ACTIVE, f"grant {grant.id} is {grant.status}", param="grant")
    now = tx.now()
    returned = _return_remainder(
        tx, grant, end_transfer_id(grant.id, GrantStatus.VOIDED), "grant.void"
    )
    grant.status = str(GrantStatus.VOIDED)
    grant.voided_at = now
    grant.voided_by = tx.actor
    grant.void_reason = text
    grant.updated_at = now
    tx.session.flush()
    events.emit(
        tx,
        "grant.voided",
        customer_id=grant.customer_id,
        object_id=grant.id,
        data={**grant_event_data(grant), "returned_minor": returned, "reason": text},
    )
    return grant


def expire_grant(tx: Tx, grant_id: str) -> bool:
    """Expire a grant whose time has come (``grant:<id>:expire``). Idempotent: a grant no
    longer active, or not yet due, is left alone (returns False)."""
    grant = repository.get_grant(tx, grant_id, for_update=True)
    if grant is None or grant.status != GrantStatus.ACTIVE:
        return False
    now = tx.now()
    if grant.expires_at is None or grant.expires_at > now:
        return False
    returned = _return_remainder(
        tx, grant, end_transfer_id(grant.id, GrantStatus.EXPIRED), "grant.expire"
    )
    grant.status = str(GrantStatus.EXPIRED)
    grant.expired_at = now
    grant.updated_at = now
    tx.session.flush()
    events.emit(
        tx,
        "grant.expired",
        customer_id=grant.customer_id,
        object_id=grant.id,
        data={**grant_event_data(grant), "returned_minor": returned},
    )
    return True


def sweep_if_ended(tx: Tx, grant_id: str) -> int:
    """After a hold on an ended grant's wallet resolved: return what it released to the
    grant's source (``grant:<id>:sweep:<n>``). Returns the amount (0 when nothing to do)."""
    grant = repository.get_grant(tx, grant_id, for_update=True)
    invariant(grant is not None, f"sweep of unknown grant {grant_id}")
    assert grant is not None
    if grant.status == GrantStatus.ACTIVE:
        return 0
    balance = ledger.balance(tx, grant.account_id)
    if balance.available.amount_minor <= 0:
        return 0
    swept = _return_remainder(
        tx, grant, sweep_transfer_id(grant.id, grant.sweeps + 1), "grant.sweep"
    )
    grant.sweeps += 1
    grant.updated_at = tx.now()
    return swept
