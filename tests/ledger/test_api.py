"""``/v1/ledger``: the API is a thin layer over the service with the edge's contract (one error
shape, scopes, Idempotency-Key) and the ledger's (a transient failure answers 409 and commits)."""

from __future__ import annotations

from typing import Any

import pytest

from tallybook.kit.ids import new_id
from tests.conftest import ApiClient
from tests.http.test_edge import assert_error
from tests.ledger.conftest import journal_snapshot


def _customer(api: ApiClient) -> str:
    response = api.post("/v1/customers", json={"external_id": new_id("ext")})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _open(api: ApiClient, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/ledger/accounts", json={"currency": "USD", **body})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _transfer(
    transfer_id: str, source: str, target: str, amount: Any, **extra: Any
) -> dict[str, Any]:
    return {
        "id": transfer_id,
        "legs": [
            {"account_id": source, "direction": "debit", "amount_minor": amount, "currency": "USD"},
            {
                "account_id": target,
                "direction": "credit",
                "amount_minor": amount,
                "currency": "USD",
            },
        ],
        "reason_code": "test",
        **extra,
    }


@pytest.fixture
def accounts(api: ApiClient) -> dict[str, str]:
    customer = _customer(api)
    funding = _open(api, code="funding", kind="asset")
    wallet = _open(
        api,
        code="customer_credit",
        kind="liability",
        customer=customer,
        debits_must_not_exceed_credits=True,
    )
    revenue = _open(api, code="revenue_usage", kind="revenue", balance_shards=4)
    assert wallet["object"] == "ledger_account" and wallet["customer"] == customer
    funded = api.post(
        "/v1/ledger/transfers", json=_transfer("fund", funding["id"], wallet["id"], 1000)
    )
    assert funded.status_code == 200, funded.text
    return {
        "funding": funding["id"],
        "wallet": wallet["id"],
        "revenue": revenue["id"],
        "customer": customer,
    }


def test_accounts_get_list_and_reopen(api: ApiClient, accounts: dict[str, str]) -> None:
    again = _open(
        api,
        code="customer_credit",
        kind="liability",
        customer=accounts["customer"],
        debits_must_not_exceed_credits=True,
    )
    assert again["id"] == accounts["wallet"]
    got = api.get(f"/v1/ledger/accounts/{accounts['revenue']}").json()
    assert got["balance_shards"] == 4
    listing = api.get("/v1/ledger/accounts", params={"customer": accounts["customer"]}).json()
    assert [a["id"] for a in listing["data"]] == [accounts["wallet"]]
    assert listing["object"] == "list"
    assert_error(api.get("/v1/ledger/accounts/acc_nope"), 404, "resource_missing")


def test_transfer_idempotency_over_http(api: ApiClient, accounts: dict[str, str]) -> None:
    body = _transfer("t1", accounts["wallet"], accounts["revenue"], 300, metadata={"job": "42"})
    first = api.post("/v1/ledger/transfers", json=body)
    assert first.status_code == 200
    transfer = first.json()
    assert transfer["object"] == "ledger_transfer"
    assert [leg["amount_minor"] for leg in transfer["legs"]] == [300, 300]
    again = api.post("/v1/ledger/transfers", json=body)
    assert again.status_code == 200 and again.json() == transfer
    changed = api.post(
        "/v1/ledger/transfers", json=_transfer("t1", accounts["wallet"], accounts["revenue"], 301)
    )
    error = assert_error(changed, 409, "exists_with_different_legs", "legs[0].amount_minor")
    assert error["type"] == "idempotency_error"
    assert api.get("/v1/ledger/transfers/t1").json() == transfer


def test_a_refused_overspend_answers_409_and_stays_refused(
    api: ApiClient, accounts: dict[str, str]
) -> None:
    body = _transfer("big", accounts["wallet"], accounts["revenue"], 5000)
    error = assert_error(api.post("/v1/ledger/transfers", json=body), 409, "exceeds_credits")
    assert error["type"] == "conflict_error"
    api.post(
        "/v1/ledger/transfers",
        json=_transfer("top-up", accounts["funding"], accounts["wallet"], 10_000),
    )
    # Now there would be enough, but the id is failed for good.
    assert_error(api.post("/v1/ledger/transfers", json=body), 409, "exceeds_credits")
    balance = api.get(f"/v1/ledger/accounts/{accounts['wallet']}/balance").json()
    assert balance["available_minor"] == 11_000


