"""Ours against the provider's, for reconciliation: read-only, and no network.

:func:`provider_comparison` lists, for every invoice finalized in ``[since, until)`` that has a
collection, each payment record with what we recorded (status, amount) beside what the provider
last told us about it, and the provider objects (PaymentIntents, Stripe invoices, refunds,
disputes) seen in stored events of that window that have no tallybook counterpart.

"What the provider last told us" is the newer of two stored sources, never a call to Stripe:

- ``event``: the newest stored webhook event about the object (``payments_webhook_events``,
  whatever its processing status: a parked event still says what Stripe holds);
- ``record``: what our own calls and the sync job read back and applied (the payment's
  ``provider_status``; its amount once succeeded).

Provider states only move forward (``STATE_RANK``), so the higher-ranked of the two wins, and
at equal rank the event (it carries the provider's own amount). A manual payment's provider is
finance: it is its own record (``source`` ``manual``) and always agrees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from tallybook.db import Tx
from tallybook.invoicing.models import Invoice
from tallybook.kit.invariant import invariant
from tallybook.payments import repository
from tallybook.payments.models import Collection, Payment, WebhookEvent
from tallybook.payments.providers import stripe_objects as so
from tallybook.payments.providers.base import STATE_RANK, PaymentState, ProviderName

#: At most this many invoices per call; ``truncated`` says when more were in the window.
COMPARISON_INVOICES_MAX: Final = 10_000
#: At most this many stored events are scanned for objects without a counterpart.
COMPARISON_EVENTS_MAX: Final = 100_000
_BATCH_MAX: Final = 500

#: Event object types whose objects move money and should have a tallybook counterpart.
MONEY_OBJECT_TYPES: Final = ("payment_intent", "invoice", "refund", "dispute")
_STRIPE_INVOICE_PREFIX: Final = "stripe_invoice:"
#: A Stripe invoice's status read as a payment state.
_STRIPE_INVOICE_STATES: Final = {
    "draft": PaymentState.PENDING,
    "open": PaymentState.PENDING,
    "paid": PaymentState.SUCCEEDED,
    "uncollectible": PaymentState.FAILED,
    "void": PaymentState.CANCELED,
}


@dataclass(frozen=True, slots=True)
class ProviderView:
    """The provider's last known state of one object, from stored data only."""

    #: ``event`` (newest stored webhook), ``record`` (our calls and syncs), ``manual`` (no
    #: outside provider) or ``none`` (the provider never told us anything).
    source: str
    #: The provider's own status word (``succeeded``, ``requires_payment_method``, ``paid``…).
    status: str | None = None
    #: Our reading of it (a ``PaymentState`` value); None when unknown or unreadable.
    state: str | None = None
    #: What the provider says it received once succeeded, else what it was asked for.
    amount_minor: int | None = None
    currency: str | None = None
    event_id: str | None = None
    observed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PaymentComparison:
    payment_id: str
    provider: str
    provider_payment_id: str | None
    attempt_number: int | None
    trigger: str
    #: Ours: the payment's status and amount (what the ledger's ``payment:<id>`` booked once
    #: succeeded).
    status: str
    amount_minor: int
    currency: str
    provider_view: ProviderView

    @property
    def agrees(self) -> bool:
        view = self.provider_view
        if view.source == "manual":
            return True
        if view.source == "none" or view.state is None:
            # Nothing heard from the provider: fine unless we booked money it never confirmed.
            return self.status != PaymentState.SUCCEEDED
        if view.state != self.status:
            return False
        if self.status == PaymentState.SUCCEEDED:
            return view.amount_minor == self.amount_minor and view.currency == self.currency
        return True


