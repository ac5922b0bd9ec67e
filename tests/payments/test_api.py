"""The payments API: collections, payments, payment accounts, lists, scopes and errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tallybook.api.app import create_app
from tallybook.auth.service import create_api_key
from tallybook.db import Database
from tallybook.kit.settings import Settings
from tests.http.test_edge import assert_error
from tests.payments.conftest import World, make_world
from tests.payments.scripted import DECLINE, SUCCEED, ScriptedProvider, scripted_context


@pytest.fixture
def world(db: Database) -> World:
    return make_world(db, scripted_context(ScriptedProvider(script=[DECLINE, SUCCEED])))


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with world.db.transaction(actor="test") as tx:
        _, secret = create_api_key(tx, name="admin", scopes=["admin"])
    app = create_app(world.db, Settings(extra={"TALLYBOOK_STRIPE_API_KEY": "sk_test_unused"}))
    app.app.state.payments_context = world.ctx
    with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as test_client:
        yield test_client


def _key(world: World, *scopes: str) -> dict[str, str]:
    with world.db.transaction(actor="test") as tx:
        _, secret = create_api_key(tx, name="narrow", scopes=list(scopes))
    return {"Authorization": f"Bearer {secret}"}


def test_a_collection_with_its_attempts_by_collection_or_invoice_id(
    world: World, client: TestClient
) -> None:
    world.relay()
    by_invoice = client.get(f"/v1/collections/{world.invoice_id}")
    assert by_invoice.status_code == 200, by_invoice.text
    body = by_invoice.json()
    assert body["object"] == "collection"
    assert (body["status"], body["attempt_count"], body["amount_due_minor"]) == (
        "retrying",
        1,
        2000,
    )
    assert body["next_attempt_at"] == "2026-11-02T09:00:00Z"
    assert [(p["attempt_number"], p["status"], p["failure_code"]) for p in body["payments"]] == [
        (1, "failed", "card_declined")
    ]
    assert client.get(f"/v1/collections/{body['id']}").json()["invoice"] == world.invoice_id
    listed = client.get("/v1/collections?status=retrying").json()
    assert [c["id"] for c in listed["data"]] == [body["id"]]
    assert listed["data"][0]["payments"] is None  # attempts only on retrieval
    assert_error(client.get("/v1/collections/col_nope"), 404, "resource_missing")


def test_retry_through_the_api(world: World, client: TestClient) -> None:
    world.relay()
    response = client.post(f"/v1/collections/{world.invoice_id}/retry")
    assert response.status_code == 200, response.text
    assert (response.json()["trigger"], response.json()["status"]) == ("manual_retry", "pending")
    assert_error(
        client.post(f"/v1/collections/{world.invoice_id}/retry"), 409, "payment_attempt_in_progress"
    )
    world.relay()
    payments = client.get(f"/v1/payments?invoice={world.invoice_id}").json()["data"]
    assert [(p["attempt_number"], p["status"]) for p in payments] == [
        (2, "succeeded"),
        (1, "canceled"),
    ]
    one = client.get(f"/v1/payments/{payments[0]['id']}").json()
    assert (one["object"], one["fee_minor"], one["provider"]) == ("payment", 59, "stripe")
    assert (
        client.get(f"/v1/payments?customer={world.customer_id}&status=succeeded").json()["data"][0][
            "id"
        ]
        == one["id"]
    )
    assert_error(client.post(f"/v1/collections/{world.invoice_id}/retry"), 409, "collection_closed")


def test_scopes(world: World, client: TestClient) -> None:
    world.relay()
    reader = _key(world, "payments:read")
    assert client.get("/v1/collections", headers=reader).status_code == 200
    assert_error(
        client.post(f"/v1/collections/{world.invoice_id}/retry", headers=reader),
        403,
        "scope_missing",
    )
    other = _key(world, "customers:write")
    assert_error(client.get("/v1/payments", headers=other), 403, "scope_missing")
    assert_error(client.get("/v1/payments", headers={"Authorization": ""}), 401, "api_key_missing")


def test_payment_accounts(world: World, client: TestClient) -> None:
    world.relay()
    account = client.get(f"/v1/customers/{world.customer_id}/payment_account").json()
    assert (account["object"], account["provider"]) == ("payment_account", "stripe")
    assert account["stripe_customer_id"].startswith("cus_scripted_")
    # Payments were made with that Stripe customer: it can't be swapped under them.
    swap = client.post(
        f"/v1/customers/{world.customer_id}/payment_account",
        json={"provider": "stripe", "stripe_customer_id": "cus_Other123"},
    )
    assert_error(swap, 409, "payment_account_locked", "stripe_customer_id")
    assert_error(
        client.post(
            f"/v1/customers/{world.customer_id}/payment_account", json={"provider": "paypal"}
        ),
        400,
        "payment_provider_invalid",
        "provider",
    )
    assert_error(
        client.post(
            f"/v1/customers/{world.customer_id}/payment_account",
            json={"provider": "stripe", "stripe_customer_id": "not-a-customer"},
        ),
        400,
        "provider_customer_id_invalid",
        "stripe_customer_id",
    )
    assert_error(client.get("/v1/customers/cus_nope/payment_account"), 404, "resource_missing")


def test_linking_a_new_customer_and_taking_an_id_twice(world: World, client: TestClient) -> None:
    from tallybook.customers import service as customers

    with world.db.transaction(actor="test") as tx:
        one = customers.create(tx, customers.CustomerInput(external_id="acme-1")).id
        two = customers.create(tx, customers.CustomerInput(external_id="acme-2")).id
    linked = client.post(
        f"/v1/customers/{one}/payment_account",
        json={"provider": "stripe", "stripe_customer_id": "cus_Acme1"},
    )
    assert linked.status_code == 200, linked.text
    assert linked.json()["stripe_customer_id"] == "cus_Acme1"
    taken = client.post(
        f"/v1/customers/{two}/payment_account",
        json={"provider": "stripe", "stripe_customer_id": "cus_Acme1"},
    )
    assert_error(taken, 409, "provider_customer_id_taken", "stripe_customer_id")
    manual = client.post(f"/v1/customers/{two}/payment_account", json={"provider": "manual"})
    assert manual.json()["provider"] == "manual"


def test_lists_of_money_movements_and_the_clearing_balance(
    world: World, client: TestClient
) -> None:
    world.relay()
    for path in ("/v1/refunds", "/v1/disputes", "/v1/payouts", "/v1/inbound_events"):
        listed = client.get(path)
        assert listed.status_code == 200, (path, listed.text)
        assert listed.json()["object"] == "list"
    clearing = client.get("/v1/clearing_balance?currency=usd").json()
    assert clearing == {
        "object": "clearing_balance",
        "account": "stripe_clearing",
        "currency": "USD",
        "posted_minor": 0,
        "held_by_disputes_minor": 0,
        "outstanding_minor": 0,
    }
    assert_error(client.get("/v1/clearing_balance?currency=XXX"), 400, "currency_invalid")
