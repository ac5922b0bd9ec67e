"""What each provider event does. Every handler is idempotent and order-tolerant: it applies
the object's own state through the same services our own calls use, and those move state only
forward (an older event changes nothing). A handler returns a short outcome for the inbox row;
one starting with ``ignored:`` marks the event ``ignored`` (not ours, or not acted on).

Handled (Stripe):

- ``payment_intent.succeeded | payment_failed | canceled | processing | requires_action``
- ``charge.refunded`` (re-reads the charge's refunds), ``refund.created | updated | failed``,
  ``charge.refund.updated``
- ``charge.dispute.created | updated | closed | funds_withdrawn | funds_reinstated``
- ``payout.created | updated | paid | failed | canceled``
- ``customer.created | updated | deleted``, ``payment_method.attached | detached | updated |
  automatically_updated``
- ``invoice.paid | payment_succeeded | payment_failed | finalized | voided |
  marked_uncollectible``: tallybook collects with PaymentIntents, not Stripe invoices; a Stripe
  invoice that names one of ours (``metadata.tallybook_invoice_id``) is an outside payment of
  it when paid, and noted otherwise.
- ``customer.subscription.*``: ignored (tallybook's subscriptions are the record; Stripe
  subscriptions are not used).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from tallybook.db import Tx
from tallybook.payments import repository, topics
from tallybook.payments.context import PaymentsContext
from tallybook.payments.providers import stripe_objects as so
from tallybook.payments.providers.base import (
    PaymentSnapshot,
    PaymentState,
    ProviderCustomer,
    ProviderName,
)
from tallybook.payments.service import (
    accounts,
    collections,
    disputes,
    payouts,
    recovery,
    refunds,
)
from tallybook.work import outbox

STRIPE: Final = str(ProviderName.STRIPE)
IGNORED_PREFIX: Final = "ignored:"

Handler = Callable[[Tx, Mapping[str, Any], Mapping[str, Any], datetime, PaymentsContext], str]


def _stripe(ctx: PaymentsContext) -> Any | None:
    return ctx.providers.by_name.get(ProviderName.STRIPE)


# Payments -----------------------------------------------------------------------------------------


def _with_fee(
    snapshot: PaymentSnapshot, payment_fee: int | None, ctx: PaymentsContext
) -> PaymentSnapshot:
    """Webhooks carry the charge as an id: read the fee from Stripe if we don't have it yet."""
    provider = _stripe(ctx)
    if (
        snapshot.state is not PaymentState.SUCCEEDED
        or snapshot.fee_minor is not None
        or payment_fee is not None
        or provider is None
    ):
        return snapshot
    fetched: PaymentSnapshot = provider.fetch_payment(snapshot.provider_payment_id)
    if fetched.state is PaymentState.SUCCEEDED:
        return fetched
    return snapshot


def payment_intent(
    tx: Tx, event: Mapping[str, Any], obj: Mapping[str, Any], at: datetime, ctx: PaymentsContext
) -> str:
    snapshot = so.payment_snapshot(obj)
    payment = repository.payment_by_provider_id(tx, STRIPE, snapshot.provider_payment_id)
    metadata = snapshot.metadata or {}
    if payment is None:
        ours = metadata.get(so.METADATA_PAYMENT_ID)
        candidate = repository.payment(tx, ours) if ours else None
        if candidate is not None and candidate.provider_payment_id is None:
            # Our own attempt, whose PaymentIntent id we never got to store.
            candidate.provider_payment_id = snapshot.provider_payment_id
            payment = candidate
    if payment is None:
        invoice_id = metadata.get(so.METADATA_INVOICE_ID)
        collection = (
            repository.collection_for_invoice(tx, invoice_id, lock=True) if invoice_id else None
        )
        if collection is None:
            return f"{IGNORED_PREFIX} not a tallybook payment"
        if snapshot.state is not PaymentState.SUCCEEDED:
            return f"{IGNORED_PREFIX} an outside payment of {invoice_id} that is {snapshot.state}"
        # Looked up again under the collection's lock: another event may have just recorded it.
        recorded = repository.payment_by_provider_id(tx, STRIPE, snapshot.provider_payment_id)
        if recorded is not None:
            collections.apply_payment_state(tx, recorded.id, snapshot, ctx, observed_at=at)
            return f"outside payment {recorded.id} of {invoice_id} already recorded"
        external = collections.record_external_payment(
            tx,
            collection,
            provider=STRIPE,
            snapshot=_with_fee(snapshot, None, ctx),
            ctx=ctx,
            observed_at=at,
        )
        return f"outside payment {external.id} of {invoice_id} recorded"
    snapshot = _with_fee(snapshot, payment.fee_minor, ctx)
    changed = collections.apply_payment_state(tx, payment.id, snapshot, ctx, observed_at=at)
    if changed:
        return f"payment {payment.id} is {payment.status}"
    return f"payment {payment.id} unchanged ({snapshot.state} is not newer than {payment.status})"


