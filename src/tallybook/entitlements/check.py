"""The entitlement check through the services (both backends, every case). The PostgreSQL
hot path (``fast_pg.py``) answers the common case with two statements and falls back to
this for the rest; both end in the same pure ``domain.resolve`` and ``domain.decide``.

Facts are read fresh on every check: subscriptions (a status change counts at once), the
override, open reservations, usage grants and usage. Only immutable things are cached
(``catalog_cache``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tallybook.catalog.domain import FeatureType, LimitEnforcement
from tallybook.catalog.meter_models import Aggregation
from tallybook.customers import repository as customers_repository
from tallybook.customers.models import Customer
from tallybook.db import Tx
from tallybook.entitlements import catalog_cache, repository, spend, usage
from tallybook.entitlements.domain import (
    ZERO,
    CheckResult,
    Definition,
    FeatureInfo,
    OverrideFacts,
    PlanFacts,
    Policies,
    SubscriptionFacts,
    decide,
    resolve,
)
from tallybook.entitlements.errors import EntitlementCode
from tallybook.entitlements.models import EntitlementOverride
from tallybook.grants import service as grants
from tallybook.kit.errors import InvalidRequest
from tallybook.kit.quantity import to_decimal
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.views import SubscriptionView


def parse_quantity(value: object) -> Decimal | None:
    if value is None:
        return None
    quantity = to_decimal(value, param="quantity")
    if quantity < 0:
        raise InvalidRequest(
            EntitlementCode.QUANTITY_NEGATIVE, "quantity must not be negative", param="quantity"
        )
    return quantity


def resolve_customer(tx: Tx, ref: str) -> Customer:
    customer = customers_repository.get(tx, ref) or customers_repository.get_by_external_id(tx, ref)
    if customer is None:
        raise InvalidRequest(
            EntitlementCode.CUSTOMER_NOT_FOUND,
            f"no customer with id or external_id '{ref}'",
            param="customer",
            http_status=404,
        )
    return customer


def resolve_feature(tx: Tx, ref: str) -> FeatureInfo:
    feature = catalog_cache.feature_info(tx, ref)
    if feature is None:
        raise InvalidRequest(
            EntitlementCode.FEATURE_NOT_FOUND,
            f"no feature with id or key '{ref}'",
            param="feature",
            http_status=404,
        )
    return feature


def override_facts(row: EntitlementOverride | None) -> OverrideFacts | None:
    if row is None:
        return None
    return OverrideFacts(
        id=row.id,
        enabled=row.enabled,
        config=row.config,
        limit=row.limit_quantity,
        unlimited=row.unlimited,
        enforcement=LimitEnforcement(row.enforcement) if row.enforcement else None,
        expires_at=row.expires_at,
    )


def _period(
    tx: Tx, view: SubscriptionView, now: datetime
) -> tuple[datetime | None, datetime | None]:
    start, end = view.current_period_start_at, view.current_period_end_at
    if start is not None and end is not None and start <= now < end:
        return start, end
    # The period ended and the job has not moved the subscription on yet: where it will be.
    projected = subscriptions.current_period(tx, subscriptions.get(tx, view.id), now)
    if projected is None:
        return None, None
    return projected.start_at, projected.end_at


def subscription_facts(
    tx: Tx, customer_id: str, now: datetime
) -> list[tuple[SubscriptionFacts, PlanFacts]]:
    """The customer's subscriptions (not canceled) with their current periods and plans."""
    facts = []
    for view in subscriptions.for_customer(tx, customer_id):
        start, end = _period(tx, view, now)
        facts.append(
            (
                SubscriptionFacts(
                    id=view.id,
                    status=view.status,
                    plan_version_id=view.plan_version_id,
                    created_at=view.created_at,
                    period_start=start,
                    period_end=end,
                ),
                catalog_cache.plan_facts(tx, view.plan_version_id),
            )
        )
    return facts


