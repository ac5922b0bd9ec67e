"""``POST /v1/entitlements/check`` as the edge's lane, over real HTTP (uvicorn on a thread,
as ``tallybook serve`` runs it; PostgreSQL, the hot-read pool opened by the app's lifespan): the same answers as the
documented route and the portable path, the same error shape, request ids and metrics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tallybook.api.app import create_app, fastapi_of
from tallybook.auth.service import create_api_key
from tallybook.db import Database
from tallybook.entitlements import service as entitlements
from tallybook.entitlements.fast import PATHS
from tallybook.entitlements.schemas import check_wire
from tallybook.http.edge import clear_caller_cache
from tallybook.http.middleware import EdgeMiddleware
from tallybook.observability.metrics import HTTP_REQUESTS
from tests.fixtures.grants_factories import metered_setup, send_usage
from tests.fixtures.serving import served_on_thread
from tests.http.test_edge import assert_error

URL = "/v1/entitlements/check"


@dataclass
class Served:
    app: Any
    base: str
    key: str

    def post(self, body: Any = None, *, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.key}"} if key != "" else {}
        return httpx.post(f"{self.base}{URL}", json=body, headers=headers, timeout=10, **kwargs)


@pytest.fixture
def served(pg_db: Database) -> Iterator[Served]:
    clear_caller_cache()
    with pg_db.transaction(actor="test") as tx:
        _, secret = create_api_key(tx, name="checks", scopes=["entitlements:read"])
    app = create_app(pg_db)
    try:
        with served_on_thread(app) as port:
            yield Served(app, f"http://127.0.0.1:{port}", secret)
    finally:
        clear_caller_cache()


def test_the_lane_answers_as_the_documented_route_and_the_portable_path(
    served: Served, pg_db: Database
) -> None:
    with pg_db.transaction() as tx:
        setup = metered_setup(tx, limit=100, external_id="acme")
    send_usage(pg_db, setup.customer, 40)
    fast_before = PATHS.labels("fast")._value.get()
    ok_before = HTTP_REQUESTS.labels("POST", URL, "200")._value.get()
    for body in (
        {"customer": "acme", "feature": setup.feature.key, "quantity": "60.5"},
        {"customer": "acme", "feature": setup.feature.key, "quantity": 10},
        {"customer": setup.customer.id, "feature": setup.flag.key},
    ):
        response = served.post(body)
        assert response.status_code == 200, response.text
        assert response.headers["request-id"].startswith("req_")
        assert response.headers["content-type"] == "application/json"
        with pg_db.read() as tx:
            portable = entitlements.check(
                tx, body["customer"], body["feature"], quantity=body.get("quantity")
            )
        assert response.json() == check_wire(portable) | {
            "period_start": response.json()["period_start"],
            "resets_at": response.json()["resets_at"],
        }
        with TestClient(fastapi_of(served.app)) as documented:
            routed = documented.post(
                URL, json=body, headers={"Authorization": f"Bearer {served.key}"}
            )
        assert routed.status_code == 200 and routed.json() == response.json()
    assert PATHS.labels("fast")._value.get() >= fast_before + 3
    assert HTTP_REQUESTS.labels("POST", URL, "200")._value.get() == ok_before + 3


def test_usage_ingested_before_the_check_counts(served: Served, pg_db: Database) -> None:
    with pg_db.transaction() as tx:
        setup = metered_setup(tx, limit=100, external_id="fresh")
    body = {"customer": "fresh", "feature": setup.feature.key}
    assert served.post(body).json()["used"] == "0"
    send_usage(pg_db, setup.customer, 7)
    assert served.post(body).json()["used"] == "7"


def test_the_lane_names_bad_input_in_the_one_error_shape(served: Served, pg_db: Database) -> None:
    with pg_db.transaction() as tx:
        setup = metered_setup(tx, external_id="acme")
        _, unscoped = create_api_key(tx, name="other", scopes=["customers:read"])
    feature = setup.feature.key
    assert_error(
        served.post({"customer": "acme", "feature": feature}, key=""), 401, "api_key_missing"
    )
    assert_error(
        served.post({"customer": "acme", "feature": feature}, key="tbk_nope"),
        401,
        "api_key_invalid",
    )
    forbidden = assert_error(
        served.post({"customer": "acme", "feature": feature}, key=unscoped), 403, "scope_missing"
    )
    assert "entitlements:read" in forbidden["message"]
    assert_error(
        httpx.post(
            f"{served.base}{URL}",
            content=b"{",
            headers={"Authorization": f"Bearer {served.key}"},
        ),
        400,
        "malformed_json",
    )
    assert_error(served.post({"feature": feature}), 400, "parameter_missing", "customer")
    assert_error(served.post({"customer": "nobody", "feature": feature}), 404, "customer_not_found")
    assert_error(served.post({"customer": "acme", "feature": "nope"}), 404, "feature_not_found")
    assert_error(
        served.post({"customer": "acme", "feature": feature, "quantity": -1}),
        400,
        "quantity_negative",
        "quantity",
    )
    too_large = httpx.post(
        f"{served.base}{URL}",
        content=b" " * (2 * 1024 * 1024),
        headers={"Authorization": f"Bearer {served.key}"},
    )
    assert_error(too_large, 413, "body_too_large")
    assert_error(
        httpx.get(f"{served.base}{URL}", headers={"Authorization": f"Bearer {served.key}"}),
        405,
        "method_not_allowed",
    )


def test_an_unexpected_failure_is_a_logged_500_in_the_one_shape(
    sqlite_db: Database,
) -> None:
    clear_caller_cache()
    with sqlite_db.transaction(actor="test") as tx:
        _, secret = create_api_key(tx, name="checks", scopes=["entitlements:read"])
    app = create_app(sqlite_db)
    assert isinstance(app, EdgeMiddleware)

    async def broken(state: Any, actor: str, request_id: str, body: bytes) -> bytes:
        raise RuntimeError("boom")

    app.lanes[URL].work = broken  # type: ignore[attr-defined]
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            URL,
            json={"customer": "c", "feature": "f"},
            headers={"Authorization": f"Bearer {secret}"},
        )
    error = assert_error(response, 500, "internal_error")
    assert error["type"] == "api_error" and "boom" not in response.text
    clear_caller_cache()
