"""The metering HTTP API: CloudEvents structured and batched modes, per-event answers,
freshness of usage after the response, dead letters, usage, status and metrics."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from tallybook.catalog.meter_models import Aggregation
from tests.conftest import TEST_EPOCH, ApiClient
from tests.fixtures.factories import create_customer, create_meter
from tests.http.test_edge import assert_error
from tests.metering.helpers import event

STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCHED = {"content-type": "application/cloudevents-batch+json"}
EARLIER = TEST_EPOCH - timedelta(hours=1)


@pytest.fixture
def world(api: ApiClient) -> dict[str, Any]:
    with api.db.transaction() as tx:
        customer = create_customer(tx, external_id="acme")
        tokens = create_meter(tx, key="tokens", group_by={"model": "model"})
        requests = create_meter(tx, key="requests", aggregation=Aggregation.COUNT)
    return {"customer": customer, "tokens": tokens, "requests": requests}


def post(api: ApiClient, body: Any, headers: dict[str, str]) -> Any:
    return api.post("/v1/events", content=json.dumps(body, default=str), headers=headers)


def tokens_event(event_id: str, amount: Any = 10, **kw: Any) -> dict[str, Any]:
    kw.setdefault("time", EARLIER)
    return event(event_id, data={"tokens": amount, "model": "m1"}, **kw)


def usage(api: ApiClient, meter: str = "tokens", **params: Any) -> Any:
    query = {"meter": meter, "from": "2026-10-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
    query.update(params)
    response = api.get("/v1/customers/acme/usage", params=query)
    assert response.status_code == 200, response.text
    return response.json()


class TestIngestion:
    def test_structured_mode(self, api: ApiClient, world: dict[str, Any]) -> None:
        response = post(api, tokens_event("e1"), STRUCTURED)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "object": "event_result",
            "status": "accepted",
            "source": "app",
            "id": "e1",
            "late": False,
        }
        again = post(api, tokens_event("e1"), STRUCTURED)
        assert again.json()["status"] == "duplicate"

    def test_structured_rejection_is_an_error_naming_the_field(
        self, api: ApiClient, world: dict[str, Any]
    ) -> None:
        response = post(api, tokens_event("e1", subject="nobody"), STRUCTURED)
        error = assert_error(response, 400, "customer_not_found", "subject")
        assert error["details"]["dead_letter_id"].startswith("dlq_")

    def test_structured_conflict_is_409(self, api: ApiClient, world: dict[str, Any]) -> None:
        post(api, tokens_event("e1", 10), STRUCTURED)
        assert_error(post(api, tokens_event("e1", 11), STRUCTURED), 409, "event_conflict", "id")

    def test_batched_mode_answers_per_event(self, api: ApiClient, world: dict[str, Any]) -> None:
        batch = [
            tokens_event("e1"),
            tokens_event("e1"),
            tokens_event("e2", subject="nobody"),
            tokens_event("e3", "lots"),
            tokens_event("e4", 5),
        ]
        response = post(api, batch, BATCHED)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["accepted"], body["duplicates"], body["rejected"], body["conflicts"]) == (
            2,
            1,
            2,
            0,
        )
        results = body["results"]
        assert [r["status"] for r in results] == [
            "accepted",
            "duplicate",
            "rejected",
            "rejected",
            "accepted",
        ]
        assert (results[3]["code"], results[3]["param"]) == ("value_not_number", "data.tokens")
        assert usage(api)["total"] == "15"

    def test_plain_json_takes_both_shapes(self, api: ApiClient, world: dict[str, Any]) -> None:
        plain = {"content-type": "application/json"}
        assert post(api, tokens_event("e1"), plain).json()["object"] == "event_result"
        assert post(api, [tokens_event("e2")], plain).json()["object"] == "event_batch_result"

    def test_usage_sees_events_once_the_response_is_back(
        self, api: ApiClient, world: dict[str, Any]
    ) -> None:
        for i in range(3):
            post(api, [tokens_event(f"e{i}", 2)], BATCHED)
            assert usage(api)["total"] == str(2 * (i + 1))

    def test_request_level_errors(self, api: ApiClient, world: dict[str, Any]) -> None:
        assert_error(
            api.post("/v1/events", content=b"{}", headers={"content-type": "text/plain"}),
            415,
            "unsupported_media_type",
            "Content-Type",
        )
        assert_error(api.post("/v1/events", content=b"[{", headers=BATCHED), 400, "malformed_json")
        assert_error(post(api, tokens_event("e1"), BATCHED), 400, "batch_invalid", "body")
        too_many = [tokens_event(f"e{i}") for i in range(1001)]
        assert_error(post(api, too_many, BATCHED), 400, "batch_too_large", "body")
        big = [tokens_event(f"e{i}", data_pad="x" * 5000) for i in range(1000)]
        assert_error(post(api, big, BATCHED), 413, "body_too_large")

    def test_scope(self, api: ApiClient, world: dict[str, Any]) -> None:
        reader = api.key_with("events:read")
        response = api.post(
            "/v1/events",
            content=json.dumps(tokens_event("e1"), default=str),
            headers={**STRUCTURED, **api.as_key(reader)},
        )
        assert_error(response, 403, "scope_missing")

    def test_metrics_are_exposed(self, api: ApiClient, world: dict[str, Any]) -> None:
        post(api, [tokens_event("e1"), tokens_event("e2", subject="nobody")], BATCHED)
        text = api.get("/metrics").text
        assert 'tallybook_metering_events_total{outcome="accepted"}' in text
        assert "tallybook_metering_lag_seconds_bucket" in text
        assert "tallybook_metering_ingest_seconds_bucket" in text


class TestUsageApi:
    def test_windows_and_groups(self, api: ApiClient, world: dict[str, Any]) -> None:
        post(
            api,
            [
                tokens_event("e1", 10, time="2026-11-01T07:10:00Z"),
                event("e2", time="2026-11-01T08:20:00Z", data={"tokens": 5, "model": "m2"}),
            ],
            BATCHED,
        )
        body = usage(
            api,
            **{
                "from": "2026-11-01T07:00:00Z",
                "to": "2026-11-01T09:00:00Z",
                "window": "hour",
                "group_by": "model",
            },
        )
        assert body["total"] == "15"
        assert body["groups"] == [
            {"dims": {"model": "m1"}, "value": "10"},
            {"dims": {"model": "m2"}, "value": "5"},
        ]
        assert [(w["start"], w["value"]) for w in body["windows"]] == [
            ("2026-11-01T07:00:00Z", "10"),
            ("2026-11-01T08:00:00Z", "5"),
        ]
        by_id = api.get(
            f"/v1/customers/{world['customer'].id}/usage",
            params={
                "meter": world["tokens"].id,
                "from": "2026-11-01T07:30:00Z",
                "to": "2026-11-01T08:30:00Z",
            },
        ).json()
        assert by_id["total"] == "5" and by_id["windows"] == []

    def test_usage_errors(self, api: ApiClient, world: dict[str, Any]) -> None:
        base = {"meter": "tokens", "from": "2026-11-01T07:00:00Z", "to": "2026-11-01T09:00:00Z"}
        assert_error(
            api.get("/v1/customers/acme/usage", params={**base, "from": "monday"}),
            400,
            "usage_range_invalid",
            "from",
        )
        assert_error(
            api.get("/v1/customers/acme/usage", params={**base, "to": "2026-11-01T06:00:00Z"}),
            400,
            "usage_range_invalid",
            "to",
        )
        assert_error(
            api.get("/v1/customers/acme/usage", params={**base, "window": "week"}),
            400,
            "usage_window_invalid",
            "window",
        )
        assert_error(
            api.get("/v1/customers/acme/usage", params={**base, "group_by": "region"}),
            400,
            "usage_group_by_invalid",
            "group_by",
        )
        assert_error(api.get("/v1/customers/nobody/usage", params=base), 404, "resource_missing")

    def test_explain_endpoint_keeps_numbers_exact(
        self, api: ApiClient, world: dict[str, Any]
    ) -> None:
        post(api, [tokens_event("e1", 1.25)], BATCHED)
        body = api.get(
            "/v1/events",
            params={
                "meter": "tokens",
                "customer": "acme",
                "from": "2026-11-01T00:00:00Z",
                "to": "2026-11-02T00:00:00Z",
            },
        ).json()
        assert [e["id"] for e in body["data"]] == ["e1"]
        assert body["data"][0]["data"]["tokens"] == 1.25
        assert body["data"][0]["value"] == "1.25"
        assert body["data"][0]["dims"] == {"model": "m1"}


class TestDeadLettersApi:
    def test_list_replay_discard(self, api: ApiClient, world: dict[str, Any]) -> None:
        post(
            api,
            [tokens_event("e1", subject="newco"), tokens_event("e2", subject="newco"), "junk"],
            BATCHED,
        )
        listing = api.get("/v1/events/dead_letters").json()
        assert len(listing["data"]) == 3
        by_code = api.get("/v1/events/dead_letters", params={"code": "customer_not_found"}).json()
        assert {d["event_id"] for d in by_code["data"]} == {"e1", "e2"}
        junk_id = next(d["id"] for d in listing["data"] if d["code"] == "event_invalid")
        assert api.get(f"/v1/events/dead_letters/{junk_id}").json()["event"] == "junk"
        assert (
            api.post(f"/v1/events/dead_letters/{junk_id}/discard").json()["status"] == "discarded"
        )
        assert_error(
            api.post(f"/v1/events/dead_letters/{junk_id}/replay"), 409, "dead_letter_not_pending"
        )

        api.post("/v1/customers", json={"external_id": "newco"})
        replay = api.post("/v1/events/dead_letters/replay", json={"code": "customer_not_found"})
        assert replay.status_code == 200, replay.text
        assert replay.json()["counts"] == {"accepted": 2}
        newco = api.get(
            "/v1/customers/newco/usage",
            params={
                "meter": "tokens",
                "from": "2026-11-01T00:00:00Z",
                "to": "2026-11-02T00:00:00Z",
            },
        ).json()
        assert newco["total"] == "20"
        assert api.get("/v1/events/dead_letters").json()["data"] == []
        everything = api.get("/v1/events/dead_letters", params={"status": "all"}).json()
        assert len(everything["data"]) == 3

    def test_status(self, api: ApiClient, world: dict[str, Any]) -> None:
        empty = api.get("/v1/metering/status").json()
        assert empty["last_event"] is None and empty["ingest_mode"] == "db"
        post(api, [tokens_event("e1"), tokens_event("e2", subject="nobody")], BATCHED)
        status = api.get("/v1/metering/status").json()
        assert status["object"] == "metering_status"
        assert status["last_event"]["id"] == "e1"
        assert status["dead_letters"] == {"pending": 1}
        assert status["dead_letters_pending_by_code"] == {"customer_not_found": 1}
        assert status["backfilling_meters"] == []
