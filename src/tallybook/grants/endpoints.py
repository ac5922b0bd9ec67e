"""HTTP routes of the grants domain: ``/v1/grants``, ``/v1/recurring_grants``,
``/v1/plan_credit_rules`` and ``/v1/promotion_codes``. Scopes ``grants:read`` /
``grants:write``; every POST takes an ``Idempotency-Key``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from tallybook.db import Tx
from tallybook.grants import promotions, service
from tallybook.grants.schemas import (
    GrantCreateBody,
    GrantOut,
    PlanCreditRuleBody,
    PlanCreditRuleOut,
    PromotionCodeBody,
    PromotionCodeOut,
    ReasonBody,
    RecurringCreateBody,
    RecurringOut,
    RedeemBody,
    RedemptionOut,
    SyncBody,
    SyncOut,
)
from tallybook.http.edge import Edge, make_router, page_params, require
from tallybook.http.errors import ERROR_RESPONSES
from tallybook.http.responses import ListEnvelope, list_envelope
from tallybook.kit.pagination import PageRequest

READ = require("grants:read")
WRITE = require("grants:write")

grants_router = make_router("/v1/grants", tags=["grants"])
recurring_router = make_router("/v1/recurring_grants", tags=["grants"])
rules_router = make_router("/v1/plan_credit_rules", tags=["grants"])
codes_router = make_router("/v1/promotion_codes", tags=["promotion codes"])


# Grants --------------------------------------------------------------------------------------


@grants_router.post("", response_model=GrantOut, responses=ERROR_RESPONSES)
def create_grant(body: GrantCreateBody, edge: Edge = Depends(WRITE)) -> Response:
    """Issue a credit grant: money in the customer's currency (`amount_minor`) or units of a
    meter (`meter`, `quantity`). Its wallet is funded in the ledger in the same transaction;
    the API key's actor and `reason` are recorded as who issued it and why."""

    def run(tx: Tx) -> GrantOut:
        grant = service.issue_grant(tx, body.to_input())
        return GrantOut.of(service.view(tx, grant))

    return edge.write(run, fingerprint=body)


@grants_router.get("", response_model=ListEnvelope[GrantOut], responses=ERROR_RESPONSES)
def list_grants(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    customer: str | None = Query(None, description="Customer id or external id"),
    status: str | None = Query(None, description="active, voided or expired"),
) -> Response:
    def run(tx: Tx) -> dict[str, object]:
        found = service.list_views(tx, page, customer=customer, status=status)
        return list_envelope(found, "/v1/grants", [GrantOut.of(v) for v in found.data])

    return edge.read(run)


@grants_router.get("/{grant_id}", response_model=GrantOut, responses=ERROR_RESPONSES)
def get_grant(grant_id: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: GrantOut.of(service.get_view(tx, grant_id)))


@grants_router.post("/{grant_id}/void", response_model=GrantOut, responses=ERROR_RESPONSES)
def void_grant(grant_id: str, body: ReasonBody, edge: Edge = Depends(WRITE)) -> Response:
    """End a grant now; what it still holds returns to its source through the ledger
    (money held by open reservations follows when they resolve)."""

    def run(tx: Tx) -> GrantOut:
        grant = service.void_grant(tx, grant_id, reason=body.reason)
        return GrantOut.of(service.view(tx, grant))

    return edge.write(run, fingerprint=body)


# Recurring grants ----------------------------------------------------------------------------


@recurring_router.post("", response_model=RecurringOut, responses=ERROR_RESPONSES)
def create_recurring(body: RecurringCreateBody, edge: Edge = Depends(WRITE)) -> Response:
    """A grant every N days/weeks/months/years from `anchor_at`, on its own cadence. Instances
    already due are issued at once; the `grants.recurring` job issues the rest."""
    return edge.write(
        lambda tx: RecurringOut.of(service.create_recurring(tx, body.to_input())),
        fingerprint=body,
    )


@recurring_router.get("", response_model=ListEnvelope[RecurringOut], responses=ERROR_RESPONSES)
def list_recurring(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    customer: str | None = Query(None),
    status: str | None = Query(None, description="active, canceled or ended"),
) -> Response:
    def run(tx: Tx) -> dict[str, object]:
        found = service.list_recurring(tx, page, customer=customer, status=status)
        return list_envelope(
            found, "/v1/recurring_grants", [RecurringOut.of(r) for r in found.data]
        )

    return edge.read(run)


@recurring_router.get("/{recurring_id}", response_model=RecurringOut, responses=ERROR_RESPONSES)
def get_recurring(recurring_id: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: RecurringOut.of(service.get_recurring(tx, recurring_id)))


@recurring_router.post(
    "/{recurring_id}/cancel", response_model=RecurringOut, responses=ERROR_RESPONSES
)
def cancel_recurring(recurring_id: str, body: ReasonBody, edge: Edge = Depends(WRITE)) -> Response:
    """Stop issuing. Instances already issued stay (void them one by one if needed)."""
    return edge.write(
        lambda tx: RecurringOut.of(service.cancel_recurring(tx, recurring_id, reason=body.reason)),
        fingerprint=body,
    )


# Plan credit rules ---------------------------------------------------------------------------


