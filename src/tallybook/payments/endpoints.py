"""HTTP routes of the payments domain (mounted by tallybook.api.app).

``POST /v1/webhooks/stripe`` takes no API key: the ``Stripe-Signature`` header is its
authentication. Everything else is under ``payments:read`` / ``payments:write``.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from tallybook.db import Tx
from tallybook.http.edge import Edge, get_database, make_router, page_params, require
from tallybook.http.errors import ERROR_RESPONSES
from tallybook.http.responses import ListEnvelope, json_response, list_envelope
from tallybook.kit.errors import ServiceUnavailable
from tallybook.kit.money import normalize_currency
from tallybook.kit.pagination import PageRequest
from tallybook.kit.settings import Settings
from tallybook.payments import service, signature
from tallybook.payments.context import PaymentsContext
from tallybook.payments.errors import PaymentsCode
from tallybook.payments.inbox import processor, store
from tallybook.payments.schemas import (
    ClearingBalanceOut,
    CollectionOut,
    DisputeOut,
    InboundEventOut,
    MarkPaidBody,
    MarkUncollectibleBody,
    PaymentAccountBody,
    PaymentAccountOut,
    PaymentOut,
    PayoutOut,
    RefundCreateBody,
    RefundOut,
    WebhookReceivedOut,
)
from tallybook.payments.service import queries, refunds
from tallybook.payments.settings import PaymentsSettings

READ = require("payments:read")
WRITE = require("payments:write")

webhook_router = make_router("/v1/webhooks", tags=["payments"])
collections_router = make_router("/v1/collections", tags=["payments"])
payments_router = make_router("/v1/payments", tags=["payments"])
money_router = make_router("/v1", tags=["payments"])
accounts_router = make_router("/v1/customers", tags=["payments"])
inbox_router = make_router("/v1/inbound_events", tags=["payments"])

STRIPE_EVENT_SCHEMA: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A Stripe event, exactly as Stripe sent it (signed bytes)",
                    "required": ["id", "type", "created", "data"],
                    "properties": {
                        "id": {"type": "string", "example": "evt_1MoS6tLgUG5tbmjchDsX6fiT"},
                        "object": {"type": "string", "enum": ["event"]},
                        "type": {"type": "string", "example": "payment_intent.succeeded"},
                        "created": {"type": "integer"},
                        "livemode": {"type": "boolean"},
                        "api_version": {"type": "string"},
                        "data": {
                            "type": "object",
                            "properties": {"object": {"type": "object"}},
                        },
                    },
                }
            }
        },
    },
    "parameters": [
        {
            "name": "Stripe-Signature",
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=…]",
        }
    ],
}


def payments_context(request: Request) -> PaymentsContext:
    """Built once per app from its settings (a provider holds a connection pool)."""
    state = request.app.state
    context = getattr(state, "payments_context", None)
    if context is None:
        settings: Settings | None = getattr(state, "settings", None)
        context = PaymentsContext.of(PaymentsSettings.from_settings(settings))
        state.payments_context = context
    assert isinstance(context, PaymentsContext)
    return context


# Webhooks in --------------------------------------------------------------------------------------


@webhook_router.post(
    "/stripe",
    response_model=WebhookReceivedOut,
    responses={**ERROR_RESPONSES, 503: {"description": "No webhook secret is configured"}},
    openapi_extra=STRIPE_EVENT_SCHEMA,
    summary="Receive a Stripe event (signed; stored once by event id, processed by the worker)",
)
async def stripe_webhook(request: Request) -> Response:
    payload = await request.body()
    header = request.headers.get(signature.SIGNATURE_HEADER)
    db = get_database(request)
    settings = payments_context(request).settings

    def receive() -> store.Accepted:
        if not settings.stripe_webhook_secrets:
            raise ServiceUnavailable(
                PaymentsCode.WEBHOOK_SECRET_UNSET,
                "no Stripe webhook secret is configured (TALLYBOOK_STRIPE_WEBHOOK_SECRETS)",
            )
        signature.verify(
            payload,
            header,
            settings.stripe_webhook_secrets,
            now=db.clock.now(),
            tolerance_seconds=settings.webhook_tolerance_seconds,
        )
        with db.transaction(actor="stripe") as tx:
            return store.accept(tx, payload)

    accepted = await run_in_threadpool(receive)
    return json_response(
        WebhookReceivedOut(event_id=accepted.event_id, duplicate=accepted.duplicate)
    )


# Collections -----------------------------------------------------------------------------------------


@collections_router.get("", response_model=ListEnvelope[CollectionOut], responses=ERROR_RESPONSES)
def list_collections(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    customer: str | None = Query(None, description="A customer id"),
    status: str | None = Query(None, description="e.g. retrying, exhausted, paid"),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = queries.list_collections(tx, page, customer_id=customer, status=status)
        return list_envelope(result, "/v1/collections", [CollectionOut.of(c) for c in result.data])

    return edge.read(run)


@collections_router.get("/{collection}", response_model=CollectionOut, responses=ERROR_RESPONSES)
def get_collection(collection: str, edge: Edge = Depends(READ)) -> Response:
    """By collection id (`col_…`) or by invoice id. Includes its attempts and payments."""

    def run(tx: Tx) -> CollectionOut:
        found = service.get_collection(tx, collection)
        return CollectionOut.of(found, queries.payments_of(tx, found))

    return edge.read(run)


@collections_router.post(
    "/{collection}/retry", response_model=PaymentOut, responses=ERROR_RESPONSES
)
def retry_collection(collection: str, request: Request, edge: Edge = Depends(WRITE)) -> Response:
    """A manual retry: a new attempt now (the provider call follows within seconds). It does
    not use up a scheduled retry."""
    ctx = payments_context(request)
    return edge.write(lambda tx: PaymentOut.of(service.retry_collection(tx, collection, ctx)))


@collections_router.post(
    "/{collection}/mark_paid", response_model=PaymentOut, responses=ERROR_RESPONSES
)
def mark_paid(
    collection: str, body: MarkPaidBody, request: Request, edge: Edge = Depends(WRITE)
) -> Response:
    """Finance records a bank transfer (all that is owed by default, or part of it)."""
    ctx = payments_context(request)

    def run(tx: Tx) -> PaymentOut:
        payment = service.mark_paid(
            tx,
            collection,
            ctx,
            amount_minor=body.amount_minor,
            currency=body.currency,
            reference=body.reference,
            paid_at=body.paid_at,
        )
        return PaymentOut.of(payment)

    return edge.write(run, fingerprint=body)


@collections_router.post(
    "/{collection}/mark_uncollectible", response_model=CollectionOut, responses=ERROR_RESPONSES
)
def mark_uncollectible(
    collection: str, body: MarkUncollectibleBody, edge: Edge = Depends(WRITE)
) -> Response:
    """Stop collecting and write the invoice off."""

    def run(tx: Tx) -> CollectionOut:
        found = service.mark_uncollectible(tx, collection, reason=body.reason)
        return CollectionOut.of(found, queries.payments_of(tx, found))

    return edge.write(run, fingerprint=body)


# Payments and refunds --------------------------------------------------------------------------------


@payments_router.get("", response_model=ListEnvelope[PaymentOut], responses=ERROR_RESPONSES)
def list_payments(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    customer: str | None = Query(None),
    invoice: str | None = Query(None),
    status: str | None = Query(None),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = queries.list_payments(
            tx, page, customer_id=customer, invoice_id=invoice, status=status
        )
        return list_envelope(result, "/v1/payments", [PaymentOut.of(p) for p in result.data])

    return edge.read(run)


@payments_router.get("/{payment}", response_model=PaymentOut, responses=ERROR_RESPONSES)
def get_payment(payment: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: PaymentOut.of(queries.get_payment(tx, payment)))


@payments_router.post("/{payment}/refunds", response_model=RefundOut, responses=ERROR_RESPONSES)
def create_refund(
    payment: str, body: RefundCreateBody, request: Request, edge: Edge = Depends(WRITE)
) -> Response:
    """Refund all or part of a succeeded payment. Issue a credit note first so the refund comes
    out of the customer's balance; without one the refund reopens the receivable."""
    ctx = payments_context(request)

    def run(tx: Tx) -> RefundOut:
        refund = service.request_refund(
            tx, payment, amount_minor=body.amount_minor, reason=body.reason, ctx=ctx
        )
        return RefundOut.of(refund)

    return edge.write(run, fingerprint=body)


