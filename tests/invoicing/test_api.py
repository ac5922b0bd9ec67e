"""The invoicing API: lists, explain down to events, render, upcoming invoice, finalize, void,
mark uncollectible, credit notes, thresholds, and the named errors."""

from __future__ import annotations

from typing import Any

from tallybook.invoicing.tasks import close_due
from tallybook.kit.clock import TestClock, isoformat_z, utc
from tallybook.metering import service as metering
from tallybook.subscriptions.tasks import advance_due
from tallybook.work.schedule import JobContext
from tests.conftest import ApiClient
from tests.fixtures.catalog_factories import create_subscription, create_version, flat_price
from tests.fixtures.factories import create_customer, create_meter
from tests.http.test_edge import assert_error


def _setup(api: ApiClient, clock: TestClock) -> dict[str, Any]:
    db = api.db
    with db.transaction() as tx:
        customer = create_customer(tx, external_id="acme")
        meter = create_meter(
            tx, key="tokens", event_type="llm.request", group_by={"model": "model"}
        )
        version = create_version(
            tx,
            prices=[
                flat_price(2000),
                {
                    "type": "usage",
                    "key": "large",
                    "name": "Large model tokens",
                    "meter_id": meter.id,
                    "model": "per_unit",
                    "unit_price": "0.01",
                    "group_filter": {"model": "large"},
                },
                {
                    "type": "usage",
                    "key": "small",
                    "name": "Small model tokens",
                    "meter_id": meter.id,
                    "model": "per_unit",
                    "unit_price": "0.001",
                    "group_filter": {"model": "small"},
                },
            ],
        )
        subscription = create_subscription(tx, customer=customer, version=version).subscription
    clock.set(utc(2026, 11, 10))
    events = [
        {
            "specversion": "1.0",
            "id": f"e{n}",
            "source": "app",
            "type": "llm.request",
            "subject": "acme",
            "time": isoformat_z(utc(2026, 11, 2 + n)),
            "data": {"tokens": 100 * (n + 1), "model": "large" if n % 2 else "small"},
        }
        for n in range(6)
    ]
    with db.transaction() as tx:
        metering.ingest_events(tx, events)
    return {"customer": customer.id, "subscription": subscription.id}


def _close(api: ApiClient, clock: TestClock, until: Any) -> None:
    clock.set(until)
    advance_due(api.db, JobContext(owner="test"))
    close_due(api.db, JobContext(owner="test"))


def test_list_get_explain_events_and_render(api: ApiClient, clock: TestClock) -> None:
    ids = _setup(api, clock)
    _close(api, clock, utc(2026, 12, 1, 11))
    listed = api.get("/v1/invoices", params={"customer": "acme"}).json()
    assert listed["object"] == "list"
    kinds = sorted(i["kind"] for i in listed["data"])
    assert kinds == ["cycle", "opening"]
    cycle = next(i for i in listed["data"] if i["kind"] == "cycle")
    assert cycle["object"] == "invoice"
    by_number = api.get(f"/v1/invoices/{cycle['number']}").json()
    assert by_number["id"] == cycle["id"]
    usage = {line["price_key"]: line for line in cycle["lines"] if line["kind"] == "usage"}
    # small: 100 + 300 + 500 = 900 × 0.001 = 0.90; large: 200 + 400 + 600 = 1,200 × 0.01 = 12.00
    assert usage["small"]["quantity"] == "900" and usage["small"]["amount_minor"] == 90
    assert usage["large"]["quantity"] == "1200" and usage["large"]["amount_minor"] == 1200
    explained = api.get(f"/v1/invoices/{cycle['id']}/explain").json()
    assert explained["object"] == "invoice_explanation"
    large = next(item for item in explained["lines"] if item["line"]["price_key"] == "large")
    assert large["meter"]["key"] == "tokens"
    assert large["pricing"]["unit_price"] == "0.01"
    events = api.get(large["events_url"], params={"limit": 2}).json()
    assert [e["data"]["tokens"] for e in events["data"]] == [200, 400]
    assert events["has_more"] is True
    rest = api.get(large["events_url"], params={"after": events["next_cursor"]}).json()
    assert [e["data"]["tokens"] for e in rest["data"]] == [600]
    page = api.get(f"/v1/invoices/{cycle['id']}/render")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert cycle["number"] in page.text and "Large model tokens" in page.text
    upcoming = api.get(f"/v1/subscriptions/{ids['subscription']}/upcoming_invoice").json()
    assert upcoming["id"] is None and upcoming["status"] == "draft"


