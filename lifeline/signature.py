"""The platform's one signature scheme, for what it receives (push sources sign their
bodies) and what it sends (webhook deliveries are signed for their receivers).

``X-CityOps-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is HMAC-SHA256, with the
shared secret, of ``"<t>." + body`` (the exact body bytes). The time is signed with the
body, so a receiver refuses a signature outside its window and a copy replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-CityOps-Signature"
#: What a receiver says when the header is malformed.
FORM = 't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body with the shared secret>'


class SignatureError(ValueError):
    """A signature that does not hold: ``reason`` is ``bad_signature`` (malformed, or
    not of this body and secret) or ``stale_signature`` (outside the time window)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def digest(secret: str, body: bytes, t: int) -> str:
    """The hex HMAC-SHA256 of ``"<t>." + body`` with ``secret``."""
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    """The header value of ``body`` signed at ``at`` (default: now)."""
    t = int(time.time()) if at is None else at
    return f"t={t},v1={digest(secret, body, t)}"


def parse(value: str) -> tuple[int, str]:
    """The time and the hex digest of a header value."""
    parts = dict(p.strip().partition("=")[::2] for p in value.split(","))
    try:
        t = int(parts.get("t", ""))
    except ValueError:
        raise SignatureError("bad_signature", f"{HEADER} must be '{FORM}'") from None
    return t, parts.get("v1", "")


def verify(secret: str, body: bytes, value: str, now: float, window_s: float) -> str:
    """The digest of a header value that signs ``body`` with ``secret`` within
    ``window_s`` of ``now``; :class:`SignatureError` otherwise."""
    t, given = parse(value)
    if not hmac.compare_digest(given, digest(secret, body, t)):
        raise SignatureError(
            "bad_signature",
            'the signature does not match the body: HMAC-SHA256 of "<t>." + the exact '
            "body bytes, with the shared secret, in lower-case hex",
        )
    if abs(now - t) > window_s:
        raise SignatureError(
            "stale_signature",
            f"signed at {t}, {abs(now - t):.0f} s from the receiver's clock (window "
            f"{window_s:.0f} s); sign each attempt when it is sent",
        )
    return given