@dataclass(frozen=True, slots=True)
class InvoiceComparison:
    invoice_id: str
    invoice_number: str | None
    customer_id: str
    finalized_at: datetime | None
    currency: str
    #: Invoicing's view of the invoice.
    invoice_status: str
    amount_due_minor: int
    invoice_amount_paid_minor: int
    #: Payments' view (the collection).
    collection_id: str
    collection_status: str
    provider: str
    collection_amount_paid_minor: int
    payments: tuple[PaymentComparison, ...]

    @property
    def collected_minor(self) -> int:
        """What our succeeded payments of it total (in the invoice's currency)."""
        return sum(
            p.amount_minor
            for p in self.payments
            if p.status == PaymentState.SUCCEEDED and p.currency == self.currency
        )

    @property
    def provider_collected_minor(self) -> int:
        """What the provider's last known states say it collected for it (manual payments
        count as their own record)."""
        total = 0
        for p in self.payments:
            view = p.provider_view
            if view.source == "manual":
                if p.status == PaymentState.SUCCEEDED and p.currency == self.currency:
                    total += p.amount_minor
            elif (
                view.state == PaymentState.SUCCEEDED
                and view.currency == self.currency
                and view.amount_minor is not None
            ):
                total += view.amount_minor
        return total

    @property
    def agrees(self) -> bool:
        return (
            all(p.agrees for p in self.payments)
            and self.collected_minor == self.provider_collected_minor
        )


@dataclass(frozen=True, slots=True)
class UnmatchedProviderObject:
    """A provider object seen in stored events with no tallybook counterpart (a PaymentIntent
    created twice after a lost answer, a charge made in the dashboard, a Stripe invoice not
    ours, a refund or dispute of a payment we don't know)."""

    provider: str
    object_type: str
    object_id: str
    status: str | None
    amount_minor: int | None
    currency: str | None
    #: The newest stored event about it.
    event_id: str
    event_type: str
    observed_at: datetime
    #: The tallybook ids its metadata names, if any (``tallybook_invoice_id``…).
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class ProviderComparison:
    since: datetime
    until: datetime
    invoices: list[InvoiceComparison]
    unmatched: list[UnmatchedProviderObject]
    #: More invoices (or events) were in the window than one call returns.
    truncated: bool

    @property
    def disagreements(self) -> list[InvoiceComparison]:
        return [i for i in self.invoices if not i.agrees]


def provider_comparison(
    tx: Tx,
    *,
    since: datetime,
    until: datetime,
    provider: str | None = None,
    invoices_max: int = COMPARISON_INVOICES_MAX,
) -> ProviderComparison:
    """Compare, for invoices finalized in ``[since, until)`` with a collection, our payment
    records with the provider's last known state (stored webhooks and syncs; no network), and
    list the provider objects of stored events created in ``[since, until)`` that have no
    tallybook counterpart. ``provider`` limits both to one provider (``stripe``, ``manual``)."""
    invariant(since.tzinfo is not None and until.tzinfo is not None, "aware datetimes")
    invariant(since < until, "since must be before until")
    invariant(0 < invoices_max <= COMPARISON_INVOICES_MAX, "invoices_max out of range")
    rows = repository.finalized_collections_between(
        tx, since=since, until=until, provider=provider, limit=invoices_max + 1
    )
    truncated = len(rows) > invoices_max
    rows = rows[:invoices_max]
    compared: list[InvoiceComparison] = []
    for start in range(0, len(rows), _BATCH_MAX):
        compared.extend(_compare_batch(tx, rows[start : start + _BATCH_MAX]))
    unmatched, events_truncated = _unmatched(tx, since=since, until=until, provider=provider)
    return ProviderComparison(
        since=since,
        until=until,
        invoices=compared,
        unmatched=unmatched,
        truncated=truncated or events_truncated,
    )


# Invoices and their payments ----------------------------------------------------------------------


