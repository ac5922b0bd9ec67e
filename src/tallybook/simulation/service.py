"""Pricing simulation use cases. Reads only: :func:`simulate` refuses to run in a unit of work
that could write (``Database.read()`` is read-only and always rolled back).

    from tallybook.simulation import service as simulation
    with db.read() as tx:
        report = simulation.simulate(tx, SimulationRequest("pv_…", all_customers=True, periods=3))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from tallybook.catalog import plans
from tallybook.catalog.domain import VersionTerms
from tallybook.customers import service as customers
from tallybook.customers.models import Customer
from tallybook.db import Tx
from tallybook.invoicing import service as invoicing
from tallybook.invoicing.domain import FINALIZED, InvoiceKind, InvoiceStatus
from tallybook.invoicing.usage import Measure, measure
from tallybook.invoicing.views import InvoiceView
from tallybook.kit.errors import InvalidRequest, NotFound
from tallybook.kit.invariant import invariant
from tallybook.kit.pagination import LIMIT_MAX, PageRequest
from tallybook.rating import UsageRequest, usage_requests
from tallybook.simulation.domain import (
    CustomerResult,
    PeriodResult,
    RecordedCharge,
    SimulationReport,
    Skipped,
    price_rows,
    rate_current,
    rate_proposed,
    simulated_phase,
)
from tallybook.simulation.errors import SimulationCode
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.service import PeriodRatingInput
from tallybook.subscriptions.views import SubscriptionView

PERIODS_MAX: Final = 24
#: Customers named in one simulation.
CUSTOMERS_MAX: Final = 1000
#: Subscriptions a simulation of every customer reads.
SUBSCRIPTIONS_MAX: Final = 20_000
#: Invoices read per subscription to find its closed periods.
INVOICES_PER_SUBSCRIPTION_MAX: Final = 2_000
#: Invoice statuses whose lines count as billed (a void invoice forgave its bill).
BILLED: Final = frozenset(FINALIZED - {InvoiceStatus.VOID})
_ENDED: Final = frozenset({"canceled"})


@dataclass(frozen=True, slots=True)
class SimulationRequest:
    plan_version_id: str
    #: Customer ids or external ids; empty with ``all_customers``.
    customer_ids: tuple[str, ...] = ()
    #: Every customer with a live subscription on any version of the simulated version's plan.
    all_customers: bool = False
    #: How many of each subscription's last closed periods to re-rate.
    periods: int = 1


def _validate(request: SimulationRequest) -> None:
    if not 1 <= request.periods <= PERIODS_MAX:
        raise InvalidRequest(
            SimulationCode.PERIODS_INVALID,
            f"periods must be between 1 and {PERIODS_MAX}",
            param="periods",
        )
    if request.all_customers == bool(request.customer_ids):
        raise InvalidRequest(
            SimulationCode.CUSTOMERS_INVALID,
            "name the customers to simulate, or ask for all of them (not both)",
            param="customers",
        )
    if len(request.customer_ids) > CUSTOMERS_MAX:
        raise InvalidRequest(
            SimulationCode.CUSTOMERS_INVALID,
            f"at most {CUSTOMERS_MAX} customers per simulation (use all)",
            param="customers",
        )


def simulate(tx: Tx, request: SimulationRequest) -> SimulationReport:
    """Re-rate the last ``request.periods`` closed periods of each chosen customer's
    subscriptions under ``request.plan_version_id`` (see ``docs/simulation.md``).

    Named customers that cannot be simulated (another currency or interval) are errors;
    with ``all_customers`` they are listed in ``skipped`` instead."""
    invariant(tx.read_only, "a simulation runs in a read-only unit of work")
    _validate(request)
    version = plans.get_version(tx, request.plan_version_id, param="plan_version")
    terms = plans.version_terms(tx, version.id)
    chosen: list[tuple[Customer, list[SubscriptionView]]] = []
    if request.all_customers:
        chosen = _plan_subscribers(tx, terms.plan_id)
    else:
        for index, ref in enumerate(dict.fromkeys(request.customer_ids)):
            try:
                customer = customers.resolve(tx, ref)
            except NotFound:
                raise NotFound("customer", ref, param=f"customers[{index}]") from None
            chosen.append((customer, _customer_subscriptions(tx, customer, terms.plan_id)))
    results: list[CustomerResult] = []
    skipped: list[Skipped] = []
    for customer, subs in chosen:
        try:
            result = _simulate_customer(tx, customer, subs, terms, request.periods)
        except InvalidRequest as error:
            if not request.all_customers:
                raise
            skipped.append(Skipped(customer.id, error.code, error.message))
            continue
        if result is None:
            skipped.append(Skipped(customer.id, "no_closed_periods", "no closed period to rate"))
            continue
        results.append(result)
    return SimulationReport(
        plan_version_id=version.id,
        plan_id=terms.plan_id,
        plan_key=terms.plan_key,
        plan_name=terms.plan_name,
        version=terms.version,
        version_status=str(terms.status),
        currency=terms.currency,
        periods_max=request.periods,
        generated_at=tx.now(),
        customers=tuple(results),
        skipped=tuple(skipped),
    )


# Choosing subscriptions ----------------------------------------------------------------------


def _plan_subscribers(tx: Tx, plan_id: str) -> list[tuple[Customer, list[SubscriptionView]]]:
    by_customer: dict[str, list[SubscriptionView]] = {}
    read = 0
    for version in plans.list_versions(tx, plan_id):
        after: str | None = None
        while read < SUBSCRIPTIONS_MAX:
            page = subscriptions.list_page(
                tx, PageRequest(limit=LIMIT_MAX, starting_after=after), plan_version_id=version.id
            )
            for sub in page.data:
                if sub.status not in _ENDED:
                    by_customer.setdefault(sub.customer_id, []).append(sub)
            read += len(page.data)
            if not page.has_more or not page.data:
                break
            after = page.data[-1].id
    return [
        (customers.get(tx, customer_id), subs) for customer_id, subs in sorted(by_customer.items())
    ]


def _customer_subscriptions(tx: Tx, customer: Customer, plan_id: str) -> list[SubscriptionView]:
    """The customer's live subscriptions on the simulated plan, or else all of them (a
    customer on another plan is simulated as if moved to this version)."""
    live = subscriptions.for_customer(tx, customer.id)
    on_plan = [s for s in live if s.plan_id == plan_id]
    return on_plan or live


# Rating ---------------------------------------------------------------------------------------


def _check_compatible(
    customer: Customer, sub: SubscriptionView, rating: PeriodRatingInput, terms: VersionTerms
) -> None:
    if sub.currency != terms.currency:
        raise InvalidRequest(
            SimulationCode.CURRENCY_MISMATCH,
            f"customer {customer.id} is billed in {sub.currency} (subscription {sub.id}); "
            f"plan version {terms.plan_version_id} prices in {terms.currency}",
            param="plan_version",
        )
    for phase in rating.phases:
        if phase.terms.interval != terms.interval:
            raise InvalidRequest(
                SimulationCode.INTERVAL_MISMATCH,
                f"subscription {sub.id} of customer {customer.id} bills every "
                f"{phase.terms.interval.count} {phase.terms.interval.unit}; plan version "
                f"{terms.plan_version_id} every {terms.interval.count} {terms.interval.unit}",
                param="plan_version",
            )


def _all_invoices(tx: Tx, subscription_id: str) -> list[InvoiceView]:
    found: list[InvoiceView] = []
    after: str | None = None
    while len(found) < INVOICES_PER_SUBSCRIPTION_MAX:
        page = invoicing.list_invoices(
            tx, PageRequest(limit=LIMIT_MAX, starting_after=after), subscription_id=subscription_id
        )
        found += page.data
        if not page.has_more or not page.data:
            break
        after = page.data[-1].id
    return found


def _closed_periods(
    tx: Tx, sub: SubscriptionView, count: int
) -> tuple[list[PeriodRatingInput], dict[str, int]]:
    """The subscription's last ``count`` closed (cycle-invoiced), billable periods, oldest
    first, and what its non-void finalized invoices billed per period."""
    invoices = _all_invoices(tx, sub.id)
    closed = {
        i.period_id for i in invoices if i.kind == InvoiceKind.CYCLE and i.status in FINALIZED
    }
    billed: dict[str, int] = {}
    for invoice in invoices:
        if invoice.status not in BILLED:
            continue
        for line in invoice.lines:
            if line.period_id is not None:
                billed[line.period_id] = billed.get(line.period_id, 0) + line.amount_minor
    chosen: list[PeriodRatingInput] = []
    for period in sorted(subscriptions.periods(tx, sub.id), key=lambda p: p.start_at, reverse=True):
        if len(chosen) >= count:
            break
        if period.id is None or period.id not in closed or period.is_trial:
            continue
        rating = subscriptions.period_rating_input(tx, period.id)
        if rating.billing_period.trial or not rating.phases:
            continue
        chosen.append(rating)
    return list(reversed(chosen)), billed


def _simulate_customer(
    tx: Tx,
    customer: Customer,
    subs: Sequence[SubscriptionView],
    terms: VersionTerms,
    count: int,
) -> CustomerResult | None:
    work: list[tuple[PeriodRatingInput, int]] = []
    for sub in sorted(subs, key=lambda s: s.id):
        periods, billed = _closed_periods(tx, sub, count)
        for rating in periods:
            _check_compatible(customer, sub, rating, terms)
            work.append((rating, billed.get(rating.period.id or "", 0)))
    if not work:
        return None
    # Every quantity of the customer (both sides) in one set-based read.
    items: list[Measure] = []
    plans_of: list[tuple[list[UsageRequest], list[UsageRequest], int]] = []
    for rating, _ in work:
        phase = simulated_phase(rating.billing_period, rating.phases, terms)
        proposed_requests = (
            usage_requests(rating.billing_period, [phase]) if phase is not None else []
        )
        plans_of.append((list(rating.usage_requests), proposed_requests, len(items)))
        items += [Measure.of(customer.id, r) for r in rating.usage_requests]
        items += [Measure.of(customer.id, r) for r in proposed_requests]
    values = measure(tx, items) if items else []
    charges_by_sub = {
        sub.id: subscriptions.charges(tx, sub.id)
        for sub in subs
        if any(w[0].subscription_id == sub.id for w in work)
    }
    results: list[PeriodResult] = []
    for (rating, billed_minor), (current_reqs, proposed_reqs, offset) in zip(
        work, plans_of, strict=True
    ):
        current_usage = _quantities(current_reqs, values, offset)
        proposed_usage = _quantities(proposed_reqs, values, offset + len(current_reqs))
        recorded = [
            RecordedCharge(c.amount_minor, c.price_id, c.price_key)
            for c in charges_by_sub[rating.subscription_id]
            if c.period_id == rating.period.id
        ]
        current = rate_current(rating.billing_period, rating.phases, current_usage, recorded)
        phase = simulated_phase(rating.billing_period, rating.phases, terms)
        invariant(phase is not None, "a period with phases has a simulated phase")
        assert phase is not None
        proposed = rate_proposed(rating.billing_period, phase, proposed_usage)
        rows = price_rows(
            (price for p in rating.phases for price in p.terms.prices),
            terms.prices,
            current,
            proposed,
        )
        results.append(
            PeriodResult(
                subscription_id=rating.subscription_id,
                period_id=rating.period.id or "",
                start=rating.period.start_at,
                end=rating.period.end_at,
                invoiced_minor=billed_minor,
                current_minor=current.total_minor,
                proposed_minor=proposed.total_minor,
                prices=tuple(rows),
            )
        )
    return CustomerResult(
        customer_id=customer.id,
        external_id=customer.external_id,
        name=customer.name,
        currency=terms.currency,
        periods=tuple(results),
    )


def _quantities(
    requests: Sequence[UsageRequest], values: Sequence[Decimal], offset: int
) -> dict[tuple[str, str], Decimal]:
    return {request.key: values[offset + i] for i, request in enumerate(requests)}