def meter_of_definition(
    feature: FeatureInfo,
    definition: Definition,
    subscriptions_facts: list[tuple[SubscriptionFacts, PlanFacts]],
) -> str | None:
    """The meter a metered entitlement counts: the one the oldest granting plan version was
    drafted with (a limit keeps counting the meter version it was defined on), else the
    feature's."""
    for subscription, plan in subscriptions_facts:
        if subscription.id in definition.subscription_ids:
            entitlement = plan.entitlements.get(feature.id)
            if entitlement is not None and entitlement.meter_id:
                return entitlement.meter_id
    return feature.meter_id


@dataclass(frozen=True, slots=True)
class Measured:
    used: Decimal
    reserved: Decimal
    granted: Decimal


def measure(
    tx: Tx,
    *,
    customer_id: str,
    feature: FeatureInfo,
    meter_id: str,
    definition: Definition,
    now: datetime,
) -> Measured:
    assert definition.window is not None
    meter = catalog_cache.meter_facts(tx, meter_id)
    used = usage.usage_in(
        tx,
        meter_id=meter_id,
        aggregation=Aggregation(meter.aggregation),
        customer_id=customer_id,
        start=definition.window[0],
        end=definition.window[1],
    )
    reserved = repository.reserved_quantity(tx, customer_id, feature.id, now)
    granted = ZERO
    if definition.limit is not None:
        granted = usage_granted(tx, customer_id, meter_id, now)
    return Measured(used, reserved, granted)


def usage_granted(tx: Tx, customer_id: str, meter_id: str, now: datetime) -> Decimal:
    """Units the customer's live usage grants of the meter still hold (through the ledger)."""
    sources = grants.credit_sources(tx, customer_id, at=now, meter_id=meter_id)
    return sum((s.available_quantity for s in sources), start=ZERO)


def evaluate(
    tx: Tx,
    customer: Customer,
    feature: FeatureInfo,
    *,
    quantity: Decimal | None,
    policies: Policies,
    facts: list[tuple[SubscriptionFacts, PlanFacts]] | None = None,
) -> CheckResult:
    now = tx.now()
    if facts is None:
        facts = subscription_facts(tx, customer.id, now)
    override = override_facts(repository.live_override(tx, customer.id, feature.id, now))
    definition = resolve(
        feature, override=override, subscriptions=facts, policies=policies, now=now
    )
    if feature.type is not FeatureType.METERED or not definition.needs_usage:
        return decide(customer.id, feature, definition, quantity=quantity)
    meter_id = meter_of_definition(feature, definition, facts)
    assert meter_id is not None, "a metered feature has a meter"
    measured = measure(
        tx,
        customer_id=customer.id,
        feature=feature,
        meter_id=meter_id,
        definition=definition,
        now=now,
    )
    spend_facts = spend.spend_facts_for(
        tx, customer, meter_id=meter_id, quantity=quantity, facts=facts, now=now
    )
    return decide(
        customer.id,
        feature,
        definition,
        used=measured.used,
        reserved=measured.reserved,
        granted=measured.granted,
        quantity=quantity,
        spend=spend_facts,
    )


def check(
    tx: Tx,
    customer: str,
    feature: str,
    *,
    quantity: object = None,
    policies: Policies | None = None,
) -> CheckResult:
    """May this customer use this feature now (``quantity`` more of it)?"""
    amount = parse_quantity(quantity)
    found = resolve_customer(tx, customer)
    info = resolve_feature(tx, feature)
    return evaluate(tx, found, info, quantity=amount, policies=policies or Policies())


def check_all(tx: Tx, customer: str, *, policies: Policies | None = None) -> list[CheckResult]:
    """Every feature the customer holds from a plan or an override, each checked (without a
    quantity), ordered by feature key."""
    found = resolve_customer(tx, customer)
    now = tx.now()
    facts = subscription_facts(tx, found.id, now)
    feature_ids: set[str] = set()
    for _, plan in facts:
        feature_ids.update(plan.entitlements)
    feature_ids.update(row.feature_id for row in repository.live_overrides(tx, found.id, now))
    features = [resolve_feature(tx, feature_id) for feature_id in feature_ids]
    return [
        evaluate(tx, found, info, quantity=None, policies=policies or Policies(), facts=facts)
        for info in sorted(features, key=lambda f: f.key)
    ]