def _compare_batch(tx: Tx, rows: Sequence[tuple[Collection, Invoice]]) -> list[InvoiceComparison]:
    payments = repository.payments_of_collections(tx, [c.id for c, _ in rows])
    by_collection: dict[str, list[Payment]] = {}
    for payment in payments:
        by_collection.setdefault(payment.collection_id, []).append(payment)
    stripe_ids = [
        _object_id_of(p.provider_payment_id)
        for p in payments
        if p.provider == ProviderName.STRIPE and p.provider_payment_id
    ]
    newest = _newest_by_object(
        repository.events_of_objects(
            tx, str(ProviderName.STRIPE), stripe_ids, object_types=("payment_intent", "invoice")
        )
    )
    result: list[InvoiceComparison] = []
    for collection, invoice in rows:
        assert invoice.id is not None
        result.append(
            InvoiceComparison(
                invoice_id=invoice.id,
                invoice_number=invoice.number,
                customer_id=invoice.customer_id,
                finalized_at=invoice.finalized_at,
                currency=invoice.currency,
                invoice_status=str(invoice.status),
                amount_due_minor=invoice.amount_due_minor,
                invoice_amount_paid_minor=invoice.amount_paid_minor,
                collection_id=collection.id,
                collection_status=collection.status,
                provider=collection.provider,
                collection_amount_paid_minor=collection.amount_paid_minor,
                payments=tuple(
                    _compare_payment(p, newest) for p in by_collection.get(collection.id, [])
                ),
            )
        )
    return result


def _object_id_of(provider_payment_id: str) -> str:
    """A payment recorded from a paid Stripe invoice is keyed ``stripe_invoice:<in_…>``."""
    return provider_payment_id.removeprefix(_STRIPE_INVOICE_PREFIX)


def _newest_by_object(events: Sequence[WebhookEvent]) -> dict[str, WebhookEvent]:
    """The newest event per object (the input is oldest first)."""
    newest: dict[str, WebhookEvent] = {}
    for event in events:
        if event.object_id is not None:
            newest[event.object_id] = event
    return newest


def _compare_payment(payment: Payment, newest: Mapping[str, WebhookEvent]) -> PaymentComparison:
    return PaymentComparison(
        payment_id=payment.id,
        provider=payment.provider,
        provider_payment_id=payment.provider_payment_id,
        attempt_number=payment.attempt_number,
        trigger=payment.trigger,
        status=payment.status,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        provider_view=_provider_view(payment, newest),
    )


def _provider_view(payment: Payment, newest: Mapping[str, WebhookEvent]) -> ProviderView:
    if payment.provider == ProviderName.MANUAL:
        return ProviderView(source="manual")
    record = _record_view(payment)
    event = (
        newest.get(_object_id_of(payment.provider_payment_id))
        if payment.provider_payment_id
        else None
    )
    from_event = _event_view(event) if event is not None else None
    if from_event is None:
        return record
    if record.state is None or from_event.state is None:
        return from_event if from_event.state is not None else record
    if STATE_RANK[PaymentState(record.state)] > STATE_RANK[PaymentState(from_event.state)]:
        return record
    return from_event


def _record_view(payment: Payment) -> ProviderView:
    """What our calls and syncs applied: ``provider_status`` is only written from a provider
    report, and the amount is the provider's once the payment succeeded."""
    if payment.provider_status is None:
        return ProviderView(source="none")
    return ProviderView(
        source="record",
        status=payment.provider_status,
        state=payment.status,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        observed_at=payment.provider_state_at,
    )


def _event_view(event: WebhookEvent) -> ProviderView | None:
    obj = _object_of(event)
    if obj is None:
        return None
    status = so.field(obj, "status")
    state: PaymentState | None
    amount: Any
    if event.object_type == "invoice":
        state = _STRIPE_INVOICE_STATES.get(status) if isinstance(status, str) else None
        amount = so.field(obj, "amount_paid" if state is PaymentState.SUCCEEDED else "amount_due")
    else:
        try:
            state = so.payment_state(obj)
        except ValueError:
            state = None
        amount = so.field(obj, "amount_received" if state is PaymentState.SUCCEEDED else "amount")
    return ProviderView(
        source="event",
        status=status if isinstance(status, str) else None,
        state=str(state) if state is not None else None,
        amount_minor=_int_or_none(amount),
        currency=_currency_or_none(obj),
        event_id=event.event_id,
        observed_at=event.provider_created_at,
    )


def _object_of(event: WebhookEvent) -> Mapping[str, Any] | None:
    data = event.payload.get("data") if isinstance(event.payload, Mapping) else None
    obj = data.get("object") if isinstance(data, Mapping) else None
    return obj if isinstance(obj, Mapping) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _currency_or_none(obj: Mapping[str, Any]) -> str | None:
    try:
        return so.currency_of(obj)
    except ValueError:
        return None


