"""Burn-down is pure: priority, then soonest expiry (never last), then oldest; never more than a
source holds, never more than a demand asks."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.grants.domain import (
    CreditSource,
    Demand,
    GrantKind,
    GrantSource,
    MoneyDemand,
    UnitDemand,
    burn_down,
    covered_minor,
    deterministic_id,
    invoice_credit_transfer_id,
    issue_transfer_id,
    remaining_after,
)
from tallybook.kit.clock import utc
from tallybook.kit.ids import ID_PATTERN, new_id
from tallybook.kit.money import Money

T0 = utc(2026, 11, 1)


def source(
    name: str,
    available: int,
    *,
    priority: int = 50,
    expires_in_days: int | None = None,
    age_days: int = 0,
    asset: str = "USD",
    meter_id: str | None = None,
) -> CreditSource:
    return CreditSource(
        grant_id=name,
        customer_id="cus_x",
        account_id=f"acc_{name}",
        kind=GrantKind.USAGE if asset.startswith("U_") else GrantKind.MONETARY,
        source=GrantSource.GOODWILL,
        asset=asset,
        currency=None if asset.startswith("U_") else asset,
        meter_id=meter_id,
        priority=priority,
        effective_at=T0 - timedelta(days=age_days),
        expires_at=T0 + timedelta(days=expires_in_days) if expires_in_days is not None else None,
        available_minor=available,
    )


def taken(applications: list, name: str) -> int:  # type: ignore[type-arg]
    return sum(a.amount_minor for a in applications if a.grant_id == name)


def test_priority_then_soonest_expiry_then_oldest() -> None:
    sources = [
        source("never-old", 100, age_days=9),
        source("late", 100, expires_in_days=30),
        source("soon", 100, expires_in_days=3),
        source("first", 100, priority=10, expires_in_days=90),
        source("never-new", 100, age_days=1),
    ]
    applications = burn_down(sources, [Demand.money(Money(450, "USD"), key="line")])
    assert [(a.grant_id, a.amount_minor) for a in applications] == [
        ("first", 100),
        ("soon", 100),
        ("late", 100),
        ("never-old", 100),
        ("never-new", 50),
    ]
    assert covered_minor(applications, "line") == 450


def test_a_demand_larger_than_the_sources_is_covered_as_far_as_they_go() -> None:
    applications = burn_down([source("a", 300)], [Demand.money(Money(1000, "USD"))])
    assert [(a.grant_id, a.amount_minor) for a in applications] == [("a", 300)]


def test_demands_only_take_their_own_asset() -> None:
    sources = [
        source("usd", 500),
        source("eur", 500, asset="EUR"),
        source("tok", 9, asset="U_TOKENS"),
    ]
    applications = burn_down(
        sources,
        [
            Demand.money(Money(200, "EUR"), key="e"),
            Demand.units("U_TOKENS", Decimal("0.000004"), key="t"),
        ],
    )
    assert [(a.grant_id, a.amount_minor, a.demand_key) for a in applications] == [
        ("eur", 200, "e"),
        ("tok", 4, "t"),
    ]
    assert applications[1].quantity == Decimal("0.000004")
    assert applications[0].quantity is None


def test_successive_demands_share_the_sources() -> None:
    applications = burn_down(
        [source("a", 100), source("b", 100, priority=60)],
        [MoneyDemand(Money(80, "USD"), key="1"), MoneyDemand(Money(80, "USD"), key="2")],
    )
    assert [(a.grant_id, a.amount_minor, a.demand_key) for a in applications] == [
        ("a", 80, "1"),
        ("a", 20, "2"),
        ("b", 60, "2"),
    ]
    left = remaining_after([source("a", 100), source("b", 100, priority=60)], applications)
    assert [(s.grant_id, s.available_minor) for s in left] == [("b", 40)]


def test_a_meter_version_demand_matches_grants_of_that_version() -> None:
    sources = [
        source("v1", 5_000_000, asset="U_TOKENS", meter_id="mtr_1"),
        source("v2", 5_000_000, asset="U_TOKENS", meter_id="mtr_2"),
    ]
    by_version = burn_down(sources, [UnitDemand("mtr_2", Decimal(7))])
    assert [(a.grant_id, a.amount_minor) for a in by_version] == [("v2", 5_000_000)]
    by_asset = burn_down(sources, [Demand.units("U_TOKENS", Decimal(7))])
    assert covered_minor(by_asset, "") == 7_000_000


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[CreditSource], list[int]]:
    count = draw(st.integers(0, 6))
    sources = [
        source(
            f"g{i}",
            draw(st.integers(0, 500)),
            priority=draw(st.sampled_from([0, 10, 50, 50, 100])),
            expires_in_days=draw(st.one_of(st.none(), st.integers(1, 40))),
            age_days=draw(st.integers(0, 30)),
        )
        for i in range(count)
    ]
    demands = draw(st.lists(st.integers(0, 800), max_size=5))
    return sources, demands


def model(sources: list[CreditSource], demands: list[int]) -> dict[tuple[str, int], int]:
    """The rule written the plainest way: repeatedly pick the best source with money left."""
    left = {s.grant_id: s.available_minor for s in sources}
    far = datetime.max.replace(tzinfo=T0.tzinfo)
    out: dict[tuple[str, int], int] = {}
    for index, wanted in enumerate(demands):
        while wanted > 0:
            candidates = [s for s in sources if left[s.grant_id] > 0]
            if not candidates:
                break
            best = min(
                candidates,
                key=lambda s: (s.priority, s.expires_at or far, s.effective_at, s.grant_id),
            )
            amount = min(wanted, left[best.grant_id])
            left[best.grant_id] -= amount
            wanted -= amount
            out[(best.grant_id, index)] = out.get((best.grant_id, index), 0) + amount
    return out


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_burn_down_matches_the_plain_model(case: tuple[list[CreditSource], list[int]]) -> None:
    sources, amounts = case
    demands = [Demand.money(Money(a, "USD"), key=str(i)) for i, a in enumerate(amounts)]
    applications = burn_down(sources, demands)
    got: dict[tuple[str, int], int] = {}
    for application in applications:
        key = (application.grant_id, int(application.demand_key))
        got[key] = got.get(key, 0) + application.amount_minor
    assert got == model(sources, amounts)
    for s in sources:
        assert taken(applications, s.grant_id) <= s.available_minor
    for i, amount in enumerate(amounts):
        assert covered_minor(applications, str(i)) <= amount


def test_transfer_ids_fit_the_ledger() -> None:
    grant_id, invoice_id = new_id("grt"), new_id("in")
    assert issue_transfer_id(grant_id) == f"grant:{grant_id}:issue"
    for kind in GrantKind:
        transfer_id = invoice_credit_transfer_id(invoice_id, grant_id, kind)
        assert len(transfer_id) <= 64
        assert invoice_id in transfer_id
    long_invoice = "inv_" + "x" * 60
    hashed = invoice_credit_transfer_id(long_invoice, grant_id, GrantKind.MONETARY)
    assert hashed.startswith("h:") and len(hashed) == 34
    assert hashed == invoice_credit_transfer_id(long_invoice, grant_id, GrantKind.MONETARY)


def test_deterministic_ids_are_stable_and_well_formed() -> None:
    a = deterministic_id("grt", "rgr_1:3", T0)
    assert a == deterministic_id("grt", "rgr_1:3", T0)
    assert a != deterministic_id("grt", "rgr_1:4", T0)
    assert ID_PATTERN.match(a)
    assert deterministic_id("grt", "k", T0) < deterministic_id("grt", "k", T0 + timedelta(days=1))
