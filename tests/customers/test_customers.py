from __future__ import annotations

from tests.conftest import ApiClient
from tests.http.test_edge import assert_error


class TestCustomersApi:
    def test_create_get_update(self, api: ApiClient) -> None:
        created = api.post(
            "/v1/customers",
            json={
                "external_id": "user-42",
                "name": "Ada",
                "email": "ada@example.com",
                "currency": "usd",
            },
        ).json()
        assert created["object"] == "customer"
        assert created["id"].startswith("cus_")
        assert created["currency"] == "USD"
        by_external = api.get("/v1/customers/user-42").json()
        assert by_external["id"] == created["id"]
        updated = api.post(f"/v1/customers/{created['id']}", json={"name": "Ada L."}).json()
        assert updated["name"] == "Ada L."
        assert updated["email"] == "ada@example.com"

    def test_external_id_is_unique(self, api: ApiClient) -> None:
        api.post("/v1/customers", json={"external_id": "dup"})
        response = api.post("/v1/customers", json={"external_id": "dup"})
        assert_error(response, 409, "customer_external_id_taken", "external_id")

    def test_currency_cannot_change_once_set(self, api: ApiClient) -> None:
        created = api.post("/v1/customers", json={"external_id": "c", "currency": "EUR"}).json()
        response = api.post(f"/v1/customers/{created['id']}", json={"currency": "USD"})
        assert_error(response, 409, "customer_currency_locked", "currency")

    def test_bad_email_and_currency(self, api: ApiClient) -> None:
        assert_error(
            api.post("/v1/customers", json={"external_id": "e", "email": "nope"}),
            400,
            "customer_email_invalid",
            "email",
        )
        assert_error(
            api.post("/v1/customers", json={"external_id": "e", "currency": "ZZZ"}),
            400,
            "currency_invalid",
            "currency",
        )

    def test_list_pages_newest_first(self, api: ApiClient) -> None:
        ids = [
            api.post("/v1/customers", json={"external_id": f"c{i}"}).json()["id"] for i in range(5)
        ]
        first = api.get("/v1/customers", params={"limit": 2}).json()
        assert first["object"] == "list"
        assert [c["id"] for c in first["data"]] == ids[::-1][:2]
        assert first["has_more"] is True
        second = api.get(
            "/v1/customers", params={"limit": 2, "starting_after": first["data"][-1]["id"]}
        ).json()
        assert [c["id"] for c in second["data"]] == ids[::-1][2:4]
        back = api.get(
            "/v1/customers", params={"limit": 2, "ending_before": second["data"][0]["id"]}
        ).json()
        assert [c["id"] for c in back["data"]] == ids[::-1][:2]

    def test_limit_out_of_range(self, api: ApiClient) -> None:
        assert_error(
            api.get("/v1/customers", params={"limit": 500}), 400, "parameter_invalid", "limit"
        )
