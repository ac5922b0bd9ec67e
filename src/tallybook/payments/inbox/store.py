"""Receiving a provider event: parse it, store it once under the provider's event id.

The HTTP handler verifies the signature first; this module trusts its input to be genuine but
still checks its shape, because processing relies on it. A redelivery (same event id) changes
nothing and is answered like the first delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import orjson

from tallybook.db import Tx
from tallybook.kit.errors import InvalidRequest
from tallybook.payments import repository
from tallybook.payments.errors import PaymentsCode
from tallybook.payments.models import PROVIDER_ID_LENGTH_MAX
from tallybook.payments.providers import stripe_objects as so

EVENT_TYPE_LENGTH_MAX: Final = 100


class InboxStatus(StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    IGNORED = "ignored"
    PARKED = "parked"


@dataclass(frozen=True, slots=True)
class Accepted:
    event_id: str
    type: str
    duplicate: bool


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(PaymentsCode.WEBHOOK_PAYLOAD_INVALID, message, param="body")


def parse_event(payload: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise _invalid(f"the body is not JSON: {error}") from error
    if not isinstance(event, dict):
        raise _invalid("the body is not a JSON object")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= PROVIDER_ID_LENGTH_MAX:
        raise _invalid("the event has no id")
    if event.get("object", "event") != "event":
        raise _invalid("the body is not an event")
    event_type = event.get("type")
    if not isinstance(event_type, str) or not 1 <= len(event_type) <= EVENT_TYPE_LENGTH_MAX:
        raise _invalid("the event has no type")
    if so.from_unix(event.get("created")) is None:
        raise _invalid("the event has no created time")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise _invalid("the event has no data.object")
    return event


def accept(tx: Tx, payload: bytes, *, provider: str = "stripe") -> Accepted:
    event = parse_event(payload)
    obj = event["data"]["object"]
    now = tx.now()
    object_id = so.object_id(obj)
    created = so.from_unix(event["created"])
    assert created is not None
    new = repository.insert_event(
        tx,
        {
            "event_id": event["id"],
            "provider": provider,
            "type": event["type"],
            "api_version": event.get("api_version")
            if isinstance(event.get("api_version"), str)
            else None,
            "livemode": bool(event.get("livemode")),
            "object_type": obj.get("object") if isinstance(obj.get("object"), str) else None,
            "object_id": object_id[:PROVIDER_ID_LENGTH_MAX] if object_id else None,
            "provider_created_at": created,
            "payload": event,
            "status": str(InboxStatus.PENDING),
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": None,
            "outcome": None,
            "received_at": now,
            "processed_at": None,
        },
    )
    return Accepted(event["id"], event["type"], duplicate=not new)