@money_router.get("/refunds", response_model=ListEnvelope[RefundOut], responses=ERROR_RESPONSES)
def list_refunds(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    payment: str | None = Query(None),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = queries.list_refunds(tx, page, payment_id=payment)
        return list_envelope(result, "/v1/refunds", [RefundOut.of(r) for r in result.data])

    return edge.read(run)


@money_router.get("/refunds/{refund}", response_model=RefundOut, responses=ERROR_RESPONSES)
def get_refund(refund: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: RefundOut.of(refunds.get(tx, refund)))


@money_router.get("/disputes", response_model=ListEnvelope[DisputeOut], responses=ERROR_RESPONSES)
def list_disputes(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    status: str | None = Query(None),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = queries.list_disputes(tx, page, status=status)
        return list_envelope(result, "/v1/disputes", [DisputeOut.of(d) for d in result.data])

    return edge.read(run)


@money_router.get("/payouts", response_model=ListEnvelope[PayoutOut], responses=ERROR_RESPONSES)
def list_payouts(edge: Edge = Depends(READ), page: PageRequest = Depends(page_params)) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = queries.list_payouts(tx, page)
        return list_envelope(result, "/v1/payouts", [PayoutOut.of(p) for p in result.data])

    return edge.read(run)


@money_router.get("/clearing_balance", response_model=ClearingBalanceOut, responses=ERROR_RESPONSES)
def get_clearing_balance(
    currency: str = Query(..., description="ISO 4217"),
    provider: str = Query("stripe", description="stripe | manual"),
    edge: Edge = Depends(READ),
) -> Response:
    """What the clearing account says the provider still holds for us (zero once paid out)."""
    code = normalize_currency(currency)
    return edge.read(
        lambda tx: ClearingBalanceOut.of(service.clearing_balance(tx, code, provider=provider))
    )


# Payment accounts ---------------------------------------------------------------------------------------


@accounts_router.get(
    "/{customer}/payment_account", response_model=PaymentAccountOut, responses=ERROR_RESPONSES
)
def get_payment_account(customer: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: PaymentAccountOut.of(service.get_account(tx, customer)))


@accounts_router.post(
    "/{customer}/payment_account", response_model=PaymentAccountOut, responses=ERROR_RESPONSES
)
def set_payment_account(
    customer: str, body: PaymentAccountBody, request: Request, edge: Edge = Depends(WRITE)
) -> Response:
    """Choose how a customer pays: `stripe` (optionally an existing Stripe customer) or
    `manual` (bank transfer)."""
    ctx = payments_context(request)

    def run(tx: Tx) -> PaymentAccountOut:
        account = service.link_account(
            tx,
            customer,
            provider=body.provider,
            provider_customer_id=body.stripe_customer_id,
            providers=ctx.providers,
        )
        return PaymentAccountOut.of(account)

    return edge.write(run, fingerprint=body)


# Inbound events -------------------------------------------------------------------------------------------


@inbox_router.get("", response_model=ListEnvelope[InboundEventOut], responses=ERROR_RESPONSES)
def list_inbound_events(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    status: str | None = Query(None, description="pending | processed | ignored | parked"),
    type: str | None = Query(None, description="e.g. payment_intent.succeeded"),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = queries.list_events(tx, page, status=status, type_=type)
        return list_envelope(
            result, "/v1/inbound_events", [InboundEventOut.of(e) for e in result.data]
        )

    return edge.read(run)


@inbox_router.get("/{event}", response_model=InboundEventOut, responses=ERROR_RESPONSES)
def get_inbound_event(event: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: InboundEventOut.of(queries.get_event(tx, event), with_payload=True))


@inbox_router.post("/{event}/replay", response_model=InboundEventOut, responses=ERROR_RESPONSES)
def replay_inbound_event(event: str, edge: Edge = Depends(WRITE)) -> Response:
    """Process a parked (or ignored) event again, now."""
    return edge.write(lambda tx: InboundEventOut.of(processor.replay(tx, event)))


routers: list[APIRouter] = [
    webhook_router,
    collections_router,
    payments_router,
    money_router,
    accounts_router,
    inbox_router,
]
