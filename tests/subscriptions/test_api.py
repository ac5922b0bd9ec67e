"""``/v1/subscriptions`` over HTTP: create, change, cancel, resume, list by customer."""

from __future__ import annotations

from typing import Any

from tallybook.db import Database
from tests.conftest import ApiClient
from tests.fixtures.catalog_factories import create_version, flat_price
from tests.http.test_edge import assert_error


def versions(db: Database) -> dict[str, str]:
    with db.transaction() as tx:
        return {
            "basic": create_version(tx, plan_key="basic", prices=[flat_price(1000)]).id,
            "pro": create_version(tx, plan_key="pro", prices=[flat_price(3000)]).id,
            "euro": create_version(tx, plan_key="euro", currency="EUR").id,
        }


def subscribe(api: ApiClient, plan_version: str, **extra: Any) -> dict[str, Any]:
    response = api.post(
        "/v1/subscriptions", json={"customer": "user-1", "plan_version": plan_version, **extra}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_create_preview_then_subscribe(api: ApiClient) -> None:
    v = versions(api.db)
    api.post("/v1/customers", json={"external_id": "user-1"})
    preview = subscribe(api, v["basic"], preview=True)
    assert preview["object"] == "subscription_update" and preview["preview"] is True
    assert preview["subscription"]["id"] is None
    assert [(line["id"], line["kind"], line["amount_minor"]) for line in preview["lines"]] == [
        (None, "fee_advance", 1000)
    ]
    assert api.get("/v1/subscriptions", params={"customer": "user-1"}).json()["data"] == []
    created = subscribe(api, v["basic"], metadata={"team": "a"})
    sub = created["subscription"]
    assert (sub["object"], sub["status"], sub["plan_version"]) == (
        "subscription",
        "active",
        v["basic"],
    )
    assert created["lines"][0]["id"].startswith("pch_")
    assert created["total_minor"] == 1000 and created["currency"] == "USD"
    listed = api.get("/v1/subscriptions", params={"customer": "user-1"}).json()
    assert [s["id"] for s in listed["data"]] == [sub["id"]]
    assert api.get(f"/v1/subscriptions/{sub['id']}").json()["metadata"] == {"team": "a"}
    updated = api.post(
        f"/v1/subscriptions/{sub['id']}", json={"metadata": {"team": "", "tier": "gold"}}
    ).json()
    assert updated["metadata"] == {"tier": "gold"}


def test_change_cancel_resume_and_history(api: ApiClient) -> None:
    v = versions(api.db)
    api.post("/v1/customers", json={"external_id": "user-1"})
    sub_id = subscribe(api, v["basic"])["subscription"]["id"]
    preview = api.post(
        f"/v1/subscriptions/{sub_id}/change", json={"plan_version": v["pro"], "preview": True}
    ).json()
    applied = api.post(f"/v1/subscriptions/{sub_id}/change", json={"plan_version": v["pro"]})
    assert applied.status_code == 200, applied.text
    keys = ("kind", "description", "amount_minor", "service_start_at", "breakdown")
    assert [{k: line[k] for k in keys} for line in preview["lines"]] == [
        {k: line[k] for k in keys} for line in applied.json()["lines"]
    ]
    assert applied.json()["change"]["direction"] == "upgrade"
    later = api.post(f"/v1/subscriptions/{sub_id}/cancel", json={}).json()
    assert later["subscription"]["cancel_at_period_end"] is True
    assert later["change"]["status"] == "scheduled"
    resumed = api.post(f"/v1/subscriptions/{sub_id}/resume").json()
    assert resumed["subscription"]["cancel_at_period_end"] is False
    now = api.post(
        f"/v1/subscriptions/{sub_id}/cancel", json={"at": "now", "credit_unused": True}
    ).json()
    assert now["subscription"]["status"] == "canceled"
    assert_error(
        api.post(f"/v1/subscriptions/{sub_id}/change", json={"plan_version": v["basic"]}),
        409,
        "subscription_canceled",
        "subscription",
    )
    phases = api.get(f"/v1/subscriptions/{sub_id}/phases").json()["data"]
    assert [p["plan_version"] for p in phases] == [v["basic"], v["pro"]]
    periods = api.get(f"/v1/subscriptions/{sub_id}/periods").json()["data"]
    assert [p["end_reason"] for p in periods] == ["canceled"]
    changes = api.get(f"/v1/subscriptions/{sub_id}/changes").json()["data"]
    assert [(c["kind"], c["status"]) for c in changes] == [
        ("cancel", "applied"),
        ("cancel", "canceled"),
        ("plan_change", "applied"),
    ]
    charges = api.get(f"/v1/subscriptions/{sub_id}/charges").json()["data"]
    assert {c["kind"] for c in charges} == {"fee_advance", "proration_credit", "proration_charge"}


def test_named_errors(api: ApiClient) -> None:
    v = versions(api.db)
    api.post("/v1/customers", json={"external_id": "user-1", "currency": "USD"})
    assert_error(
        api.post("/v1/subscriptions", json={"customer": "user-1", "plan_version": v["euro"]}),
        400,
        "subscription_currency_mismatch",
        "plan_version",
    )
    assert_error(
        api.post("/v1/subscriptions", json={"customer": "nobody", "plan_version": v["basic"]}),
        404,
        "resource_missing",
        "customer",
    )
    sub_id = subscribe(api, v["basic"])["subscription"]["id"]
    assert_error(
        api.post(f"/v1/subscriptions/{sub_id}/change", json={"plan_version": v["basic"]}),
        400,
        "subscription_change_noop",
        "plan_version",
    )
    assert_error(
        api.post(
            f"/v1/subscriptions/{sub_id}/change", json={"plan_version": v["pro"], "policy": "soon"}
        ),
        400,
        "parameter_invalid",
        "policy",
    )
    assert_error(api.get("/v1/subscriptions/sub_nope"), 404, "resource_missing")


def test_migrate(api: ApiClient) -> None:
    with api.db.transaction() as tx:
        old = create_version(tx, plan_key="pro").id
        new = create_version(tx, plan_key="pro", prices=[flat_price(2500)]).id
    api.post("/v1/customers", json={"external_id": "user-1"})
    sub_id = subscribe(api, old)["subscription"]["id"]
    result = api.post(
        "/v1/subscriptions/migrate", json={"from_plan_version": old, "to_plan_version": new}
    ).json()
    assert result == {
        "object": "subscription_migration",
        "migrated": [sub_id],
        "skipped": [],
        "has_more": False,
        "next_starting_after": None,
    }
    scheduled = api.get(f"/v1/subscriptions/{sub_id}").json()["scheduled_change"]
    assert (scheduled["to_plan_version"], scheduled["source"]) == (new, "migration")
