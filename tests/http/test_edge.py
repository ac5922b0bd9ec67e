"""The API's cross-cutting contract: one error shape, authentication and scopes,
Idempotency-Key semantics, body limits, health and metrics."""

from __future__ import annotations

from typing import Any

from tests.conftest import ApiClient


def assert_error(response: Any, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert {"type", "code", "message", "param", "request_id"} <= set(error)
    assert error["code"] == code
    assert error["request_id"] == response.headers["request-id"]
    if param is not None:
        assert error["param"] == param
    return error


class TestErrorShape:
    def test_unknown_route(self, api: ApiClient) -> None:
        assert_error(api.get("/v1/nope"), 404, "route_not_found")

    def test_missing_field_names_it(self, api: ApiClient) -> None:
        error = assert_error(
            api.post("/v1/customers", json={}), 400, "parameter_missing", "external_id"
        )
        assert error["type"] == "invalid_request_error"

    def test_unknown_field_is_refused(self, api: ApiClient) -> None:
        assert_error(
            api.post("/v1/customers", json={"external_id": "a", "colour": "red"}),
            400,
            "parameter_unknown",
            "colour",
        )

    def test_malformed_json(self, api: ApiClient) -> None:
        response = api.post(
            "/v1/customers", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert_error(response, 400, "malformed_json")

    def test_body_too_large(self, api: ApiClient) -> None:
        big = b'{"external_id": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        response = api.post(
            "/v1/customers", content=big, headers={"content-type": "application/json"}
        )
        assert_error(response, 413, "body_too_large")

    def test_not_found(self, api: ApiClient) -> None:
        assert_error(api.get("/v1/customers/cus_nope"), 404, "resource_missing", "id")


class TestAuthentication:
    def test_missing_key(self, api: ApiClient) -> None:
        response = api.get("/v1/customers", headers={"Authorization": ""})
        error = assert_error(response, 401, "api_key_missing")
        assert error["type"] == "authentication_error"

    def test_invalid_key(self, api: ApiClient) -> None:
        response = api.get("/v1/customers", headers={"Authorization": "Bearer tbk_forged"})
        assert_error(response, 401, "api_key_invalid")

    def test_scope_is_enforced(self, api: ApiClient) -> None:
        reader = api.key_with("customers:read")
        assert api.get("/v1/customers", headers=api.as_key(reader)).status_code == 200
        response = api.post("/v1/customers", json={"external_id": "x"}, headers=api.as_key(reader))
        error = assert_error(response, 403, "scope_missing")
        assert error["type"] == "permission_error"

    def test_write_scope_implies_read(self, api: ApiClient) -> None:
        writer = api.key_with("customers:write")
        assert api.get("/v1/customers", headers=api.as_key(writer)).status_code == 200


class TestIdempotencyKey:
    def test_replay_returns_the_original_and_writes_once(self, api: ApiClient) -> None:
        headers = {"Idempotency-Key": "create-acme"}
        first = api.post("/v1/customers", json={"external_id": "acme"}, headers=headers)
        second = api.post("/v1/customers", json={"external_id": "acme"}, headers=headers)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        assert second.headers["Idempotent-Replayed"] == "true"
        listing = api.get("/v1/customers").json()
        assert [c["external_id"] for c in listing["data"]] == ["acme"]

    def test_same_key_different_request_is_a_conflict(self, api: ApiClient) -> None:
        headers = {"Idempotency-Key": "k1"}
        assert (
            api.post("/v1/customers", json={"external_id": "a"}, headers=headers).status_code == 200
        )
        response = api.post("/v1/customers", json={"external_id": "b"}, headers=headers)
        error = assert_error(response, 409, "idempotency_key_reused", "Idempotency-Key")
        assert error["type"] == "idempotency_error"

    def test_failed_request_does_not_burn_the_key(self, api: ApiClient) -> None:
        headers = {"Idempotency-Key": "k2"}
        bad = api.post("/v1/customers", json={"external_id": "bad id!"}, headers=headers)
        assert bad.status_code == 400
        assert api.get("/v1/customers").json()["data"] == []

    def test_keys_are_per_api_key(self, api: ApiClient) -> None:
        other = api.key_with("customers:write")
        headers = {"Idempotency-Key": "shared"}
        assert (
            api.post("/v1/customers", json={"external_id": "a"}, headers=headers).status_code == 200
        )
        response = api.post(
            "/v1/customers", json={"external_id": "b"}, headers={**headers, **api.as_key(other)}
        )
        assert response.status_code == 200

    def test_overlong_key(self, api: ApiClient) -> None:
        response = api.post(
            "/v1/customers", json={"external_id": "a"}, headers={"Idempotency-Key": "k" * 300}
        )
        assert_error(response, 400, "idempotency_key_invalid", "Idempotency-Key")


class TestOperations:
    def test_healthz(self, api: ApiClient) -> None:
        assert api.get("/healthz").json()["status"] == "ok"

    def test_metrics(self, api: ApiClient) -> None:
        api.get("/healthz")
        text = api.get("/metrics").text
        assert "tallybook_http_requests_total" in text

    def test_request_id_header(self, api: ApiClient) -> None:
        assert api.get("/healthz").headers["request-id"].startswith("req_")