BAD_BODIES: dict[str, tuple[Any, int, str, str | None]] = {
    "unknown account": (
        lambda a: _transfer("x", "acc_" + "0" * 26, a["wallet"], 1),
        400,
        "account_not_found",
        "legs[0].account_id",
    ),
    "zero amount": (
        lambda a: _transfer("x", a["funding"], a["wallet"], 0),
        400,
        "amount_not_positive",
        "legs[0].amount_minor",
    ),
    "amount past the storage limit": (
        lambda a: _transfer("x", a["funding"], a["wallet"], 2**63),
        400,
        "amount_too_large",
        "legs[0].amount_minor",
    ),
    "amount as a string": (
        lambda a: _transfer("x", a["funding"], a["wallet"], "100"),
        400,
        "parameter_invalid",
        "legs[0].amount_minor",
    ),
    "amount as a fraction": (
        lambda a: _transfer("x", a["funding"], a["wallet"], 1.5),
        400,
        "parameter_invalid",
        "legs[0].amount_minor",
    ),
    "currency mismatch": (
        lambda a: {
            **_transfer("x", a["funding"], a["wallet"], 1),
            "legs": [
                {
                    "account_id": a["funding"],
                    "direction": "debit",
                    "amount_minor": 1,
                    "currency": "EUR",
                },
                {
                    "account_id": a["wallet"],
                    "direction": "credit",
                    "amount_minor": 1,
                    "currency": "EUR",
                },
            ],
        },
        400,
        "currency_mismatch",
        "legs[0].currency",
    ),
    "unbalanced legs": (
        lambda a: {
            **_transfer("x", a["funding"], a["wallet"], 1),
            "legs": [
                {
                    "account_id": a["funding"],
                    "direction": "debit",
                    "amount_minor": 2,
                    "currency": "USD",
                },
                {
                    "account_id": a["wallet"],
                    "direction": "credit",
                    "amount_minor": 1,
                    "currency": "USD",
                },
            ],
        },
        400,
        "legs_unbalanced",
        "legs",
    ),
    "unknown field": (
        lambda a: {**_transfer("x", a["funding"], a["wallet"], 1), "colour": "red"},
        400,
        "parameter_unknown",
        "colour",
    ),
    "reused id with different content": (
        lambda a: _transfer("fund", a["funding"], a["wallet"], 999),
        409,
        "exists_with_different_legs",
        "legs[0].amount_minor",
    ),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_transfers_over_http_write_nothing(
    api: ApiClient, accounts: dict[str, str], name: str
) -> None:
    build, status, code, param = BAD_BODIES[name]
    before = journal_snapshot(api.db)
    assert_error(api.post("/v1/ledger/transfers", json=build(accounts)), status, code, param)
    assert journal_snapshot(api.db) == before


def test_malformed_and_oversized_bodies_write_nothing(
    api: ApiClient, accounts: dict[str, str]
) -> None:
    before = journal_snapshot(api.db)
    malformed = api.post(
        "/v1/ledger/transfers",
        content=b'{"id": "x", "legs": [',
        headers={"content-type": "application/json"},
    )
    assert_error(malformed, 400, "malformed_json")
    transfers = [
        _transfer(f"t{n}", accounts["funding"], accounts["wallet"], 1) for n in range(6000)
    ]
    oversized = api.post("/v1/ledger/transfers/batch", json={"transfers": transfers})
    assert_error(oversized, 413, "body_too_large")
    assert journal_snapshot(api.db) == before


def test_holds_over_http(api: ApiClient, accounts: dict[str, str]) -> None:
    hold = api.post(
        "/v1/ledger/transfers",
        json=_transfer(
            "hold", accounts["wallet"], accounts["revenue"], 600, pending=True, timeout_seconds=600
        ),
    ).json()
    assert hold["hold_status"] == "pending" and hold["expires_at"] is not None
    balance = api.get(f"/v1/ledger/accounts/{accounts['wallet']}/balance").json()
    assert (balance["posted_minor"], balance["pending_minor"], balance["available_minor"]) == (
        1000,
        -600,
        400,
    )
    assert_error(
        api.post("/v1/ledger/transfers/hold/post", json={"id": "post", "amount_minor": 601}),
        400,
        "pending_amount_exceeded",
        "amount_minor",
    )
    posted = api.post("/v1/ledger/transfers/hold/post", json={"id": "post", "amount_minor": 250})
    assert posted.status_code == 200, posted.text
    assert posted.json()["kind"] == "post_pending"
    assert_error(
        api.post("/v1/ledger/transfers/hold/void", json={"id": "void"}),
        409,
        "pending_transfer_already_posted",
        "pending_id",
    )
    assert api.get("/v1/ledger/transfers/hold").json()["hold_status"] == "posted"
    reversed_ = api.post(
        "/v1/ledger/transfers/post/reverse",
        json={"id": "undo", "reason_code": "refund", "amount_minor": 50},
    )
    assert reversed_.status_code == 200, reversed_.text
    assert api.get("/v1/ledger/transfers/post").json()["reversed_by"] == ["undo"]
    entries = api.get(
        f"/v1/ledger/accounts/{accounts['wallet']}/entries", params={"limit": 2}
    ).json()
    assert entries["has_more"] is True
    assert [e["amount_minor"] for e in entries["data"]] == [50, 250]
    assert entries["data"][0]["id"].startswith("lent_")


def test_batches_over_http(api: ApiClient, accounts: dict[str, str]) -> None:
    body = {
        "transfers": [
            _transfer("b1", accounts["wallet"], accounts["revenue"], 600),
            _transfer("b2", accounts["wallet"], accounts["revenue"], 600),
            _transfer("b3", accounts["wallet"], accounts["revenue"], 0),
        ]
    }
    result = api.post("/v1/ledger/transfers/batch", json=body).json()
    assert result["object"] == "ledger_transfer_batch"
    assert [(r["status"], r["error"] and r["error"]["code"]) for r in result["data"]] == [
        ("created", None),
        ("failed", "exceeds_credits"),
        ("failed", "amount_not_positive"),
    ]
    linked = api.post(
        "/v1/ledger/transfers/batch",
        json={
            "linked": True,
            "transfers": [
                _transfer("l1", accounts["wallet"], accounts["revenue"], 100),
                _transfer("l2", accounts["wallet"], accounts["revenue"], 1000),
            ],
        },
    ).json()
    assert [r["error"]["code"] for r in linked["data"]] == [
        "linked_event_failed",
        "exceeds_credits",
    ]
    assert (
        api.get(f"/v1/ledger/accounts/{accounts['wallet']}/balance").json()["available_minor"]
        == 400
    )


def test_balance_as_of_and_scopes(api: ApiClient, accounts: dict[str, str]) -> None:
    before = api.get(
        f"/v1/ledger/accounts/{accounts['wallet']}/balance",
        params={"as_of": "2026-10-01T00:00:00Z"},
    ).json()
    assert before["posted_minor"] == 0 and before["as_of"] == "2026-10-01T00:00:00Z"
    assert_error(
        api.get(
            f"/v1/ledger/accounts/{accounts['wallet']}/balance",
            params={"as_of": "2030-01-01T00:00:00Z"},
        ),
        400,
        "as_of_in_future",
        "as_of",
    )
    reader = api.key_with("ledger:read")
    assert api.get("/v1/ledger/accounts", headers=api.as_key(reader)).status_code == 200
    refused = api.post(
        "/v1/ledger/transfers",
        json=_transfer("t", accounts["funding"], accounts["wallet"], 1),
        headers=api.as_key(reader),
    )
    assert_error(refused, 403, "scope_missing")
