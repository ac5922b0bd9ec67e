"""Reservations: set units of a metered feature and/or money from credit grants aside for an
expensive request before it runs, then settle what it actually used (≤ what was reserved),
release it, or let it expire.

**Units** (a metered feature with a sum or count meter). Reserving locks one row per
(customer, feature, billing period) (``entitlements_reservation_locks``) and, under it,
checks ``used + reserved + quantity ≤ limit (+ usage grants)`` exactly as a check does, then
records the reservation. Settling takes the same lock, records the actual usage as a usage
event through metering (``source = "tallybook.reservation"``, ``id`` = the reservation id:
counted once, billed like any usage) and closes the reservation in the same transaction, so
usage and open reservations never both count it or both miss it. Fifty parallel requests
reserving against one hard limit therefore never jointly pass it. These are not ledger holds:
usage is not money and is not in the ledger; a hold on a "allowance" account would guard only
reservations against each other, while usage ingested directly would still bypass it. The row
lock guards the one place both meet: the check.

**Money** (credits in the customer's currency). Reserving places ledger holds on credit grant
wallets (burn-down order, or one named grant), all or nothing: a pending transfer per grant,
Dr the ``credit_grant`` wallet, Cr ``revenue_usage``, with the reservation's timeout. The
ledger's limit (debits ≤ credits, holds included) makes overshooting a grant impossible
whatever runs in parallel. Settling posts the actual amount (prepaid credit spent: revenue
recognized, ``rsv:<id>:p:<grant>``) and voids the rest (``rsv:<id>:v:<grant>``); releasing and
expiry void. Money settled this way is consumed credit, not usage: do not also send usage
events priced for the same work.

Expiry: an open reservation past ``expires_at`` stops counting at once (checks only count
unexpired ones); the ``entitlements.expire_reservations`` job marks it expired and voids its
holds (the ledger's own hold expiry may get there first; either is fine).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final

from tallybook.catalog.domain import FeatureType
from tallybook.catalog.meter_models import Aggregation
from tallybook.customers.models import Customer
from tallybook.db import Tx
from tallybook.entitlements import alerts, catalog_cache, check, repository
from tallybook.entitlements.catalog_cache import MeterFacts
from tallybook.entitlements.domain import CheckResult, FeatureInfo, Policies, resolve
from tallybook.entitlements.errors import EntitlementCode
from tallybook.entitlements.models import Reservation
from tallybook.grants import service as grants
from tallybook.grants.accounts import system as system_account
from tallybook.grants.domain import (
    REVENUE_USAGE,
    Demand,
    GrantKind,
    burn_down,
    covered_minor,
    id_body,
    ledger_transfer_id,
)
from tallybook.kit.clock import isoformat_z
from tallybook.kit.errors import Conflict, InvalidRequest, NotFound
from tallybook.kit.hashing import json_dumps, json_loads
from tallybook.kit.ids import new_id
from tallybook.kit.metadata import validate_metadata
from tallybook.kit.money import Money, check_amount_minor, normalize_currency
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.kit.quantity import to_decimal
from tallybook.ledger import service as ledger
from tallybook.ledger.rejections import Rejection
from tallybook.ledger.values import (
    Leg,
    PostPending,
    TransferRequest,
    TransferResult,
    TransferStatus,
    VoidPending,
)
from tallybook.metering import service as metering
from tallybook.metering.cloudevents import Rejection as EventRejection
from tallybook.work import events

TIMEOUT_SECONDS_DEFAULT: Final = 15 * 60
TIMEOUT_SECONDS_MAX: Final = 24 * 3600
#: A count meter's settlement is one event per unit.
COUNT_UNITS_MAX: Final = 1000
EVENT_DATA_BYTES_MAX: Final = 8 * 1024
EVENT_SOURCE: Final = "tallybook.reservation"
RESERVABLE: Final = frozenset({Aggregation.SUM, Aggregation.COUNT})

OPEN = "open"
SETTLED = "settled"
RELEASED = "released"
EXPIRED = "expired"
#: Hold resolutions that are already done: voiding them again changes nothing.
_ALREADY_RESOLVED: Final = frozenset(
    {
        Rejection.PENDING_TRANSFER_ALREADY_VOIDED,
        Rejection.PENDING_TRANSFER_ALREADY_EXPIRED,
    }
)


@dataclass(frozen=True, slots=True)
class ReservationInput:
    customer: str
    feature: str | None = None
    quantity: object = None
    amount_minor: int | None = None
    currency: str | None = None
    #: A monetary grant to hold from (default: the customer's grants in burn-down order).
    grant: str | None = None
    timeout_seconds: int = TIMEOUT_SECONDS_DEFAULT
    #: Fields of the usage event recorded at settlement (its dimensions, and whatever the
    #: meter's filters look at); the quantity goes at the meter's value path.
    event_data: Mapping[str, Any] | None = None
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    """A reservation, or the check that refused it (committed: the refusal fires alerts)."""

    reservation: Reservation | None
    check: CheckResult | None = None

    @property
    def refused(self) -> bool:
        return self.reservation is None


def _timeout(value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (1 <= value <= TIMEOUT_SECONDS_MAX)
    ):
        raise InvalidRequest(
            EntitlementCode.RESERVATION_TIMEOUT_INVALID,
            f"timeout_seconds must be 1 to {TIMEOUT_SECONDS_MAX}",
            param="timeout_seconds",
        )
    return value


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    cursor = data
    for segment in path[:-1]:
        nested = cursor.get(segment)
        if not isinstance(nested, dict):
            nested = cursor[segment] = {}
        cursor = nested
    cursor[path[-1]] = value


def event_data(
    meter: MeterFacts, extra: Mapping[str, Any], quantity: Decimal | None
) -> dict[str, Any]:
    """The ``data`` of the usage event for ``quantity`` (one unit for a count meter)."""
    data = json_loads_copy(extra)
    compiled = meter.compiled
    if compiled.value_path is not None and quantity is not None:
        _set_path(data, compiled.value_path, quantity)
    return data


def json_loads_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    copied = json_loads(json_dumps(dict(value)))
    assert isinstance(copied, dict)
    return copied


def _check_units(
    feature: FeatureInfo, meter: MeterFacts, quantity: Decimal, extra: Mapping[str, Any]
) -> None:
    if quantity <= 0:
        raise InvalidRequest(
            EntitlementCode.RESERVATION_QUANTITY_INVALID,
            "quantity must be positive",
            param="quantity",
        )
    if meter.aggregation is Aggregation.COUNT and (
        quantity != quantity.to_integral_value() or quantity > COUNT_UNITS_MAX
    ):
        raise InvalidRequest(
            EntitlementCode.RESERVATION_QUANTITY_INVALID,
            f"{feature.key} counts events: reserve a whole number of at most {COUNT_UNITS_MAX}",
            param="quantity",
        )
    if len(json_dumps(dict(extra)).encode()) > EVENT_DATA_BYTES_MAX:
        raise InvalidRequest(
            EntitlementCode.RESERVATION_EVENT_DATA_INVALID,
            f"event_data is at most {EVENT_DATA_BYTES_MAX} bytes of JSON",
            param="event_data",
        )
    sample = event_data(meter, extra, quantity)
    compiled = meter.compiled
    contribution = compiled.contribution(sample) if compiled.matches(sample) else None
    if contribution is None or isinstance(contribution, EventRejection):
        why = (
            contribution.message
            if isinstance(contribution, EventRejection)
            else ("its filters do not match")
        )
        raise InvalidRequest(
            EntitlementCode.RESERVATION_EVENT_DATA_INVALID,
            f"meter {meter.key} would not count the settlement's usage event ({why}): "
            "give the fields it needs in event_data",
            param="event_data",
        )


def _money(tx: Tx, customer: Customer, data: ReservationInput) -> tuple[int, str] | None:
    if data.amount_minor is None:
        if data.currency is not None or data.grant is not None:
            raise InvalidRequest(
                EntitlementCode.RESERVATION_EMPTY,
                "currency and grant go with amount_minor",
                param="amount_minor",
            )
        return None
    amount = check_amount_minor(data.amount_minor)
    if amount <= 0:
        raise InvalidRequest(
            EntitlementCode.RESERVATION_QUANTITY_INVALID,
            "amount_minor must be positive",
            param="amount_minor",
        )
    currency = normalize_currency(data.currency) if data.currency else customer.currency
    if currency is None or currency != customer.currency:
        raise InvalidRequest(
            EntitlementCode.RESERVATION_CURRENCY_MISMATCH,
            f"credits are in the customer's currency ({customer.currency or 'none set'})",
            param="currency",
        )
    return amount, currency


def _hold_id(reservation_id: str, verb: str, grant_id: str) -> str:
    return ledger_transfer_id(f"rsv:{reservation_id}:{verb}:{id_body(grant_id)}")


def _place_holds(
    tx: Tx,
    customer: Customer,
    reservation_id: str,
    amount: int,
    currency: str,
    grant_ref: str | None,
    timeout: int,
) -> list[dict[str, Any]] | None:
    now = tx.now()
    sources = grants.credit_sources(tx, customer.id, at=now, currency=currency)
    if grant_ref is not None:
        sources = [s for s in sources if s.grant_id == grant_ref]
        if not sources:
            grant = grants.get_grant(tx, grant_ref)
            if grant.customer_id != customer.id or grant.kind != GrantKind.MONETARY:
                raise InvalidRequest(
                    EntitlementCode.RESERVATION_CURRENCY_MISMATCH,
                    f"{grant_ref} is not a monetary grant of this customer",
                    param="grant",
                )
    applications = burn_down(sources, [Demand.money(Money(amount, currency), key="hold")])
    if covered_minor(applications, "hold") < amount:
        return None
    revenue = system_account(tx, REVENUE_USAGE, currency)
    requests = [
        TransferRequest(
            id=_hold_id(reservation_id, "h", a.grant_id),
            legs=[Leg.debit(a.account_id, a.amount), Leg.credit(revenue.id, a.amount)],
            reason_code="reservation.hold",
            metadata={"reservation_id": reservation_id, "grant_id": a.grant_id},
            pending=True,
            timeout_seconds=timeout,
        )
        for a in applications
    ]
    results = ledger.create_linked_batch(tx, requests)
    if any(r.status is TransferStatus.FAILED for r in results):
        # A grant was spent by someone else between reading and holding: the ledger refused
        # (nothing is recorded once this transaction rolls back). Retry to re-read.
        raise Conflict(
            EntitlementCode.CREDIT_INSUFFICIENT,
            "the credits changed while reserving; try again",
            param="amount_minor",
        )
    return [
        {
            "grant_id": a.grant_id,
            "account_id": a.account_id,
            "transfer_id": request.id,
            "amount_minor": a.amount_minor,
        }
        for a, request in zip(applications, requests, strict=True)
    ]


def reserve(tx: Tx, data: ReservationInput, *, policies: Policies | None = None) -> ReserveOutcome:
    """Reserve units and/or money (see the module docstring). A refusal by the limits is an
    outcome, not an error: the caller commits it (alerts fire) and answers 409."""
    customer = check.resolve_customer(tx, data.customer)
    timeout = _timeout(data.timeout_seconds)
    money = _money(tx, customer, data)
    units: tuple[FeatureInfo, MeterFacts, Decimal] | None = None
    extra = dict(data.event_data or {})
    if data.feature is not None or data.quantity is not None:
        if data.feature is None:
            raise InvalidRequest(
                EntitlementCode.RESERVATION_EMPTY, "quantity goes with a feature", param="feature"
            )
        feature = check.resolve_feature(tx, data.feature)
        if feature.type is not FeatureType.METERED or feature.meter_id is None:
            raise InvalidRequest(
                EntitlementCode.FEATURE_NOT_METERED,
                f"{feature.key} is a {feature.type} feature: only metered features are reserved",
                param="feature",
            )
        quantity = check.parse_quantity(data.quantity)
        if quantity is None:
            raise InvalidRequest(
                EntitlementCode.RESERVATION_QUANTITY_INVALID,
                "say how many units to reserve",
                param="quantity",
            )
        meter = catalog_cache.meter_facts(tx, feature.meter_id)
        if meter.aggregation not in RESERVABLE:
            raise InvalidRequest(
                EntitlementCode.FEATURE_NOT_RESERVABLE,
                f"{feature.key} counts a {meter.aggregation} meter; reservations add usage, so "
                "they need a sum or count meter",
                param="feature",
            )
        _check_units(feature, meter, quantity, extra)
        units = (feature, meter, quantity)
    elif data.event_data is not None:
        raise InvalidRequest(
            EntitlementCode.RESERVATION_EMPTY, "event_data goes with a feature", param="event_data"
        )
    if units is None and money is None:
        raise InvalidRequest(
            EntitlementCode.RESERVATION_EMPTY,
            "reserve a quantity of a feature, an amount of credits, or both",
            param="quantity",
        )
    now = tx.now()
    reservation_id = new_id("rsv")
    period: tuple[Any, Any] = (None, None)
    if units is not None:
        feature, meter, quantity = units
        facts = check.subscription_facts(tx, customer.id, now)
        override = check.override_facts(repository.live_override(tx, customer.id, feature.id, now))
        definition = resolve(
            feature,
            override=override,
            subscriptions=facts,
            policies=policies or Policies(),
            now=now,
        )
        if definition.window is not None:
            period = definition.window
            repository.lock_reservations(tx, customer.id, feature.id, definition.window[0])
        # Under the lock: every fact read fresh, exactly as a check reads them.
        result = check.evaluate(
            tx, customer, feature, quantity=quantity, policies=policies or Policies()
        )
        if not result.allowed:
            alerts.record(tx, alerts.alerts_due(result))
            return ReserveOutcome(None, result)
        checked: CheckResult | None = result
    else:
        checked = None
    holds: list[dict[str, Any]] = []
    if money is not None:
        placed = _place_holds(tx, customer, reservation_id, money[0], money[1], data.grant, timeout)
        if placed is None:
            raise Conflict(
                EntitlementCode.CREDIT_INSUFFICIENT,
                f"the customer's credits hold less than {Money(money[0], money[1])}",
                param="amount_minor",
            )
        holds = placed
    reservation = Reservation(
        id=reservation_id,
        customer_id=customer.id,
        feature_id=units[0].id if units else None,
        meter_id=units[1].id if units else None,
        period_start=period[0],
        period_end=period[1],
        quantity=units[2] if units else None,
        settled_quantity=None,
        amount_minor=money[0] if money else None,
        currency=money[1] if money else None,
        settled_amount_minor=None,
        holds=holds,
        status=OPEN,
        expires_at=now + timedelta(seconds=timeout),
        event_data=extra,
        metadata_=validate_metadata(data.metadata),
        created_by=tx.actor,
        created_at=now,
    )
    tx.session.add(reservation)
    tx.session.flush()
    _emit(tx, "reservation.created", reservation)
    return ReserveOutcome(reservation, checked)


def _emit(tx: Tx, event_type: str, reservation: Reservation) -> None:
    events.emit(
        tx,
        event_type,
        customer_id=reservation.customer_id,
        object_id=reservation.id,
        data={
            "reservation": {
                "id": reservation.id,
                "feature_id": reservation.feature_id,
                "quantity": reservation.quantity,
                "settled_quantity": reservation.settled_quantity,
                "amount_minor": reservation.amount_minor,
                "settled_amount_minor": reservation.settled_amount_minor,
                "currency": reservation.currency,
                "status": reservation.status,
                "expires_at": reservation.expires_at,
            }
        },
    )


def get_reservation(tx: Tx, reservation_id: str) -> Reservation:
    reservation = repository.get_reservation(tx, reservation_id)
    if reservation is None:
        raise NotFound("reservation", reservation_id)
    return reservation


def list_reservations(
    tx: Tx, request: PageRequest, *, customer: str | None = None, status: str | None = None
) -> Page[Reservation]:
    customer_id = check.resolve_customer(tx, customer).id if customer else None
    rows = repository.reservations_page(tx, request, customer_id=customer_id, status=status)
    return page_from_rows(rows, request)


def _lock_open(tx: Tx, reservation_id: str) -> Reservation:
    """Lock order: the (customer, feature, period) row first, as reserving does, then the
    reservation's row."""
    found = repository.get_reservation(tx, reservation_id)
    if found is None:
        raise NotFound("reservation", reservation_id)
    if found.feature_id is not None and found.period_start is not None:
        repository.lock_reservations(tx, found.customer_id, found.feature_id, found.period_start)
    reservation = repository.get_reservation(tx, reservation_id, for_update=True)
    assert reservation is not None
    if reservation.status != OPEN:
        raise Conflict(
            EntitlementCode.RESERVATION_NOT_OPEN,
            f"reservation {reservation.id} is {reservation.status}",
            param="id",
        )
    return reservation


