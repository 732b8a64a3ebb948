"""Who may push: ingest keys, HMAC signatures with a time window, each signature once,
a source only for its own city; rate limits per source; the shapes a body may take."""

from __future__ import annotations

import asyncio

import pytest

from ingest.decode import Decoder
from ingest.errors import PayloadError
from ingest.push.answers import Refused
from ingest.push.handler import Caller, PushIngest, Sources, _reports
from ingest.push.limits import RateLimits, Replays
from lifeline.registry import Registry
from lifeline.signature import sign
from store.push_sources import PushSource, _hash

NOW = 1_800_000_000
SECRET = "s3cret"
SOURCE = PushSource("320100", "ctwing", "ab12cd34ef56", _hash("keysecret"), SECRET, None, 10.0)
OTHER = PushSource("320200", "onenet", "0123456789ab", _hash("other"), "x", None, 10.0)


def _ingest() -> PushIngest:
    registry = Registry()
    return PushIngest(registry, Sources([SOURCE, OTHER]), Decoder(registry, {}), {}, lambda: NOW)


def _signed(body: bytes, at: int = NOW, name: str = "ctwing") -> dict[str, str]:
    return {"x-cityops-source": name, "x-cityops-signature": sign(SECRET, body, at)}


def test_a_signed_request_is_answered_once_unless_told_to_retry() -> None:
    ingest, body = _ingest(), b'{"device_id":"gw-1"}'
    caller = ingest.authenticate("320100", _signed(body), body)
    assert caller.source is SOURCE
    assert caller.signature == _signed(body)["x-cityops-signature"].partition(",v1=")[2]
    # Refused with 503 (no Kafka here): not answered yet, so the same request may come
    # again; once answered otherwise, it is a replay.
    first = asyncio.run(ingest.handle("320100", _signed(body), body))
    assert (first.status, first.headers["Retry-After"]) == (503, "5")
    assert ingest.authenticate("320100", _signed(body), body).source is SOURCE
    ingest.replays.remember(caller.signature or "", NOW)
    with pytest.raises(Refused) as again:
        ingest.authenticate("320100", _signed(body), body)
    assert (again.value.status, again.value.reason) == (409, "replayed")
    # Signed anew (another second), the same body passes: that is how a retry is sent.
    assert ingest.authenticate("320100", _signed(body, NOW - 1), body).source is SOURCE


def test_a_refused_request_is_answered_and_counted_as_such() -> None:
    ingest, body = _ingest(), b"{}"
    answer = asyncio.run(ingest.handle("320200", _signed(body), body))
    assert answer.status == 401
    assert answer.body["error"] == "unknown_source"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "unauthenticated"),
        ({"x-cityops-source": "ctwing", "x-cityops-signature": "t=1,v1=00"}, "bad_signature"),
        ({"x-cityops-source": "ctwing", "x-cityops-signature": "v1=00"}, "bad_signature"),
        ({"x-cityops-source": "nobody", "x-cityops-signature": "t=1,v1=00"}, "unknown_source"),
        ({"authorization": "Bearer cpk_ab12cd34ef56.wrong"}, "bad_key"),
        ({"authorization": "Bearer cok_ab12cd34ef56.keysecret"}, "bad_key"),
    ],
)
def test_wrong_credentials_are_refused_with_the_reason(
    headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(Refused) as refused:
        _ingest().authenticate("320100", headers, b"{}")
    assert refused.value.status == 401
    assert refused.value.reason == reason


def test_a_signature_of_another_body_is_refused() -> None:
    headers = _signed(b'{"value":1}')
    with pytest.raises(Refused) as refused:
        _ingest().authenticate("320100", headers, b'{"value":100}')
    assert refused.value.reason == "bad_signature"


@pytest.mark.parametrize("skew", [-301, 301, -86_400])
def test_a_signature_outside_the_window_is_stale(skew: int) -> None:
    body = b"{}"
    with pytest.raises(Refused) as refused:
        _ingest().authenticate("320100", _signed(body, NOW + skew), body)
    assert (refused.value.status, refused.value.reason) == (401, "stale_signature")


def test_the_ingest_key_authenticates_and_a_source_pushes_only_for_its_city() -> None:
    ingest = _ingest()
    key = {"authorization": "Bearer cpk_ab12cd34ef56.keysecret"}
    assert ingest.authenticate("320100", key, b"{}") == Caller(SOURCE)
    with pytest.raises(Refused) as refused:
        ingest.authenticate("320200", key, b"{}")
    assert (refused.value.status, refused.value.reason) == (403, "wrong_city")


def test_the_rate_limit_lets_a_second_through_then_says_when_to_retry() -> None:
    now = [0.0]
    limits = RateLimits(lambda: now[0])
    assert limits.take(SOURCE, 10) == 0.0
    assert limits.take(SOURCE, 5) == pytest.approx(0.5)
    now[0] = 0.5
    assert limits.take(SOURCE, 5) == 0.0
    # A batch larger than a second's worth passes once the bucket is full again, and
    # the source waits until its average is back within the rate.
    now[0] = 10.0
    assert limits.take(SOURCE, 50) == 0.0
    assert limits.take(SOURCE, 1) == pytest.approx(4.1)
    now[0] = 14.1
    assert limits.take(SOURCE, 1) == 0.0


def test_replays_forget_signatures_long_past_the_window() -> None:
    replays = Replays(window_s=300)
    assert not replays.answered("sig", 0)
    replays.remember("sig", 0)
    assert replays.answered("sig", 100)
    assert not replays.answered("other", 700)  # prunes
    assert "sig" not in replays.seen


def test_a_body_is_one_report_an_array_or_an_object_of_reports() -> None:
    assert _reports({"device_id": "a"}) == [{"device_id": "a"}]
    assert _reports([{"device_id": "a"}, {"device_id": "b"}]) == [
        {"device_id": "a"},
        {"device_id": "b"},
    ]
    assert _reports({"reports": [{"device_id": "a"}]}) == [{"device_id": "a"}]
    with pytest.raises(PayloadError, match="no report"):
        _reports([])
    with pytest.raises(PayloadError) as many:
        _reports([{}] * 1001)
    assert many.value.reason == "oversize"
