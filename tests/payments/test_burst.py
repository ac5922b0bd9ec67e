"""A burst of 1,000 signed events (ten per payment, shuffled, 200 delivered twice) through the
endpoint, processed by the worker (two at once on PostgreSQL): every effect happens once."""

from __future__ import annotations

import random
import threading

import pytest
from fastapi.testclient import TestClient

from tallybook.api.app import create_app
from tallybook.db import Database
from tallybook.kit.settings import Settings
from tallybook.payments.inbox import processor
from tests.payments import stripe_events as se
from tests.payments.conftest import WEBHOOK_SECRET, offline_stripe_ctx
from tests.payments.many import assert_each_effect_once, burst, many_attempts

pytestmark = pytest.mark.slow


def test_a_burst_of_a_thousand_events_applies_each_effect_once(db: Database) -> None:
    ctx = offline_stripe_ctx()
    db, attempts = many_attempts(db, ctx, 100)
    events = burst(attempts)
    assert len(events) == 1000
    deliveries = events + random.Random(1).sample(events, 200)
    app = create_app(db, Settings(extra={"TALLYBOOK_STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET}))
    now = int(db.clock.now().timestamp())
    with TestClient(app) as client:
        duplicates = 0
        for event in deliveries:
            payload, headers = se.signed(event, [WEBHOOK_SECRET], now)
            response = client.post("/v1/webhooks/stripe", content=payload, headers=headers)
            assert response.status_code == 200, response.text
            duplicates += response.json()["duplicate"]
    assert duplicates == 200

    workers = 2 if db.is_postgres else 1
    outcomes: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            outcomes.append(processor.process_due(db, ctx, limit=2000))
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sum(o.get("processed", 0) for o in outcomes) == 1000, outcomes
    assert all(set(o) <= {"processed"} for o in outcomes), outcomes
    assert_each_effect_once(db, attempts, events)