# Refunds ------------------------------------------------------------------------------------------


def refund(
    tx: Tx, event: Mapping[str, Any], obj: Mapping[str, Any], at: datetime, ctx: PaymentsContext
) -> str:
    applied = refunds.apply_refund_state(tx, so.refund_snapshot(obj), ctx, observed_at=at)
    if applied is None:
        return f"{IGNORED_PREFIX} a refund of a payment tallybook doesn't know"
    return f"refund {applied.id} is {applied.status}"


def charge_refunded(
    tx: Tx, event: Mapping[str, Any], obj: Mapping[str, Any], at: datetime, ctx: PaymentsContext
) -> str:
    """The charge says refunds happened; the refunds themselves (with their ids) are read back
    from Stripe, or from the charge when its API version embeds them."""
    intent_id = so.object_id(so.field(obj, "payment_intent"))
    charge_id = so.object_id(obj)
    payment = (repository.payment_by_provider_id(tx, STRIPE, intent_id) if intent_id else None) or (
        repository.payment_by_charge_id(tx, STRIPE, charge_id) if charge_id else None
    )
    if payment is None:
        return f"{IGNORED_PREFIX} a refund of a charge tallybook doesn't know"
    provider = _stripe(ctx)
    embedded = so.field(so.field(obj, "refunds"), "data")
    if provider is not None and payment.provider_payment_id:
        snapshots = provider.fetch_refunds(payment.provider_payment_id)
    elif isinstance(embedded, list):
        snapshots = [so.refund_snapshot(r) for r in embedded]
    else:
        raise RuntimeError("charge.refunded without its refunds, and Stripe is not configured")
    applied = [refunds.apply_refund_state(tx, s, ctx, observed_at=at) for s in snapshots]
    return f"{sum(1 for a in applied if a is not None)} refund(s) of payment {payment.id} applied"


# Disputes and payouts -------------------------------------------------------------------------------


def dispute(
    tx: Tx, event: Mapping[str, Any], obj: Mapping[str, Any], at: datetime, ctx: PaymentsContext
) -> str:
    applied = disputes.apply_dispute(tx, obj, observed_at=at)
    if applied is None:
        return f"{IGNORED_PREFIX} a dispute of a charge tallybook doesn't know"
    return f"dispute {applied.id} is {applied.status}"


def payout(
    tx: Tx, event: Mapping[str, Any], obj: Mapping[str, Any], at: datetime, ctx: PaymentsContext
) -> str:
    applied = payouts.apply_payout(tx, obj, observed_at=at)
    return f"payout {applied.id} is {applied.status}"


# Customers and payment methods -------------------------------------------------------------------


def _resync(tx: Tx, customer_id: str, event_id: str) -> None:
    outbox.enqueue(
        tx,
        topic=topics.SYNC_CUSTOMER,
        dedup_key=f"{customer_id}:{event_id}",
        payload={"customer_id": customer_id},
        ordering_key=f"customer:{customer_id}",
    )


def _after_usable(tx: Tx, customer_id: str, usable: bool, ctx: PaymentsContext) -> str:
    if usable and ctx.settings.retry_on_new_payment_method:
        started = recovery.retry_customer_collections(tx, customer_id, ctx)
        if started:
            return f"; retrying {len(started)} overdue invoice(s)"
    return ""


def customer(
    tx: Tx, event: Mapping[str, Any], obj: Mapping[str, Any], at: datetime, ctx: PaymentsContext
) -> str:
    provider_customer_id = so.object_id(obj)
    account = (
        repository.account_by_provider_id(tx, STRIPE, provider_customer_id, lock=True)
        if provider_customer_id
        else None
    )
    if account is None:
        return f"{IGNORED_PREFIX} a Stripe customer not linked to a tallybook customer"
    if event["type"] == "customer.deleted" or so.field(obj, "deleted"):
        snapshot = ProviderCustomer(account.provider_customer_id or "", None, False, deleted=True)
        accounts.apply_customer_state(tx, account, snapshot, observed_at=at)
        return f"payment account {account.id}: Stripe customer deleted"
    snapshot = so.customer_snapshot(obj, payment_method_present=account.payment_method_present)
    if snapshot.default_payment_method_id is None:
        # The customer object doesn't list other saved methods: read them back.
        _resync(tx, account.customer_id, str(event["id"]))
        return f"payment account {account.id}: re-reading payment methods"
    usable = accounts.apply_customer_state(tx, account, snapshot, observed_at=at)
    return f"payment account {account.id} updated" + _after_usable(
        tx, account.customer_id, usable, ctx
    )


