"""Outbound webhooks to our users: Standard Webhooks signatures, FIFO per endpoint, retries
with backoff, a delivery log, disabling after repeated failure and re-enabling by hand."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from tallybook.db import Database
from tallybook.kit.clock import TestClock
from tallybook.webhooks import delivery, service, signing
from tallybook.webhooks.delivery import ATTEMPTS_MAX, RETRY_DELAYS_SECONDS
from tallybook.work import events
from tests.conftest import ApiClient
from tests.fixtures.receiver import Receiver, receiver
from tests.http.test_edge import assert_error

__all__ = ["receiver"]


def emit(db: Database, event_type: str, n: int) -> str:
    with db.transaction(actor="test") as tx:
        return events.emit(tx, event_type, customer_id="cus_1", object_id=f"obj_{n}", data={"n": n})


def pump(db: Database) -> dict[str, int]:
    with db.transaction() as tx:
        service.fan_out(tx)
    return delivery.deliver_due(db)


def make_endpoint(db: Database, url: str, types: tuple[str, ...] = ("*",)) -> str:
    with db.transaction() as tx:
        return service.create_endpoint(tx, service.EndpointInput(url=url, event_types=types)).id


def test_delivers_signed_events_in_order(db: Database, receiver: Receiver) -> None:
    endpoint_id = make_endpoint(db, receiver.url)
    for n in range(5):
        emit(db, "invoice.finalized", n)
    assert pump(db) == {"succeeded": 1, "failed": 0}  # FIFO: one head per endpoint per claim
    while pump(db)["succeeded"]:
        pass
    payloads = [json.loads(b) for b in receiver.bodies()]
    assert [p["data"]["n"] for p in payloads] == [0, 1, 2, 3, 4]
    with db.read() as tx:
        secret = service.get_endpoint(tx, endpoint_id).secret
    first = receiver.received[0]
    # Verified by the reference Standard Webhooks library, not only by our own code.
    verified = Webhook(secret).verify(first.body, first.headers)
    assert verified["type"] == "invoice.finalized"
    assert first.headers["webhook-id"] == payloads[0]["id"]


def test_failure_retries_with_backoff_and_blocks_later_events(
    db: Database, clock: TestClock, receiver: Receiver
) -> None:
    make_endpoint(db, receiver.url)
    receiver.script = [500, 503]
    emit(db, "invoice.paid", 1)
    emit(db, "invoice.paid", 2)
    assert pump(db) == {"succeeded": 0, "failed": 1}
    assert pump(db) == {"succeeded": 0, "failed": 0}  # not due yet, and event 2 waits behind 1
    clock.advance(seconds=RETRY_DELAYS_SECONDS[0] * 1.2)
    assert pump(db) == {"succeeded": 0, "failed": 1}
    clock.advance(seconds=RETRY_DELAYS_SECONDS[1] * 1.2)
    assert pump(db)["succeeded"] == 1
    assert pump(db)["succeeded"] == 1
    assert [json.loads(b)["data"]["n"] for b in receiver.bodies()] == [1, 1, 1, 2]
    # The same event keeps its webhook-id across retries, so receivers can deduplicate.
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids[0] == ids[1] == ids[2] != ids[3]


def test_exhausted_retries_disable_the_endpoint_until_reenabled(
    db: Database, clock: TestClock, receiver: Receiver, api: ApiClient
) -> None:
    endpoint_id = make_endpoint(db, receiver.url)
    receiver.default_status = 500
    emit(db, "grant.created", 1)
    for _ in range(ATTEMPTS_MAX):
        pump(db)
        clock.advance(hours=30)
    with db.read() as tx:
        endpoint = service.get_endpoint(tx, endpoint_id)
        assert endpoint.status == "disabled"
        assert endpoint.disabled_by == "failures"
    assert len(receiver.received) == ATTEMPTS_MAX
    # Events keep queueing while disabled by failures, and nothing is sent.
    emit(db, "grant.created", 2)
    assert pump(db) == {"succeeded": 0, "failed": 0}
    receiver.default_status = 200
    log = api.get(f"/v1/webhook_endpoints/{endpoint_id}/deliveries").json()["data"]
    assert [d["status"] for d in log] == ["pending", "failed"]
    failed = log[1]
    detail = api.get(f"/v1/webhook_deliveries/{failed['id']}").json()
    assert len(detail["attempt_log"]) == ATTEMPTS_MAX
    assert detail["attempt_log"][0]["status_code"] == 500
    assert api.post(f"/v1/webhook_endpoints/{endpoint_id}/enable").json()["status"] == "enabled"
    assert pump(db)["succeeded"] == 1
    assert api.post(f"/v1/webhook_deliveries/{failed['id']}/retry").json()["status"] == "pending"
    assert pump(db)["succeeded"] == 1


def test_gone_disables_at_once(db: Database, receiver: Receiver) -> None:
    endpoint_id = make_endpoint(db, receiver.url)
    receiver.script = [410]
    emit(db, "invoice.voided", 1)
    pump(db)
    with db.read() as tx:
        assert service.get_endpoint(tx, endpoint_id).status == "disabled"


def test_event_type_filters(db: Database, receiver: Receiver) -> None:
    make_endpoint(db, receiver.url, ("invoice.*", "payment.failed"))
    emit(db, "invoice.finalized", 1)
    emit(db, "grant.created", 2)
    emit(db, "payment.failed", 3)
    emit(db, "payment.succeeded", 4)
    while pump(db)["succeeded"]:
        pass
    assert [json.loads(b)["data"]["n"] for b in receiver.bodies()] == [1, 3]


def test_fan_out_is_idempotent(db: Database, clock: TestClock, receiver: Receiver) -> None:
    make_endpoint(db, receiver.url)
    emit(db, "invoice.finalized", 1)
    with db.transaction() as tx:
        assert service.fan_out(tx) == 1
    clock.advance(seconds=30)
    with db.transaction() as tx:
        assert service.fan_out(tx) == 0  # the overlap rescans event 1 and creates nothing


def test_rotation_signs_with_both_secrets(db: Database, receiver: Receiver, api: ApiClient) -> None:
    endpoint_id = make_endpoint(db, receiver.url)
    with db.read() as tx:
        old_secret = service.get_endpoint(tx, endpoint_id).secret
    new_secret = api.post(f"/v1/webhook_endpoints/{endpoint_id}/rotate_secret").json()["secret"]
    assert new_secret != old_secret
    emit(db, "invoice.finalized", 1)
    pump(db)
    got = receiver.received[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (old_secret, new_secret):
        Webhook(secret).verify(got.body, got.headers)
    assert signing.verify(
        new_secret,
        got.headers["webhook-id"],
        int(got.headers["webhook-timestamp"]),
        got.body,
        got.headers["webhook-signature"],
        now=int(time.time()),
    )


def test_forged_or_stale_signatures_fail_verification() -> None:
    secret = signing.new_secret()
    header = signing.sign(secret, "evt_1", 1_700_000_000, b"{}")
    assert signing.verify(secret, "evt_1", 1_700_000_000, b"{}", header, now=1_700_000_010)
    assert not signing.verify(secret, "evt_1", 1_700_000_000, b'{"x":1}', header, now=1_700_000_010)
    assert not signing.verify(
        secret, "evt_1", 1_700_000_000, b"{}", header, now=1_700_000_000 + 301
    )


class TestEndpointsApi:
    def test_secret_shown_only_on_create(self, api: ApiClient) -> None:
        created = api.post(
            "/v1/webhook_endpoints",
            json={"url": "https://example.com/h", "event_types": ["invoice.*"]},
        ).json()
        assert created["secret"].startswith("whsec_")
        assert api.get(f"/v1/webhook_endpoints/{created['id']}").json()["secret"] is None

    @pytest.mark.parametrize(
        ("body", "code", "param"),
        [
            ({"url": "ftp://x"}, "webhook_url_invalid", "url"),
            (
                {"url": "https://x.io", "event_types": []},
                "webhook_event_types_invalid",
                "event_types",
            ),
            (
                {"url": "https://x.io", "event_types": ["Invoice Paid"]},
                "webhook_event_types_invalid",
                "event_types[0]",
            ),
        ],
    )
    def test_bad_input(
        self, api: ApiClient, body: dict[str, object], code: str, param: str
    ) -> None:
        assert_error(api.post("/v1/webhook_endpoints", json=body), 400, code, param)
        assert api.get("/v1/webhook_endpoints").json()["data"] == []

    def test_needs_scope(self, api: ApiClient) -> None:
        key = api.key_with("customers:write")
        response = api.get("/v1/webhook_endpoints", headers=api.as_key(key))
        assert_error(response, 403, "scope_missing")


def test_delay_schedule_spans_days() -> None:
    assert sum(RETRY_DELAYS_SECONDS) > timedelta(days=3).total_seconds()
