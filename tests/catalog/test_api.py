"""``/v1/features`` and ``/v1/plans`` over HTTP."""

from __future__ import annotations

from typing import Any

from tallybook.db import Database
from tests.conftest import ApiClient
from tests.fixtures.factories import create_meter
from tests.http.test_edge import assert_error


def meter_id(db: Database) -> str:
    with db.transaction() as tx:
        return create_meter(tx).id


def plan_with_version(api: ApiClient, version: dict[str, Any]) -> dict[str, Any]:
    api.post("/v1/plans", json={"key": "pro", "name": "Pro"})
    response = api.post("/v1/plans/pro/versions", json=version)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestFeatures:
    def test_create_get_list_update_archive(self, api: ApiClient) -> None:
        created = api.post(
            "/v1/features",
            json={
                "key": "tokens",
                "name": "Tokens",
                "type": "metered",
                "meter_id": meter_id(api.db),
            },
        ).json()
        assert created["object"] == "feature" and created["id"].startswith("feat_")
        assert api.get("/v1/features/tokens").json()["id"] == created["id"]
        api.post("/v1/features", json={"key": "sso", "name": "SSO", "type": "boolean"})
        listed = api.get("/v1/features", params={"type": "metered"}).json()
        assert [f["key"] for f in listed["data"]] == ["tokens"]
        renamed = api.post("/v1/features/tokens", json={"name": "LLM tokens"}).json()
        assert renamed["name"] == "LLM tokens"
        archived = api.post("/v1/features/sso/archive").json()
        assert archived["archived_at"] is not None
        assert [f["key"] for f in api.get("/v1/features").json()["data"]] == ["tokens"]

    def test_errors(self, api: ApiClient) -> None:
        assert_error(
            api.post("/v1/features", json={"key": "t", "name": "T", "type": "metered"}),
            400,
            "feature_meter_required",
            "meter_id",
        )
        assert_error(
            api.post("/v1/features", json={"key": "t", "name": "T", "type": "other"}),
            400,
            "parameter_invalid",
            "type",
        )
        assert_error(api.get("/v1/features/nope"), 404, "resource_missing")


class TestPlans:
    def test_version_lifecycle(self, api: ApiClient) -> None:
        meter = meter_id(api.db)
        draft = plan_with_version(
            api,
            {
                "currency": "usd",
                "interval": "month",
                "prices": [
                    {"type": "flat", "key": "base", "name": "Pro", "amount_minor": 4900},
                    {
                        "type": "usage",
                        "key": "tokens",
                        "meter_id": meter,
                        "model": "graduated",
                        "tiers": [
                            {"up_to": 1000000, "unit_price": 0.0000025},
                            {"up_to": None, "unit_price": "0.000002", "flat_fee_minor": 100},
                        ],
                        "included_quantity": "100000",
                    },
                ],
                "change_policy": {"downgrade": "prorate_now"},
            },
        )
        assert (draft["object"], draft["status"], draft["version"]) == ("plan_version", "draft", 1)
        assert draft["currency"] == "USD"
        tiers = draft["prices"][1]["tiers"]
        assert tiers[0] == {"up_to": "1000000", "unit_price": "0.0000025", "flat_fee_minor": 0}
        assert draft["prices"][1]["included_quantity"] == "100000"
        assert draft["change_policy"] == {
            "upgrade": "prorate_now",
            "downgrade": "prorate_now",
            "same_price": "prorate_now",
        }
        edited = api.post("/v1/plans/pro/versions/1", json={"minimum_commitment_minor": 10000})
        assert edited.json()["minimum_commitment_minor"] == 10000
        assert len(edited.json()["prices"]) == 2
        published = api.post("/v1/plans/pro/versions/1/publish").json()
        assert published["status"] == "published"
        again = api.post(f"/v1/plans/pro/versions/{draft['id']}/publish").json()
        assert again["published_at"] == published["published_at"]
        assert_error(
            api.post("/v1/plans/pro/versions/1", json={"currency": "EUR"}),
            409,
            "plan_version_immutable",
            "version",
        )
        copy = api.post(
            "/v1/plans/pro/versions", json={"copy_from": draft["id"], "interval": "year"}
        ).json()
        assert (copy["version"], copy["interval"], copy["status"]) == (2, "year", "draft")
        assert copy["prices"][1]["tiers"] == draft["prices"][1]["tiers"]
        listed = api.get("/v1/plans/pro/versions").json()
        assert [v["version"] for v in listed["data"]] == [2, 1]

    def test_bad_prices_get_named_errors(self, api: ApiClient) -> None:
        api.post("/v1/plans", json={"key": "pro", "name": "Pro"})
        gap = {
            "currency": "USD",
            "interval": "month",
            "prices": [
                {
                    "type": "usage",
                    "meter_id": meter_id(api.db),
                    "model": "volume",
                    "tiers": [{"up_to": 10, "unit_price": "1"}],
                }
            ],
        }
        assert_error(
            api.post("/v1/plans/pro/versions", json=gap),
            400,
            "price_tier_gap",
            "prices[0].tiers[0].up_to",
        )
        negative = {**gap, "prices": [{"type": "flat", "amount_minor": -5}]}
        assert_error(
            api.post("/v1/plans/pro/versions", json=negative),
            400,
            "price_negative",
            "prices[0].amount_minor",
        )
        unknown = {**gap, "prices": [{"type": "flat", "amount_minor": 5, "colour": "red"}]}
        assert_error(
            api.post("/v1/plans/pro/versions", json=unknown),
            400,
            "parameter_unknown",
            "prices[0].colour",
        )

    def test_idempotent_version_creation(self, api: ApiClient) -> None:
        api.post("/v1/plans", json={"key": "pro", "name": "Pro"})
        body = {"currency": "USD", "interval": "week", "prices": []}
        headers = {"Idempotency-Key": "v-1"}
        first = api.post("/v1/plans/pro/versions", json=body, headers=headers)
        second = api.post("/v1/plans/pro/versions", json=body, headers=headers)
        assert first.json() == second.json()
        assert second.headers["Idempotent-Replayed"] == "true"
        assert len(api.get("/v1/plans/pro/versions").json()["data"]) == 1

    def test_scopes(self, api: ApiClient) -> None:
        reader = api.as_key(api.key_with("catalog:read"))
        assert api.get("/v1/plans", headers=reader).status_code == 200
        assert_error(
            api.post("/v1/plans", json={"key": "x", "name": "X"}, headers=reader),
            403,
            "scope_missing",
        )