def payment_method(
    tx: Tx, event: Mapping[str, Any], obj: Mapping[str, Any], at: datetime, ctx: PaymentsContext
) -> str:
    previous = so.field(event["data"], "previous_attributes")
    provider_customer_id = so.object_id(so.field(obj, "customer")) or so.object_id(
        so.field(previous, "customer")
    )
    account = (
        repository.account_by_provider_id(tx, STRIPE, provider_customer_id, lock=True)
        if provider_customer_id
        else None
    )
    if account is None:
        return f"{IGNORED_PREFIX} a payment method of a customer tallybook doesn't know"
    if event["type"] == "payment_method.attached":
        usable = accounts.mark_payment_method_present(tx, account)
        return f"payment account {account.id} has a payment method" + _after_usable(
            tx, account.customer_id, usable, ctx
        )
    _resync(tx, account.customer_id, str(event["id"]))
    return f"payment account {account.id}: re-reading payment methods"


# Stripe invoices ----------------------------------------------------------------------------------


def stripe_invoice(
    tx: Tx, event: Mapping[str, Any], obj: Mapping[str, Any], at: datetime, ctx: PaymentsContext
) -> str:
    invoice_id = so.metadata_of(obj).get(so.METADATA_INVOICE_ID)
    collection = repository.collection_for_invoice(tx, invoice_id) if invoice_id else None
    if collection is None:
        return f"{IGNORED_PREFIX} a Stripe invoice that is not a tallybook invoice"
    kind = str(event["type"])
    stripe_id = so.object_id(obj)
    if kind in ("invoice.paid", "invoice.payment_succeeded"):
        intent_id = so.object_id(so.field(obj, "payment_intent"))
        provider_payment_id = intent_id or f"stripe_invoice:{stripe_id}"
        repository.collection(tx, collection.id, lock=True)
        existing = repository.payment_by_provider_id(tx, STRIPE, provider_payment_id)
        if existing is not None:
            return f"{kind}: payment {existing.id} already recorded"
        snapshot = PaymentSnapshot(
            provider_payment_id=provider_payment_id,
            state=PaymentState.SUCCEEDED,
            amount_minor=so.amount_of(obj, "amount_paid"),
            currency=so.currency_of(obj),
            provider_status="paid",
            charge_id=so.object_id(so.field(obj, "charge")),
            metadata=so.metadata_of(obj),
        )
        external = collections.record_external_payment(
            tx, collection, provider=STRIPE, snapshot=snapshot, ctx=ctx, observed_at=at
        )
        return f"Stripe invoice {stripe_id} paid: outside payment {external.id} of {invoice_id}"
    # finalized, voided, marked_uncollectible, payment_failed: tallybook's invoice is the
    # record; these change nothing here and are kept for the audit trail.
    return f"noted: {kind} for Stripe invoice {stripe_id} of {invoice_id}"


def ignored(reason: str) -> Handler:
    def handler(
        tx: Tx, event: Mapping[str, Any], obj: Mapping[str, Any], at: datetime, ctx: PaymentsContext
    ) -> str:
        return f"{IGNORED_PREFIX} {reason}"

    return handler


HANDLERS: Final[dict[str, Handler]] = {
    **{
        f"payment_intent.{kind}": payment_intent
        for kind in ("succeeded", "payment_failed", "canceled", "processing", "requires_action")
    },
    "charge.refunded": charge_refunded,
    "charge.refund.updated": refund,
    "refund.created": refund,
    "refund.updated": refund,
    "refund.failed": refund,
    **{
        f"charge.dispute.{kind}": dispute
        for kind in ("created", "updated", "closed", "funds_withdrawn", "funds_reinstated")
    },
    **{f"payout.{kind}": payout for kind in ("created", "updated", "paid", "failed", "canceled")},
    "customer.created": customer,
    "customer.updated": customer,
    "customer.deleted": customer,
    **{
        f"payment_method.{kind}": payment_method
        for kind in ("attached", "detached", "updated", "automatically_updated")
    },
    **{
        f"invoice.{kind}": stripe_invoice
        for kind in (
            "paid",
            "payment_succeeded",
            "payment_failed",
            "finalized",
            "voided",
            "marked_uncollectible",
        )
    },
}


def handle(tx: Tx, event: Mapping[str, Any], ctx: PaymentsContext) -> str:
    kind = str(event["type"])
    handler = HANDLERS.get(kind)
    if handler is None:
        if kind.startswith("customer.subscription."):
            return f"{IGNORED_PREFIX} tallybook does not use Stripe subscriptions"
        if kind.startswith("charge."):
            return f"{IGNORED_PREFIX} covered by the payment_intent events"
        return f"{IGNORED_PREFIX} {kind} is not acted on"
    at = so.from_unix(event["created"])
    assert at is not None
    return handler(tx, event, event["data"]["object"], at, ctx)