def _actual(value: object, reserved: Decimal | int | None, param: str) -> Any:
    if value is None:
        return reserved
    if reserved is None:
        raise InvalidRequest(
            EntitlementCode.RESERVATION_SETTLE_EXCEEDS,
            f"this reservation has no {param} to settle",
            param=param,
        )
    actual = (
        check_amount_minor(value, param=param)
        if param == "amount_minor"
        else to_decimal(value, param=param)
    )
    if actual < 0 or actual > reserved:
        raise InvalidRequest(
            EntitlementCode.RESERVATION_SETTLE_EXCEEDS,
            f"{param} must be from 0 to what was reserved ({reserved})",
            param=param,
        )
    return actual


def _record_usage(tx: Tx, reservation: Reservation, quantity: Decimal) -> None:
    if quantity <= 0:
        return
    assert reservation.meter_id is not None
    meter = catalog_cache.meter_facts(tx, reservation.meter_id)
    customer = check.resolve_customer(tx, reservation.customer_id)
    time = isoformat_z(tx.now())
    base = {"specversion": "1.0", "source": EVENT_SOURCE, "type": meter.event_type}
    if meter.aggregation is Aggregation.COUNT:
        raw = [
            {
                **base,
                "id": f"{reservation.id}:{n}",
                "subject": customer.external_id,
                "time": time,
                "data": event_data(meter, reservation.event_data, None),
            }
            for n in range(1, int(quantity) + 1)
        ]
    else:
        raw = [
            {
                **base,
                "id": reservation.id,
                "subject": customer.external_id,
                "time": time,
                "data": event_data(meter, reservation.event_data, quantity),
            }
        ]
    result = metering.ingest_events(tx, raw, path="reservation")
    refused = [o for o in result.outcomes if o.status not in ("accepted", "duplicate")]
    if refused:
        raise InvalidRequest(
            EntitlementCode.RESERVATION_EVENT_DATA_INVALID,
            f"metering refused the settlement's usage event: {refused[0].code}: "
            f"{refused[0].message}",
            param="event_data",
        )


