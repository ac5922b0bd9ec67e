"""Audited actions on a customer's billing: issue a credit, void a grant, retry a payment,
cancel a subscription, replay a dead-lettered event. Each calls the owning domain's service
inside :func:`run_action` (reason, role, one-time token, audit entry in the same transaction)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import Depends, Form
from starlette.responses import Response

from tallybook.console.actions import (
    ActionForm,
    ActionOutcome,
    Done,
    action_form,
    respond,
    run_action,
)
from tallybook.console.pages.invoices import parse_amount
from tallybook.console.web import ConsoleContext, console_router, safe_next, signed_in
from tallybook.customers import service as customers
from tallybook.db import Tx
from tallybook.grants import service as grants
from tallybook.kit.errors import NotFound
from tallybook.kit.money import Money, normalize_currency
from tallybook.metering import service as metering
from tallybook.payments import service as payments
from tallybook.payments.context import context_from_env
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.domain import CancelAt, CancelRequest

router = console_router()

T = TypeVar("T")


@router.post("/customers/{customer_ref}/credits")
def issue_credit(
    customer_ref: str,
    ctx: ConsoleContext = Depends(signed_in()),
    form: ActionForm = Depends(action_form),
    amount: str = Form(""),
    currency: str = Form(""),
    back: str = Form(""),
) -> Response:
    """A monetary goodwill grant: the customer's next invoices burn it down."""
    customer_id = _customer_id(ctx, customer_ref)

    def perform(tx: Tx) -> Done:
        customer = customers.resolve(tx, customer_ref)
        code = normalize_currency(currency or customer.currency or "", param="currency")
        money = parse_amount(amount, code)
        grant = grants.issue_grant(
            tx,
            grants.GrantInput(
                customer=customer.id,
                kind=grants.GrantKind.MONETARY,
                amount_minor=money.amount_minor,
                currency=money.currency,
                source=grants.GrantSource.GOODWILL,
                reason=form.reason,
                metadata={"console_request_id": ctx.request_id or ""},
            ),
            issued_by=ctx.identity.actor,
        )
        return Done(
            f"Issued {money.format()} of credit", details={"amount": money, "grant_id": grant.id}
        )

    outcome = run_action(
        ctx,
        form,
        action="grant.issue_credit",
        object_type="customer",
        object_id=customer_id or customer_ref,
        customer_id=customer_id,
        perform=perform,
    )
    return respond(ctx, outcome, back=safe_next(back or f"/console/customers/{customer_ref}"))


@router.post("/grants/{grant_id}/void")
def void_grant(
    grant_id: str,
    ctx: ConsoleContext = Depends(signed_in()),
    form: ActionForm = Depends(action_form),
    back: str = Form(""),
) -> Response:
    customer_id = _found(ctx, lambda tx: grants.get_grant(tx, grant_id).customer_id)

    def perform(tx: Tx) -> Done:
        before = grants.get_view(tx, grant_id)
        remaining = before.remaining_minor
        grant = grants.void_grant(tx, grant_id, reason=form.reason)
        details: dict[str, object] = {"previous": {"status": before.grant.status}}
        if grant.currency is not None:
            details["returned"] = Money(remaining, grant.currency)
        else:
            details["returned_units_minor"] = remaining
        return Done(f"Voided grant {grant.id}", details=details)

    outcome = run_action(
        ctx,
        form,
        action="grant.void",
        object_type="grant",
        object_id=grant_id,
        customer_id=customer_id,
        perform=perform,
    )
    return _respond_to_customer(ctx, outcome, customer_id, back)