# Provider objects without a counterpart -----------------------------------------------------------


def _unmatched(
    tx: Tx, *, since: datetime, until: datetime, provider: str | None
) -> tuple[list[UnmatchedProviderObject], bool]:
    if provider is not None and provider != ProviderName.STRIPE:
        return [], False  # only Stripe sends events
    events = repository.events_between(
        tx,
        provider=str(ProviderName.STRIPE),
        object_types=MONEY_OBJECT_TYPES,
        since=since,
        until=until,
        limit=COMPARISON_EVENTS_MAX + 1,
    )
    truncated = len(events) > COMPARISON_EVENTS_MAX
    newest = _newest_by_object(events[:COMPARISON_EVENTS_MAX])
    by_type: dict[str, list[str]] = {}
    for object_id, event in newest.items():
        by_type.setdefault(event.object_type or "", []).append(object_id)
    known: set[str] = set()
    stripe = str(ProviderName.STRIPE)
    for chunk in _chunks(by_type.get("payment_intent", [])):
        known |= repository.known_provider_payment_ids(tx, stripe, chunk)
    for chunk in _chunks(by_type.get("refund", [])):
        known |= repository.known_provider_refund_ids(tx, stripe, chunk)
    for chunk in _chunks(by_type.get("dispute", [])):
        known |= repository.known_provider_dispute_ids(tx, stripe, chunk)
    known |= _known_stripe_invoices(tx, [newest[i] for i in by_type.get("invoice", [])])
    unmatched = [
        _unmatched_object(event)
        for object_id, event in sorted(
            newest.items(), key=lambda item: (item[1].provider_created_at, item[0])
        )
        if object_id not in known
    ]
    return unmatched, truncated


def _known_stripe_invoices(tx: Tx, events: Sequence[WebhookEvent]) -> set[str]:
    """A Stripe invoice has a counterpart when its metadata names an invoice we collect, or a
    payment of ours came from it (its PaymentIntent, or the invoice itself)."""
    known: set[str] = set()
    names: dict[str, str] = {}
    keys: dict[str, str] = {}
    for event in events:
        obj = _object_of(event)
        if obj is None or event.object_id is None:
            continue
        named = so.metadata_of(obj).get(so.METADATA_INVOICE_ID)
        if named:
            names[event.object_id] = named
        keys[f"{_STRIPE_INVOICE_PREFIX}{event.object_id}"] = event.object_id
        intent = so.object_id(so.field(obj, "payment_intent"))
        if intent:
            keys[intent] = event.object_id
    for chunk in _chunks(sorted(set(names.values()))):
        ours = repository.invoice_ids_with_collections(tx, chunk)
        known |= {stripe_id for stripe_id, named in names.items() if named in ours}
    stripe = str(ProviderName.STRIPE)
    for chunk in _chunks(sorted(keys)):
        known |= {keys[k] for k in repository.known_provider_payment_ids(tx, stripe, chunk)}
    return known


def _unmatched_object(event: WebhookEvent) -> UnmatchedProviderObject:
    obj = _object_of(event) or {}
    status = so.field(obj, "status")
    amount_key = "amount_paid" if event.object_type == "invoice" else "amount"
    if event.object_type == "payment_intent" and status == "succeeded":
        amount_key = "amount_received"
    metadata = {k: v for k, v in so.metadata_of(obj).items() if k.startswith("tallybook_")}
    assert event.object_id is not None and event.object_type is not None
    return UnmatchedProviderObject(
        provider=event.provider,
        object_type=event.object_type,
        object_id=event.object_id,
        status=status if isinstance(status, str) else None,
        amount_minor=_int_or_none(so.field(obj, amount_key)),
        currency=_currency_or_none(obj),
        event_id=event.event_id,
        event_type=event.type,
        observed_at=event.provider_created_at,
        metadata=metadata,
    )


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[i : i + _BATCH_MAX]) for i in range(0, len(ids), _BATCH_MAX)]
