"""Stripe-Signature verification: ours, cross-checked against the SDK's own verifier."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from tallybook.kit.errors import InvalidRequest
from tallybook.payments.signature import compute_signature, signature_header, verify

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
T = int(NOW.timestamp())
SECRET = "whsec_current"
OLD = "whsec_previous"
BODY = b'{"id":"evt_1","object":"event","type":"payment_intent.succeeded","created":1,"data":{"object":{}}}'


def _verify(
    header: str | None, secrets: list[str], *, body: bytes = BODY, tolerance: int = 300
) -> int:
    return verify(body, header, secrets, now=NOW, tolerance_seconds=tolerance)


def _code(header: str | None, secrets: list[str], **kwargs: object) -> str:
    with pytest.raises(InvalidRequest) as raised:
        _verify(header, secrets, **kwargs)  # type: ignore[arg-type]
    assert raised.value.param == "Stripe-Signature"
    return raised.value.code


def test_a_genuine_signature_is_accepted() -> None:
    assert _verify(signature_header(BODY, [SECRET], T), [SECRET]) == T


def test_missing_header() -> None:
    assert _code(None, [SECRET]) == "webhook_signature_missing"
    assert _code("  ", [SECRET]) == "webhook_signature_missing"


@pytest.mark.parametrize(
    "header",
    [
        f"v1={compute_signature(BODY, SECRET, T)}",  # no timestamp
        f"t={T}",  # no v1
        f"t=abc,v1={compute_signature(BODY, SECRET, T)}",
        f"t={T},v0={compute_signature(BODY, SECRET, T)}",  # only a scheme we don't accept
        "garbage",
    ],
)
def test_malformed_headers_are_invalid(header: str) -> None:
    assert _code(header, [SECRET]) == "webhook_signature_invalid"


def test_forged_signature_body_or_secret() -> None:
    assert _code(f"t={T},v1={'0' * 64}", [SECRET]) == "webhook_signature_invalid"
    tampered = BODY.replace(b"succeeded", b"failed")
    assert (
        _code(signature_header(BODY, [SECRET], T), [SECRET], body=tampered)
        == "webhook_signature_invalid"
    )
    assert (
        _code(signature_header(BODY, ["whsec_attacker"], T), [SECRET])
        == "webhook_signature_invalid"
    )
    # A signature of another timestamp, with the header's timestamp changed to look fresh.
    old_signature = compute_signature(BODY, SECRET, T - 3600)
    assert _code(f"t={T},v1={old_signature}", [SECRET]) == "webhook_signature_invalid"


def test_stale_and_future_timestamps_are_refused() -> None:
    stale = signature_header(BODY, [SECRET], T - 301)
    assert _code(stale, [SECRET]) == "webhook_timestamp_outside_tolerance"
    future = signature_header(BODY, [SECRET], T + 301)
    assert _code(future, [SECRET]) == "webhook_timestamp_outside_tolerance"
    assert _verify(signature_header(BODY, [SECRET], T - 300), [SECRET]) == T - 300
    assert _code(signature_header(BODY, [SECRET], T - 60), [SECRET], tolerance=30) == (
        "webhook_timestamp_outside_tolerance"
    )


def test_rotation_several_signatures_and_several_secrets() -> None:
    # Stripe signs with both secrets while one is rolled: either of ours matches.
    both = signature_header(BODY, [OLD, SECRET], T)
    assert _verify(both, [SECRET]) == T
    assert _verify(both, [OLD]) == T
    # We hold both secrets while Stripe already signs with the new one only (or the old one).
    assert _verify(signature_header(BODY, [SECRET], T), [OLD, SECRET]) == T
    assert _verify(signature_header(BODY, [OLD], T), [OLD, SECRET]) == T
    # A retired secret no longer verifies.
    assert _code(signature_header(BODY, [OLD], T), [SECRET]) == "webhook_signature_invalid"


def test_no_secret_configured_verifies_nothing() -> None:
    assert _code(signature_header(BODY, [SECRET], T), []) == "webhook_signature_invalid"


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(min_size=0, max_size=300),
    secret=st.text(min_size=1, max_size=40).map(lambda s: "whsec_" + s),
    age=st.integers(min_value=-200, max_value=200),
    forged=st.booleans(),
)
def test_agrees_with_the_stripe_sdk(body: bytes, secret: str, age: int, forged: bool) -> None:
    """Whatever we accept, ``stripe.Webhook`` accepts, and the other way round."""
    timestamp = T - age
    header = signature_header(body, [secret], timestamp)
    if forged:
        header = header[:-1] + ("0" if header[-1] != "0" else "1")
    try:
        verify(body, header, [secret], now=datetime.fromtimestamp(T, UTC), tolerance_seconds=300)
        ours = True
    except InvalidRequest:
        ours = False
    try:
        # The SDK reads the clock itself: give it a tolerance that covers the whole run, since
        # ``age`` is well inside our 300 s by construction.
        text = body.decode("utf-8", errors="surrogateescape")
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
        theirs = True
    except (stripe.SignatureVerificationError, UnicodeEncodeError):
        theirs = False
    assert ours == (not forged)
    if body.decode("utf-8", errors="replace").encode() == body:
        assert theirs == ours


def test_a_real_event_verifies_with_construct_event() -> None:
    payload = BODY.decode()
    header = signature_header(BODY, [SECRET], T)
    constructed = stripe.Webhook.construct_event(payload, header, SECRET, tolerance=None)
    assert constructed["type"] == "payment_intent.succeeded"
    assert _verify(header, [SECRET]) == T
