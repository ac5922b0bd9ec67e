"""The entitlements API: the check (raw-body hot path), a customer's entitlements, overrides,
reservations, spend limits and alerts."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import ApiClient
from tests.fixtures.catalog_factories import usage_price
from tests.fixtures.factories import create_meter
from tests.fixtures.grants_factories import issue, metered_setup, send_usage
from tests.http.test_edge import assert_error


def setup_customer(api: ApiClient, **fields: object):  # type: ignore[no-untyped-def]
    with api.db.transaction() as tx:
        return metered_setup(tx, external_id="acme", **fields)


def test_the_check_answers_with_the_reason_and_the_numbers(api: ApiClient) -> None:
    setup = setup_customer(api, limit=100)
    send_usage(api.db, setup.customer, 40)
    response = api.post(
        "/v1/entitlements/check",
        json={"customer": "acme", "feature": setup.feature.key, "quantity": "60.5"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in ("object", "allowed", "reason", "limit", "used", "remaining")} == {
        "object": "entitlement_check",
        "allowed": False,
        "reason": "limit_exceeded",
        "limit": "100",
        "used": "40",
        "remaining": "60",
    }
    assert body["resets_at"].endswith("Z") and body["subscriptions"] == [setup.subscription.id]
    fine = api.post(
        "/v1/entitlements/check", json={"customer": setup.customer.id, "feature": setup.flag.key}
    ).json()
    assert (fine["allowed"], fine["reason"], fine["feature_type"]) == (True, "ok", "boolean")


def test_the_check_names_bad_input(api: ApiClient) -> None:
    setup = setup_customer(api)
    url, feature = "/v1/entitlements/check", setup.feature.key
    assert_error(
        api.post(url, content=b"{", headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    assert_error(api.post(url, json={"feature": feature}), 400, "parameter_missing", "customer")
    assert_error(
        api.post(url, json={"customer": "acme", "feature": feature, "x": 1}),
        400,
        "parameter_unknown",
        "x",
    )
    assert_error(
        api.post(url, json={"customer": 5, "feature": feature}),
        400,
        "parameter_invalid",
        "customer",
    )
    assert_error(
        api.post(url, json={"customer": "acme", "feature": feature, "quantity": "abc"}),
        400,
        "quantity_invalid",
        "quantity",
    )
    assert_error(
        api.post(url, json={"customer": "acme", "feature": feature, "quantity": -1}),
        400,
        "quantity_negative",
        "quantity",
    )
    assert_error(
        api.post(url, json={"customer": "acme", "feature": "nope"}),
        404,
        "feature_not_found",
        "feature",
    )
    assert_error(
        api.post(url, json={"customer": "ghost", "feature": feature}),
        404,
        "customer_not_found",
        "customer",
    )
    reader = api.key_with("usage:read")
    assert_error(
        api.post(url, json={"customer": "acme", "feature": feature}, headers=api.as_key(reader)),
        403,
        "scope_missing",
    )
    checker = api.key_with("entitlements:read")
    assert (
        api.post(
            url, json={"customer": "acme", "feature": feature}, headers=api.as_key(checker)
        ).status_code
        == 200
    )


def test_customer_entitlements_and_overrides(api: ApiClient) -> None:
    setup = setup_customer(api, limit=5)
    override = api.post(
        "/v1/entitlements/overrides",
        json={
            "customer": "acme",
            "feature": setup.feature.key,
            "limit": "50",
            "enforcement": "soft",
            "expires_at": (api.db.clock.now() + timedelta(days=7)).isoformat(),
            "reason": "trial extension",
        },
    )
    assert override.status_code == 200, override.text
    assert (override.json()["limit"], override.json()["created_by"][:4]) == ("50", "key_")
    listed = api.get("/v1/customers/acme/entitlements").json()
    by_key = {item["feature"]: item for item in listed["data"]}
    assert by_key[setup.feature.key]["source"] == "override"
    assert by_key[setup.feature.key]["limit"] == "50"
    assert by_key[setup.flag.key]["allowed"] is True
    assert (
        len(api.get("/v1/entitlements/overrides", params={"customer": "acme"}).json()["data"]) == 1
    )
    revoked = api.post(f"/v1/entitlements/overrides/{override.json()['id']}/revoke").json()
    assert revoked["status"] == "revoked"
    assert_error(
        api.post(
            "/v1/entitlements/overrides",
            json={"customer": "acme", "feature": setup.flag.key, "limit": 5, "reason": "x"},
        ),
        400,
        "override_value_invalid",
        "limit",
    )
    assert_error(
        api.post(
            "/v1/entitlements/overrides",
            json={"customer": "acme", "feature": setup.flag.key, "enabled": True, "reason": ""},
        ),
        400,
        "override_reason_required",
        "reason",
    )


def test_reservations_over_the_api(api: ApiClient) -> None:
    setup = setup_customer(api, limit=100)
    with api.db.transaction() as tx:
        issue(tx, setup.customer, 1000)
    held = api.post(
        "/v1/entitlements/reservations",
        json={
            "customer": "acme",
            "feature": setup.feature.key,
            "quantity": 80,
            "amount_minor": 300,
        },
        headers={"Idempotency-Key": "job-42"},
    )
    assert held.status_code == 200, held.text
    reservation = held.json()
    assert (reservation["status"], reservation["quantity"], reservation["amount_minor"]) == (
        "open",
        "80",
        300,
    )
    refused = api.post(
        "/v1/entitlements/reservations",
        json={"customer": "acme", "feature": setup.feature.key, "quantity": 21},
    )
    error = assert_error(refused, 409, "reservation_refused", "quantity")
    assert error["details"]["check"]["reason"] == "limit_exceeded"
    settled = api.post(
        f"/v1/entitlements/reservations/{reservation['id']}/settle",
        json={"quantity": 70, "amount_minor": 120},
    ).json()
    assert (settled["status"], settled["settled_quantity"], settled["settled_amount_minor"]) == (
        "settled",
        "70",
        120,
    )
    check = api.post(
        "/v1/entitlements/check", json={"customer": "acme", "feature": setup.feature.key}
    ).json()
    assert (check["used"], check["reserved"]) == ("70", "0")
    assert_error(
        api.post(f"/v1/entitlements/reservations/{reservation['id']}/release"),
        409,
        "reservation_not_open",
    )
    listed = api.get("/v1/entitlements/reservations", params={"customer": "acme"}).json()["data"]
    assert [r["id"] for r in listed] == [reservation["id"]]
    assert_error(
        api.post("/v1/entitlements/reservations", json={"customer": "acme"}),
        400,
        "reservation_empty",
    )


def test_spend_limits_and_alerts(api: ApiClient) -> None:
    with api.db.transaction() as tx:
        meter = create_meter(tx, key="tokens", event_type="tokens.used", value_path="value")
        setup = metered_setup(
            tx,
            external_id="acme",
            limit=None,
            prices=[usage_price(meter.id, unit_price="0.01")],
        )
    assert_error(api.get("/v1/customers/acme/spend_limit"), 404, "resource_missing")
    created = api.post(
        "/v1/customers/acme/spend_limit", json={"amount_minor": 1000, "thresholds": [50, 100]}
    )
    assert created.status_code == 200, created.text
    assert created.json()["thresholds"] == [50, 100]
    send_usage(api.db, setup.customer, 600)  # 6.00: past 50 %
    check = api.post(
        "/v1/entitlements/check",
        json={"customer": "acme", "feature": setup.feature.key, "quantity": 401},
    ).json()
    assert (check["allowed"], check["reason"]) == (False, "spend_limit_exceeded")
    assert check["spend"] == {
        "limit_minor": 1000,
        "currency": "USD",
        "spend_minor": 600,
        "increment_minor": 401,
    }
    fired = api.get("/v1/entitlements/alerts", params={"customer": "acme"}).json()["data"]
    assert sorted((a["kind"], a["threshold_percent"]) for a in fired) == [
        ("exceeded", None),
        ("threshold", 50),
    ]
    assert_error(
        api.post("/v1/customers/acme/spend_limit", json={"amount_minor": 5, "currency": "EUR"}),
        400,
        "spend_limit_currency_mismatch",
        "currency",
    )
    removed = api.delete("/v1/customers/acme/spend_limit").json()
    assert removed["deleted"] is True
