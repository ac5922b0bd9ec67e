"""Meter definitions: validation names the bad field, versions by key, idempotent re-definition,
archiving, and the /v1/meters API."""

from __future__ import annotations

from typing import Any

import pytest

from tallybook.catalog import meters
from tallybook.catalog.meters import MeterInput
from tallybook.db import Database
from tallybook.kit.errors import InvalidRequest
from tallybook.metering import service
from tests.conftest import ApiClient
from tests.http.test_edge import assert_error


def define(db: Database, **fields: Any) -> Any:
    base: dict[str, Any] = {"key": "tokens", "event_type": "llm.request", "aggregation": "sum"}
    base.update(fields)
    if base["aggregation"] != "count":
        base.setdefault("value_path", "tokens")
    with db.transaction() as tx:
        return service.define_meter(tx, MeterInput(**base))


class TestValidation:
    @pytest.mark.parametrize(
        ("fields", "code", "param"),
        [
            ({"key": "Tokens"}, "meter_key_invalid", "key"),
            ({"key": ""}, "meter_key_invalid", "key"),
            ({"event_type": ""}, "meter_event_type_invalid", "event_type"),
            ({"aggregation": "avg"}, "meter_aggregation_invalid", "aggregation"),
            ({"aggregation": "sum", "value_path": None}, "meter_value_path_missing", "value_path"),
            (
                {"aggregation": "count", "value_path": "tokens"},
                "meter_value_path_not_allowed",
                "value_path",
            ),
            ({"value_path": "a..b"}, "meter_value_path_invalid", "value_path"),
            ({"value_path": "$.items[*]"}, "meter_value_path_invalid", "value_path"),
            (
                {"filters": [{"path": "tier", "op": "like", "value": "x"}]},
                "meter_filter_invalid",
                "filters[0].op",
            ),
            (
                {
                    "filters": [
                        {"path": "tier", "op": "eq", "value": "pro"},
                        {"path": "", "op": "eq"},
                    ]
                },
                "meter_filter_invalid",
                "filters[1].path",
            ),
            (
                {"filters": [{"path": "n", "op": "gt", "value": "abc"}]},
                "meter_filter_invalid",
                "filters[0].value",
            ),
            (
                {"filters": [{"path": "n", "op": "in", "value": []}]},
                "meter_filter_invalid",
                "filters[0].value",
            ),
            (
                {"filters": [{"path": "n", "op": "eq"}]},
                "meter_filter_invalid",
                "filters[0].value",
            ),
            ({"group_by": {"Model": "model"}}, "meter_group_by_invalid", "group_by.Model"),
            ({"group_by": {"model": "a b"}}, "meter_group_by_invalid", "group_by.model"),
            (
                {"group_by": {f"d{i}": "x" for i in range(6)}},
                "meter_group_by_invalid",
                "group_by",
            ),
            ({"unit": "x" * 51}, "meter_unit_invalid", "unit"),
            ({"event_type": "llm\x00"}, "meter_event_type_invalid", "event_type"),
            (
                {"filters": [{"path": "tier", "op": "eq", "value": "a\x00"}]},
                "meter_filter_invalid",
                "filters[0].value",
            ),
        ],
    )
    def test_bad_definitions_name_the_field(
        self, sqlite_db: Database, fields: dict[str, Any], code: str, param: str
    ) -> None:
        with pytest.raises(InvalidRequest) as caught:
            define(sqlite_db, **fields)
        assert (caught.value.code, caught.value.param) == (code, param)

    def test_paths_are_normalized(self, sqlite_db: Database) -> None:
        meter = define(
            sqlite_db,
            value_path="$.usage.input_tokens",
            group_by=["model"],
            filters=[{"path": "$.tier", "op": "in", "value": ["pro", "team"]}],
        )
        assert meter.value_path == "usage.input_tokens"
        assert meter.group_by == {"model": "model"}
        assert meter.filters == [{"path": "tier", "op": "in", "value": ["pro", "team"]}]


class TestVersions:
    def test_new_definition_of_a_key_is_a_new_version(self, db: Database) -> None:
        first = define(db)
        second = define(db, group_by={"model": "model"})
        assert (first.key, first.version) == ("tokens", 1)
        assert (second.key, second.version) == ("tokens", 2)
        assert first.id != second.id
        with db.read() as tx:
            assert meters.get_meter_by_key(tx, "tokens").id == second.id
            assert meters.get_meter_by_key(tx, "tokens", version=1).id == first.id
            assert meters.get_meter(tx, first.id).group_by == {}

    def test_same_definition_returns_the_latest_version(self, db: Database) -> None:
        first = define(db, group_by={"model": "model"})
        again = define(db, group_by=["model"])
        assert again.id == first.id

    def test_definition_seq_orders_all_meters(self, db: Database) -> None:
        a = define(db)
        b = define(db, key="requests", aggregation="count")
        assert b.definition_seq == a.definition_seq + 1

    def test_archive_keeps_counting(self, db: Database) -> None:
        meter = define(db)
        with db.transaction() as tx:
            archived = service.archive_meter(tx, meter.id)
            assert archived.archived_at is not None
        with db.read() as tx:
            page = service.list_meters(tx, include_archived=False)
            assert page.data == []


class TestMetersApi:
    def test_create_get_list_archive(self, api: ApiClient) -> None:
        body = {
            "key": "tokens",
            "event_type": "llm.request",
            "aggregation": "sum",
            "value_path": "tokens",
            "group_by": {"model": "model"},
            "filters": [{"path": "billable", "op": "eq", "value": True}],
        }
        created = api.post("/v1/meters", json=body)
        assert created.status_code == 200, created.text
        meter = created.json()
        assert meter["object"] == "meter" and meter["version"] == 1 and meter["backfilled"]
        assert api.get(f"/v1/meters/{meter['id']}").json()["id"] == meter["id"]
        assert api.get("/v1/meters/tokens").json()["id"] == meter["id"]
        listing = api.get("/v1/meters").json()
        assert [m["id"] for m in listing["data"]] == [meter["id"]]
        archived = api.post(f"/v1/meters/{meter['id']}/archive").json()
        assert archived["archived_at"] is not None

    def test_bad_definition_is_a_named_error(self, api: ApiClient) -> None:
        response = api.post(
            "/v1/meters",
            json={"key": "tokens", "event_type": "llm.request", "aggregation": "sum"},
        )
        assert_error(response, 400, "meter_value_path_missing", "value_path")

    def test_unknown_meter(self, api: ApiClient) -> None:
        assert_error(api.get("/v1/meters/nope"), 404, "resource_missing", "id")

    def test_scope(self, api: ApiClient) -> None:
        reader = api.key_with("catalog:read")
        response = api.post(
            "/v1/meters",
            json={"key": "requests", "event_type": "x", "aggregation": "count"},
            headers=api.as_key(reader),
        )
        assert_error(response, 403, "scope_missing")