def test_finalize_a_draft_void_and_credit_notes(api: ApiClient, clock: TestClock) -> None:
    _setup(api, clock)
    _close(api, clock, utc(2026, 12, 1, 9, 20))
    drafts = api.get("/v1/invoices", params={"status": "draft"}).json()["data"]
    assert len(drafts) == 1 and drafts[0]["number"] is None
    finalized = api.post(f"/v1/invoices/{drafts[0]['id']}/finalize")
    assert finalized.status_code == 200, finalized.text
    invoice = finalized.json()
    assert invoice["status"] == "open" and invoice["number"].startswith("TB-2026-")
    again = api.post(f"/v1/invoices/{invoice['id']}/finalize").json()
    assert again["number"] == invoice["number"]
    line = next(line for line in invoice["lines"] if line["kind"] == "usage")
    note = api.post(
        "/v1/credit_notes",
        json={"invoice": invoice["id"], "lines": [{"line": line["id"], "amount_minor": 50}]},
        headers={"Idempotency-Key": "cn-1"},
    )
    assert note.status_code == 200, note.text
    assert note.json()["receivable_minor"] == 50
    replay = api.post(
        "/v1/credit_notes",
        json={"invoice": invoice["id"], "lines": [{"line": line["id"], "amount_minor": 50}]},
        headers={"Idempotency-Key": "cn-1"},
    )
    assert replay.json()["id"] == note.json()["id"]
    too_much = api.post(
        "/v1/credit_notes",
        json={"invoice": invoice["id"], "lines": [{"line": line["id"], "amount_minor": 10**6}]},
    )
    assert_error(too_much, 400, "credit_note_amount_invalid", "lines[0].amount_minor")
    listed = api.get("/v1/credit_notes", params={"invoice": invoice["id"]}).json()
    assert len(listed["data"]) == 1
    refused = api.post(f"/v1/invoices/{invoice['id']}/void", json={"reason": "test"})
    assert_error(refused, 409, "invoice_void_paid", "id")
    opening = next(i for i in api.get("/v1/invoices").json()["data"] if i["kind"] == "opening")
    voided = api.post(f"/v1/invoices/{opening['id']}/void", json={})
    assert voided.json()["status"] == "void"
    written = api.post(f"/v1/invoices/{opening['id']}/mark_uncollectible", json={})
    assert_error(written, 409, "invoice_status_invalid", "id")


def test_errors_and_scopes(api: ApiClient, clock: TestClock) -> None:
    ids = _setup(api, clock)
    assert_error(api.get("/v1/invoices/in_nope"), 404, "resource_missing", "id")
    assert_error(
        api.get(
            f"/v1/subscriptions/{ids['subscription']}/upcoming_invoice".replace("sub_", "sub_x")
        ),
        404,
        "resource_missing",
        "id",
    )
    assert_error(
        api.get("/v1/invoices", params={"status": "lost"}), 400, "invoice_status_invalid", "status"
    )
    threshold = api.post("/v1/customers/acme/billing_threshold", json={"amount_minor": 0})
    assert_error(threshold, 400, "billing_threshold_invalid", "amount_minor")
    ok = api.post("/v1/customers/acme/billing_threshold", json={"amount_minor": 5000})
    assert ok.json() == {
        "object": "billing_threshold",
        "customer": ids["customer"],
        "amount_minor": 5000,
        "source": "customer",
    }
    reader = api.key_with("invoices:read")
    assert api.get("/v1/invoices", headers=api.as_key(reader)).status_code == 200
    denied = api.post("/v1/credit_notes", json={"invoice": "in_x"}, headers=api.as_key(reader))
    assert_error(denied, 403, "scope_missing", None)
    with api.db.transaction() as tx:
        other = create_customer(tx)
    assert other.id
