"""CloudEvents 1.0 envelopes: the pure validation ladder and the content hash. No I/O.

An event must carry ``id``, ``source``, ``specversion`` (``"1.0"``), ``type`` and ``subject``
(the customer's ``external_id``); ``time`` is RFC 3339 and defaults to the receipt time;
``data`` is a JSON object (or absent). Extension attributes are accepted and not stored.

**Content** (what "the same event" means for dedup) is ``type``, ``subject``, ``time`` *as sent*
(absent stays absent, so a client retrying an event without ``time`` is not a conflict even
though each receipt would default it differently) and ``data``, with numbers compared by value
(``1``, ``1.0`` and ``1.00`` are the same) and object keys in any order.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import msgspec

from tallybook.metering.errors import EventCode
from tallybook.metering.limits import (
    EVENT_BYTES_MAX,
    EVENT_ID_LENGTH_MAX,
    EVENT_SOURCE_LENGTH_MAX,
    EVENT_SUBJECT_LENGTH_MAX,
    EVENT_TYPE_LENGTH_MAX,
)

SPECVERSION: Final = "1.0"
RFC3339_PATTERN: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
)
JSON_CONTENT_TYPES: Final = frozenset({"application/json", "text/json"})
INTEGRAL_DIGITS_MAX: Final = 40
#: Text columns cannot hold it (PostgreSQL refuses it outright).
NUL: Final = "\x00"

#: Decodes request bodies: fractional numbers become Decimal, never float.
DECODER: Final = msgspec.json.Decoder(float_hook=Decimal)
#: Storage and hashing: Decimals written as JSON numbers with their exact digits, keys sorted.
ENCODER: Final = msgspec.json.Encoder(decimal_format="number", order="sorted")


@dataclass(frozen=True, slots=True)
class Rejection:
    code: EventCode
    param: str | None
    message: str


@dataclass(slots=True)
class CheckedEvent:
    """An envelope that passed the ladder (customer and meters are checked later)."""

    source: str
    event_id: str
    type: str
    subject: str
    #: The event's time; the receipt time when the event has none.
    time: datetime
    data: dict[str, Any] | None
    #: ``data`` as stored (JSON text), or None when absent.
    data_json: str | None
    content_hash: str
    received_at: datetime


def parse_time(value: object) -> datetime | None:
    """RFC 3339 text → aware UTC datetime, or None when it is not RFC 3339."""
    if not isinstance(value, str) or not RFC3339_PATTERN.match(value):
        return None
    text = value
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text.replace("t", "T"))
    except ValueError:
        return None
    return parsed.astimezone(UTC)


def _normalize_number(value: Decimal) -> Decimal | int:
    # Only modest magnitudes become ints: int(Decimal("1E+999999")) would build a million
    # digits (a cheap way to burn CPU); beyond that the normalized Decimal is canonical enough.
    if abs(value.adjusted()) <= INTEGRAL_DIGITS_MAX and value == value.to_integral_value():
        return int(value)
    return value.normalize()


def canonical(value: Any) -> Any:
    """Numbers by value (Decimal → int when integral, else normalized). Returns ``value``
    itself when nothing changes, so the common case costs no copy."""
    if isinstance(value, dict):
        changed = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            normalized = canonical(item)
            changed = changed or normalized is not item
            out[key] = normalized
        return out if changed else value
    if isinstance(value, list):
        items = [canonical(item) for item in value]
        if any(a is not b for a, b in zip(items, value, strict=True)):
            return items
        return value
    if isinstance(value, Decimal):
        return _normalize_number(value) if value.is_finite() else value
    return value


def content_hash(
    event_type: str, subject: str, time_sent: datetime | None, data_bytes: bytes | None
) -> str:
    """blake2b-128 hex of the canonical content (see module docstring)."""
    time_text = time_sent.isoformat() if time_sent is not None else None
    payload = ENCODER.encode(
        (event_type, subject, time_text, msgspec.Raw(data_bytes) if data_bytes else None)
    )
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def _text_attribute(
    raw: dict[str, Any], name: str, length_max: int, *, required: bool = True
) -> str | Rejection | None:
    value = raw.get(name)
    if value is None:
        if not required:
            return None
        return Rejection(EventCode.FIELD_MISSING, name, f"{name} is required")
    if not isinstance(value, str) or not value or len(value) > length_max or NUL in value:
        return Rejection(
            EventCode.FIELD_INVALID,
            name,
            f"{name} must be a non-empty string of at most {length_max} characters "
            "(and no NUL character)",
        )
    return value


def _attribute_rejection(raw: dict[str, Any]) -> Rejection:
    """The named reason the required attributes are not acceptable (the slow path)."""
    for name, length_max in (("id", EVENT_ID_LENGTH_MAX), ("source", EVENT_SOURCE_LENGTH_MAX)):
        verdict = _text_attribute(raw, name, length_max)
        if isinstance(verdict, Rejection):
            return verdict
    specversion = raw.get("specversion")
    if specversion is None:
        return Rejection(EventCode.FIELD_MISSING, "specversion", "specversion is required")
    if specversion != SPECVERSION:
        return Rejection(
            EventCode.SPECVERSION_UNSUPPORTED, "specversion", f"specversion must be '{SPECVERSION}'"
        )
    verdict = _text_attribute(raw, "type", EVENT_TYPE_LENGTH_MAX)
    if isinstance(verdict, Rejection):
        return verdict
    verdict = _text_attribute(raw, "subject", EVENT_SUBJECT_LENGTH_MAX)
    assert isinstance(verdict, Rejection), "called only when an attribute is wrong"
    return Rejection(verdict.code, "subject", verdict.message + " (the customer's external_id)")


def _plain(data: dict[str, Any]) -> bool:
    """No value that canonical() would change (the usual flat payload of strings and ints)."""
    for value in data.values():
        kind = type(value)
        if kind is dict or kind is list or kind is Decimal:
            return False
    return True


TimeCache = dict[str, tuple[datetime, str] | None]


def check_envelope(
    raw: object, *, received_at: datetime, times: TimeCache | None = None
) -> CheckedEvent | Rejection:
    """The envelope ladder. The first failure names the event's code and field.

    ``times`` memoizes parsed ``time`` strings across one batch (clients often stamp many
    events with the same instant)."""
    if type(raw) is not dict:
        return Rejection(EventCode.EVENT_INVALID, None, "an event must be a JSON object")
    get = raw.get
    event_id, source, event_type, subject = get("id"), get("source"), get("type"), get("subject")
    if not (
        type(event_id) is str
        and 0 < len(event_id) <= EVENT_ID_LENGTH_MAX
        and type(source) is str
        and 0 < len(source) <= EVENT_SOURCE_LENGTH_MAX
        and get("specversion") == SPECVERSION
        and type(event_type) is str
        and 0 < len(event_type) <= EVENT_TYPE_LENGTH_MAX
        and type(subject) is str
        and 0 < len(subject) <= EVENT_SUBJECT_LENGTH_MAX
        and NUL not in event_id
        and NUL not in source
        and NUL not in event_type
        and NUL not in subject
    ):
        return _attribute_rejection(raw)
    time_sent: datetime | None = None
    time_text: str | None = None
    sent = get("time")
    if sent is not None:
        parsed = times.get(sent) if times is not None and type(sent) is str else None
        if parsed is None:
            instant = parse_time(sent)
            if instant is None:
                return Rejection(
                    EventCode.TIME_INVALID,
                    "time",
                    "time must be an RFC 3339 timestamp with an offset, e.g. 2026-11-01T09:00:00Z",
                )
            parsed = (instant, instant.isoformat())
            if times is not None and type(sent) is str:
                times[sent] = parsed
        time_sent, time_text = parsed
    content_type = get("datacontenttype")
    if content_type is not None and (
        not isinstance(content_type, str)
        or content_type.split(";")[0].strip().lower() not in JSON_CONTENT_TYPES
    ):
        return Rejection(
            EventCode.FIELD_INVALID, "datacontenttype", "datacontenttype must be application/json"
        )
    if "data_base64" in raw:
        return Rejection(
            EventCode.FIELD_INVALID, "data_base64", "binary data is not supported; send data"
        )
    data = get("data")
    data_json: str | None = None
    hash_bytes: bytes | None = None
    if data is not None:
        if type(data) is not dict:
            return Rejection(EventCode.FIELD_INVALID, "data", "data must be a JSON object")
        stored = ENCODER.encode(data)
        if len(stored) > EVENT_BYTES_MAX:
            return Rejection(
                EventCode.EVENT_TOO_LARGE, "data", f"data exceeds {EVENT_BYTES_MAX} bytes"
            )
        data_json = stored.decode()
        hash_bytes = stored if _plain(data) else ENCODER.encode(canonical(data))
    payload = ENCODER.encode(
        (event_type, subject, time_text, msgspec.Raw(hash_bytes) if hash_bytes else None)
    )
    return CheckedEvent(
        source=source,
        event_id=event_id,
        type=event_type,
        subject=subject,
        time=time_sent if time_sent is not None else received_at,
        data=data,
        data_json=data_json,
        content_hash=hashlib.blake2b(payload, digest_size=16).hexdigest(),
        received_at=received_at,
    )


def encode_raw(raw: object) -> str:
    """The event as received, for the dead-letter table (numbers keep their digits)."""
    try:
        return ENCODER.encode(raw).decode()
    except (TypeError, msgspec.EncodeError):
        return ENCODER.encode(repr(raw)).decode()


def decode_data(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = DECODER.decode(text)
    assert isinstance(value, dict)
    return value