def _resolve_holds(tx: Tx, reservation: Reservation, amount: int) -> None:
    """Post ``amount`` across the holds in order; void what is left of each."""
    operations: list[PostPending | VoidPending] = []
    left = amount
    for hold in reservation.holds:
        take = min(left, int(hold["amount_minor"]))
        left -= take
        grant_id = hold["grant_id"]
        if take > 0:
            operations.append(
                PostPending(
                    id=_hold_id(reservation.id, "p", grant_id),
                    pending_id=hold["transfer_id"],
                    amount_minor=take,
                    reason_code="reservation.settle",
                )
            )
        else:
            operations.append(
                VoidPending(
                    id=_hold_id(reservation.id, "v", grant_id),
                    pending_id=hold["transfer_id"],
                    reason_code="reservation.release",
                )
            )
    results = ledger.create_linked_batch(tx, operations)
    failed = [r for r in results if r.status is TransferStatus.FAILED]
    if failed:
        first = next((r for r in failed if r.code is not Rejection.LINKED_EVENT_FAILED), failed[0])
        if first.code in (
            Rejection.PENDING_TRANSFER_EXPIRED,
            Rejection.PENDING_TRANSFER_ALREADY_EXPIRED,
        ):
            raise Conflict(
                EntitlementCode.RESERVATION_EXPIRED,
                f"reservation {reservation.id} expired",
                param="id",
            )
        raise first.error()
    _sweep(tx, reservation)