@rules_router.post("", response_model=PlanCreditRuleOut, responses=ERROR_RESPONSES)
def create_rule(body: PlanCreditRuleBody, edge: Edge = Depends(WRITE)) -> Response:
    """Credits included in a plan version: each subscription on it gets a recurring grant
    (source `plan`) following this rule, started by the `grants.plan_credits` job or `sync`."""
    return edge.write(
        lambda tx: PlanCreditRuleOut.of(service.create_rule(tx, body.to_input())),
        fingerprint=body,
    )


@rules_router.get("", response_model=ListEnvelope[PlanCreditRuleOut], responses=ERROR_RESPONSES)
def list_rules(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    plan_version: str | None = Query(None),
) -> Response:
    def run(tx: Tx) -> dict[str, object]:
        found = service.list_rules(tx, page, plan_version_id=plan_version)
        return list_envelope(
            found, "/v1/plan_credit_rules", [PlanCreditRuleOut.of(r) for r in found.data]
        )

    return edge.read(run)


@rules_router.get("/{rule_id}", response_model=PlanCreditRuleOut, responses=ERROR_RESPONSES)
def get_rule(rule_id: str, edge: Edge = Depends(READ)) -> Response:
    return edge.read(lambda tx: PlanCreditRuleOut.of(service.get_rule(tx, rule_id)))


@rules_router.post(
    "/{rule_id}/archive", response_model=PlanCreditRuleOut, responses=ERROR_RESPONSES
)
def archive_rule(rule_id: str, edge: Edge = Depends(WRITE)) -> Response:
    """No new schedules; existing ones end at their next instance."""
    return edge.write(lambda tx: PlanCreditRuleOut.of(service.archive_rule(tx, rule_id)))


@rules_router.post("/{rule_id}/sync", response_model=SyncOut, responses=ERROR_RESPONSES)
def sync_rule(rule_id: str, body: SyncBody, edge: Edge = Depends(WRITE)) -> Response:
    """Start the schedules of subscriptions on the rule's version now (100 per call)."""

    def run(tx: Tx) -> SyncOut:
        started, last = service.sync(tx, rule_id, after_subscription_id=body.after)
        return SyncOut(rule=rule_id, schedules_started=started, next_subscription=last)

    return edge.write(run, fingerprint=body)


# Promotion codes -----------------------------------------------------------------------------


@codes_router.post("", response_model=PromotionCodeOut, responses=ERROR_RESPONSES)
def create_code(body: PromotionCodeBody, edge: Edge = Depends(WRITE)) -> Response:
    """A percentage or amount off (once, N billed periods or forever), or credits on each
    redemption; optional eligible plans, expiry and redemption limits."""
    return edge.write(
        lambda tx: PromotionCodeOut.of(promotions.create_code(tx, body.to_input())),
        fingerprint=body,
    )


# Declared before "/{code_id}" so that "redeem" is never read as an id.
@codes_router.post("/redeem", response_model=RedemptionOut, responses=ERROR_RESPONSES)
def redeem(body: RedeemBody, edge: Edge = Depends(WRITE)) -> Response:
    """Redeem a code for a customer (on a subscription for discount codes). Limits hold
    under concurrent redemptions."""
    return edge.write(
        lambda tx: RedemptionOut.of(
            promotions.redeem(tx, body.code, customer=body.customer, subscription=body.subscription)
        ),
        fingerprint=body,
    )


@codes_router.get("", response_model=ListEnvelope[PromotionCodeOut], responses=ERROR_RESPONSES)
def list_codes(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    status: str | None = Query(None, description="active or inactive"),
) -> Response:
    def run(tx: Tx) -> dict[str, object]:
        found = promotions.list_codes(tx, page, status=status)
        return list_envelope(
            found, "/v1/promotion_codes", [PromotionCodeOut.of(c) for c in found.data]
        )

    return edge.read(run)


@codes_router.get("/{code_id}", response_model=PromotionCodeOut, responses=ERROR_RESPONSES)
def get_code(code_id: str, edge: Edge = Depends(READ)) -> Response:
    """By id or by the code itself."""
    return edge.read(lambda tx: PromotionCodeOut.of(promotions.resolve_code(tx, code_id)))


@codes_router.post(
    "/{code_id}/deactivate", response_model=PromotionCodeOut, responses=ERROR_RESPONSES
)
def deactivate_code(code_id: str, edge: Edge = Depends(WRITE)) -> Response:
    """No more redemptions; discounts already redeemed continue."""
    return edge.write(
        lambda tx: PromotionCodeOut.of(promotions.set_active(tx, code_id, active=False))
    )


@codes_router.post(
    "/{code_id}/activate", response_model=PromotionCodeOut, responses=ERROR_RESPONSES
)
def activate_code(code_id: str, edge: Edge = Depends(WRITE)) -> Response:
    return edge.write(
        lambda tx: PromotionCodeOut.of(promotions.set_active(tx, code_id, active=True))
    )


@codes_router.get(
    "/{code_id}/redemptions",
    response_model=ListEnvelope[RedemptionOut],
    responses=ERROR_RESPONSES,
)
def list_redemptions(
    code_id: str,
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    customer: str | None = Query(None),
) -> Response:
    def run(tx: Tx) -> dict[str, object]:
        found = promotions.list_redemptions(tx, page, code=code_id, customer=customer)
        return list_envelope(
            found,
            f"/v1/promotion_codes/{code_id}/redemptions",
            [RedemptionOut.of(r) for r in found.data],
        )

    return edge.read(run)


routers: list[APIRouter] = [grants_router, recurring_router, rules_router, codes_router]