@router.post("/collections/{collection_ref}/retry")
def retry_payment(
    collection_ref: str,
    ctx: ConsoleContext = Depends(signed_in()),
    form: ActionForm = Depends(action_form),
    back: str = Form(""),
) -> Response:
    """A manual payment retry: a new attempt now (``collection_ref``: collection or invoice)."""

    def owner(tx: Tx) -> tuple[str | None, str]:
        collection = payments.get_collection(tx, collection_ref)
        return collection.customer_id, collection.id

    customer_id, object_id = _found(ctx, owner) or (None, collection_ref)

    def perform(tx: Tx) -> Done:
        payment = payments.retry_collection(tx, collection_ref, context_from_env())
        return Done(
            f"Payment attempt {payment.id} started for invoice {payment.invoice_id}",
            details={
                "payment_id": payment.id,
                "invoice_id": payment.invoice_id,
                "amount": Money(payment.amount_minor, payment.currency),
            },
        )

    outcome = run_action(
        ctx,
        form,
        action="payment.retry",
        object_type="collection",
        object_id=object_id,
        customer_id=customer_id,
        perform=perform,
    )
    return _respond_to_customer(ctx, outcome, customer_id, back)


@router.post("/subscriptions/{subscription_id}/cancel")
def cancel_subscription(
    subscription_id: str,
    ctx: ConsoleContext = Depends(signed_in()),
    form: ActionForm = Depends(action_form),
    at: str = Form(CancelAt.PERIOD_END.value),
    back: str = Form(""),
) -> Response:
    customer_id = _found(ctx, lambda tx: subscriptions.get(tx, subscription_id).customer_id)
    when = CancelAt.NOW if at == CancelAt.NOW.value else CancelAt.PERIOD_END

    def perform(tx: Tx) -> Done:
        before = subscriptions.view(tx, subscription_id)
        result = subscriptions.cancel(
            tx, subscription_id, CancelRequest(at=when, reason=form.reason)
        )
        after = result.subscription
        message = (
            f"Canceled {subscription_id} now"
            if when is CancelAt.NOW
            else f"{subscription_id} cancels at the end of its period"
        )
        return Done(
            message,
            details={
                "at": when.value,
                "previous": {
                    "status": before.status,
                    "cancel_at_period_end": before.cancel_at_period_end,
                },
                "status": after.status,
            },
        )

    outcome = run_action(
        ctx,
        form,
        action="subscription.cancel",
        object_type="subscription",
        object_id=subscription_id,
        customer_id=customer_id,
        perform=perform,
        details={"at": when.value},
    )
    return _respond_to_customer(ctx, outcome, customer_id, back)


@router.post("/dead-letters/{letter_id}/replay")
def replay_dead_letter(
    letter_id: str,
    ctx: ConsoleContext = Depends(signed_in()),
    form: ActionForm = Depends(action_form),
    back: str = Form("/console/anomalies/dead-letters"),
) -> Response:
    def perform(tx: Tx) -> Done:
        letter = metering.get_dead_letter(tx, letter_id)
        previous = {"code": letter.code, "attempts": letter.attempts}
        outcome = metering.replay_dead_letter(tx, letter_id)
        status = outcome.status
        message = (
            f"Replayed {letter.event_id or letter_id}: {status}"
            if status in ("accepted", "duplicate")
            else f"Replayed {letter.event_id or letter_id}: still {status}"
        )
        return Done(message, details={"outcome": status, "previous": previous})

    outcome = run_action(
        ctx,
        form,
        action="dead_letter.replay",
        object_type="dead_letter",
        object_id=letter_id,
        perform=perform,
    )
    return respond(ctx, outcome, back=safe_next(back))


def _customer_id(ctx: ConsoleContext, customer_ref: str) -> str | None:
    return _found(ctx, lambda tx: customers.resolve(tx, customer_ref).id)


def _found(ctx: ConsoleContext, lookup: Callable[[Tx], T]) -> T | None:
    """What ``lookup`` reads (plain values: the read's rows are gone after it), or None when it
    names nothing (the action then reports it)."""
    with ctx.read() as tx:
        try:
            return lookup(tx)
        except NotFound:
            return None


def _respond_to_customer(
    ctx: ConsoleContext, outcome: ActionOutcome, customer_id: str | None, back: str
) -> Response:
    """Back to ``back``, or to the customer's page, or to the console's home."""
    default = f"/console/customers/{customer_id}" if customer_id else "/console"
    return respond(ctx, outcome, back=safe_next(back or default))