def _void_holds(tx: Tx, reservation: Reservation) -> None:
    """Void every hold, tolerating ones the ledger's expiry job resolved first."""
    for hold in reservation.holds:
        result: TransferResult = ledger.void_pending(
            tx,
            VoidPending(
                id=_hold_id(reservation.id, "v", hold["grant_id"]),
                pending_id=hold["transfer_id"],
                reason_code="reservation.release",
            ),
        )
        if result.status is TransferStatus.FAILED and result.code not in _ALREADY_RESOLVED:
            raise result.error()
    _sweep(tx, reservation)


def _sweep(tx: Tx, reservation: Reservation) -> None:
    for hold in reservation.holds:
        grants.sweep_if_ended(tx, hold["grant_id"])


def settle(
    tx: Tx,
    reservation_id: str,
    *,
    quantity: object = None,
    amount_minor: object = None,
) -> Reservation:
    """Settle the actual use (default: all that was reserved). Usage is recorded through
    metering; money is posted from the holds, the rest released."""
    reservation = _lock_open(tx, reservation_id)
    now = tx.now()
    if reservation.expires_at <= now:
        raise Conflict(
            EntitlementCode.RESERVATION_EXPIRED,
            f"reservation {reservation.id} expired at {isoformat_z(reservation.expires_at)}",
            param="id",
        )
    actual_quantity = _actual(quantity, reservation.quantity, "quantity")
    actual_amount = _actual(amount_minor, reservation.amount_minor, "amount_minor")
    if actual_quantity is not None:
        meter = catalog_cache.meter_facts(tx, reservation.meter_id or "")
        if meter.aggregation is Aggregation.COUNT and actual_quantity != int(actual_quantity):
            raise InvalidRequest(
                EntitlementCode.RESERVATION_QUANTITY_INVALID,
                "a count meter settles a whole number of units",
                param="quantity",
            )
        # Metering first, the ledger after: the same lock order as invoicing (customer, then
        # wallets), so the two never wait on each other in a cycle.
        _record_usage(tx, reservation, actual_quantity)
    if actual_amount is not None:
        _resolve_holds(tx, reservation, int(actual_amount))
    reservation.status = SETTLED
    reservation.settled_quantity = actual_quantity
    reservation.settled_amount_minor = actual_amount
    reservation.resolved_at = now
    tx.session.flush()
    _emit(tx, "reservation.settled", reservation)
    return reservation


def release(tx: Tx, reservation_id: str) -> Reservation:
    """Give everything back (the work did not run)."""
    reservation = _lock_open(tx, reservation_id)
    _void_holds(tx, reservation)
    reservation.status = RELEASED
    reservation.resolved_at = tx.now()
    tx.session.flush()
    _emit(tx, "reservation.released", reservation)
    return reservation


def expire(tx: Tx, reservation_id: str) -> bool:
    """Expire one open reservation past its time (idempotent)."""
    reservation = repository.get_reservation(tx, reservation_id, for_update=True)
    if reservation is None or reservation.status != OPEN or reservation.expires_at > tx.now():
        return False
    _void_holds(tx, reservation)
    reservation.status = EXPIRED
    reservation.resolved_at = tx.now()
    tx.session.flush()
    _emit(tx, "reservation.expired", reservation)
    return True
