"""Stripe webhook signatures, verified here rather than by the SDK so the rules are ours.

Stripe signs each delivery with the endpoint's secret: ``Stripe-Signature: t=<unix seconds>,
v1=<hex HMAC-SHA256 of "<t>.<raw body>">``. While a secret is being rolled, Stripe sends one
``v1`` per live secret, and we may hold several secrets ourselves (old and new): a delivery is
genuine when any ``v1`` matches any of our secrets. Signatures are compared in constant time.

A genuine signature with a timestamp outside the tolerance (either way: replays, or a clock far
off) is refused, so a captured request can't be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from tallybook.kit.errors import InvalidRequest
from tallybook.payments.errors import PaymentsCode

SIGNATURE_HEADER: Final = "Stripe-Signature"
SIGNATURE_SCHEME: Final = "v1"
#: A header longer than this is refused before parsing (Stripe sends one or two signatures).
HEADER_LENGTH_MAX: Final = 2048
SIGNATURES_PER_HEADER_MAX: Final = 8


@dataclass(frozen=True, slots=True)
class ParsedHeader:
    timestamp: int
    signatures: tuple[str, ...]


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(PaymentsCode.WEBHOOK_SIGNATURE_INVALID, message, param=SIGNATURE_HEADER)


def parse_header(header: str | None) -> ParsedHeader:
    if header is None or not header.strip():
        raise InvalidRequest(
            PaymentsCode.WEBHOOK_SIGNATURE_MISSING,
            f"the {SIGNATURE_HEADER} header is missing",
            param=SIGNATURE_HEADER,
        )
    if len(header) > HEADER_LENGTH_MAX:
        raise _invalid(f"the {SIGNATURE_HEADER} header is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not value.isdigit():
                raise _invalid("the signature timestamp is not a whole number of seconds")
            timestamp = int(value)
        elif key == SIGNATURE_SCHEME and value:
            signatures.append(value)
    if timestamp is None:
        raise _invalid("the signature has no timestamp (t=)")
    if not signatures:
        raise _invalid(f"the signature has no {SIGNATURE_SCHEME} scheme")
    return ParsedHeader(timestamp, tuple(signatures[:SIGNATURES_PER_HEADER_MAX]))


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """The header Stripe would send for ``payload`` (one ``v1`` per secret): for tests and for
    checking a set-up by hand."""
    parts = [f"t={timestamp}"]
    parts.extend(f"{SIGNATURE_SCHEME}={compute_signature(payload, s, timestamp)}" for s in secrets)
    return ",".join(parts)


def verify(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    now: datetime,
    tolerance_seconds: int,
) -> int:
    """Return the signed timestamp, or raise ``webhook_signature_missing``,
    ``webhook_signature_invalid`` or ``webhook_timestamp_outside_tolerance`` (all 400)."""
    parsed = parse_header(header)
    matched = False
    for secret in secrets:
        expected = compute_signature(payload, secret, parsed.timestamp)
        for candidate in parsed.signatures:
            # Not short-circuited: every comparison runs, so timing says nothing about which.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise _invalid("no signature matches the payload with the endpoint's secrets")
    age_seconds = int(now.timestamp()) - parsed.timestamp
    if abs(age_seconds) > tolerance_seconds:
        raise InvalidRequest(
            PaymentsCode.WEBHOOK_TIMESTAMP_OUTSIDE_TOLERANCE,
            f"the signature is {age_seconds} s old; at most {tolerance_seconds} s either way",
            param=SIGNATURE_HEADER,
        )
    return parsed.timestamp
