"""The one signature scheme: what push sources send and what webhooks receive."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from lifeline import signature

SECRET = "s3cret"
BODY = b'{"device_id":"gw-1","metric":"ch4","value":1.5}'
NOW = 1_800_000_000


def test_a_signature_is_hmac_sha256_of_the_time_and_the_exact_body() -> None:
    value = signature.sign(SECRET, BODY, NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert value == f"t={NOW},v1={expected}"
    assert signature.verify(SECRET, BODY, value, NOW + 299, 300) == expected


@pytest.mark.parametrize(
    ("value", "body", "secret", "now", "reason"),
    [
        (signature.sign(SECRET, BODY, NOW), BODY + b" ", SECRET, NOW, "bad_signature"),
        (signature.sign(SECRET, BODY, NOW), BODY, "other", NOW, "bad_signature"),
        (signature.sign(SECRET, BODY, NOW), BODY, SECRET, NOW + 301, "stale_signature"),
        (signature.sign(SECRET, BODY, NOW), BODY, SECRET, NOW - 301, "stale_signature"),
        ("sha256=" + "0" * 64, BODY, SECRET, NOW, "bad_signature"),
        (f"t=soon,v1={'0' * 64}", BODY, SECRET, NOW, "bad_signature"),
    ],
)
def test_what_does_not_hold_is_refused_with_its_reason(
    value: str, body: bytes, secret: str, now: int, reason: str
) -> None:
    with pytest.raises(signature.SignatureError) as refused:
        signature.verify(secret, body, value, now, 300)
    assert refused.value.reason == reason
    assert str(refused.value)


def test_a_signature_moved_to_another_time_does_not_hold() -> None:
    t, digest = signature.parse(signature.sign(SECRET, BODY, NOW))
    with pytest.raises(signature.SignatureError):
        signature.verify(SECRET, BODY, f"t={t + 1},v1={digest}", NOW, 300)
