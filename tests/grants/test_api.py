"""The grants API: grants, recurring grants, plan credit rules and promotion codes."""

from __future__ import annotations

from tallybook.db import Database
from tests.conftest import ApiClient
from tests.fixtures.catalog_factories import create_subscription, create_version
from tests.fixtures.factories import create_customer, create_meter
from tests.http.test_edge import assert_error


def customer_id(api: ApiClient, **fields: object) -> str:
    with api.db.transaction() as tx:
        return create_customer(tx, **fields).id


def test_issue_list_show_and_void_a_grant(api: ApiClient) -> None:
    customer = customer_id(api, external_id="acme")
    body = {"customer": "acme", "amount_minor": 2500, "reason": "outage credit", "priority": 5}
    created = api.post("/v1/grants", json=body, headers={"Idempotency-Key": "g-1"})
    assert created.status_code == 200, created.text
    grant = created.json()
    assert (grant["object"], grant["customer"], grant["remaining_minor"]) == (
        "grant",
        customer,
        2500,
    )
    assert grant["asset"] == "USD" and grant["issued_by"].startswith("key_")
    replay = api.post("/v1/grants", json=body, headers={"Idempotency-Key": "g-1"})
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json()["id"] == grant["id"]

    listed = api.get("/v1/grants", params={"customer": "acme"}).json()
    assert [g["id"] for g in listed["data"]] == [grant["id"]]
    assert api.get(f"/v1/grants/{grant['id']}").json()["remaining_minor"] == 2500

    voided = api.post(f"/v1/grants/{grant['id']}/void", json={"reason": "duplicate"})
    assert voided.json()["status"] == "voided" and voided.json()["remaining_minor"] == 0
    assert api.get("/v1/grants", params={"status": "active"}).json()["data"] == []


def test_usage_grants_report_quantities(api: ApiClient) -> None:
    customer_id(api, external_id="acme")
    with api.db.transaction() as tx:
        create_meter(tx)
    grant = api.post(
        "/v1/grants",
        json={
            "customer": "acme",
            "kind": "usage",
            "meter": "tokens",
            "quantity": "2500.25",
            "reason": "beta",
        },
    ).json()
    assert (grant["asset"], grant["quantity"], grant["remaining_quantity"]) == (
        "U_TOKENS",
        "2500.25",
        "2500.25",
    )


def test_grant_errors_are_named(api: ApiClient) -> None:
    customer_id(api, external_id="acme", currency="EUR")
    assert_error(
        api.post("/v1/grants", json={"customer": "acme", "amount_minor": 10}),
        400,
        "parameter_missing",
        "reason",
    )
    assert_error(
        api.post(
            "/v1/grants",
            json={"customer": "acme", "amount_minor": 10, "currency": "USD", "reason": "x"},
        ),
        400,
        "grant_currency_mismatch",
        "currency",
    )
    assert_error(
        api.post("/v1/grants", json={"customer": "acme", "amount_minor": -1, "reason": "x"}),
        400,
        "grant_amount_invalid",
        "amount_minor",
    )
    assert_error(
        api.post("/v1/grants", json={"customer": "ghost", "amount_minor": 1, "reason": "x"}),
        404,
        "resource_missing",
    )
    assert_error(api.get("/v1/grants/grt_nope"), 404, "resource_missing")
    reader = api.key_with("grants:read")
    assert_error(
        api.post(
            "/v1/grants",
            json={"customer": "acme", "amount_minor": 1, "reason": "x"},
            headers=api.as_key(reader),
        ),
        403,
        "scope_missing",
    )


def test_recurring_grants_and_plan_credit_rules(api: ApiClient, db: Database) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx, external_id="acme")
        version = create_version(tx, interval="year")
        create_subscription(tx, customer=customer, version=version)
    schedule = api.post(
        "/v1/recurring_grants",
        json={
            "customer": "acme",
            "amount_minor": 500,
            "interval": "week",
            "rollover": "capped",
            "rollover_cap_minor": 200,
            "reason": "weekly bonus",
        },
    )
    assert schedule.status_code == 200, schedule.text
    assert schedule.json()["next_index"] == 1
    assert len(api.get("/v1/grants", params={"customer": "acme"}).json()["data"]) == 1
    canceled = api.post(
        f"/v1/recurring_grants/{schedule.json()['id']}/cancel", json={"reason": "campaign over"}
    )
    assert canceled.json()["status"] == "canceled"

    rule = api.post(
        "/v1/plan_credit_rules",
        json={"plan_version": version.id, "amount_minor": 1000, "reason": "monthly included"},
    )
    assert rule.status_code == 200, rule.text
    synced = api.post(f"/v1/plan_credit_rules/{rule.json()['id']}/sync", json={}).json()
    assert synced["schedules_started"] == 1 and synced["next_subscription"] is None
    sources = [
        g["source"] for g in api.get("/v1/grants", params={"customer": "acme"}).json()["data"]
    ]
    assert sorted(sources) == ["plan", "promotion"]
    assert_error(
        api.post(
            "/v1/plan_credit_rules", json={"plan_version": "pv_x", "amount_minor": 1, "reason": "r"}
        ),
        400,
        "plan_credit_rule_version_not_found",
        "plan_version",
    )


def test_promotion_codes_over_the_api(api: ApiClient, db: Database) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx, external_id="acme")
        subscription = create_subscription(tx, customer=customer).subscription
    created = api.post(
        "/v1/promotion_codes",
        json={
            "code": "spring25",
            "kind": "percent_off",
            "percent_off": 25,
            "duration": "repeating",
            "duration_periods": 3,
            "max_redemptions": 1,
        },
    )
    assert created.status_code == 200, created.text
    assert created.json()["code"] == "SPRING25" and created.json()["percent_off"] == "25"
    redeemed = api.post(
        "/v1/promotion_codes/redeem",
        json={"code": "Spring25", "customer": "acme", "subscription": subscription.id},
    )
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["subscription"] == subscription.id
    assert_error(
        api.post(
            "/v1/promotion_codes/redeem",
            json={"code": "SPRING25", "customer": "acme", "subscription": subscription.id},
        ),
        409,
        "promotion_code_exhausted",
        "code",
    )
    shown = api.get("/v1/promotion_codes/SPRING25").json()
    assert shown["times_redeemed"] == 1
    redemptions = api.get(f"/v1/promotion_codes/{shown['id']}/redemptions").json()["data"]
    assert [r["id"] for r in redemptions] == [redeemed.json()["id"]]
    assert api.post(f"/v1/promotion_codes/{shown['id']}/deactivate").json()["active"] is False
    assert_error(
        api.post(
            "/v1/promotion_codes", json={"code": "x", "kind": "percent_off", "percent_off": 5}
        ),
        400,
        "promotion_code_invalid",
        "code",
    )
