"""The OneNET connectors verify as OneNET signs (MD5 over token, nonce and the message
text as sent), answer its URL check with the message itself, decrypt its encrypted mode,
and read OneNET Studio's and the older data push's messages."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from ingest.errors import PayloadError
from ingest.push.answers import Refused
from ingest.push.connectors.base import Request
from ingest.push.connectors.onenet import (
    OneNETLegacy,
    OneNETStudio,
    decrypt,
    encrypt,
    raw_member,
    signature_of,
)
from store.push_sources import PushSource

TOKEN = "Kx7pQ2mZ9vR4tW8yB3nC6dF1gH5jL0sA"
AES = base64.b64encode(b"0123456789abcdef").decode()
T_MS = 1_765_094_400_000


def _source(platform: str = "onenet", aes_key: str | None = None) -> PushSource:
    return PushSource(
        "320100", "cmcc", "k1", "h", "s", None, 5000.0, platform, None, (), TOKEN, aes_key
    )


def _request(body: bytes = b"", method: str = "POST", **query: str) -> Request:
    return Request(method, query, {}, body, "127.0.0.1")


def _studio(msg: dict[str, object], *, token: str = TOKEN, aes: str | None = None) -> bytes:
    text = json.dumps(msg)
    if aes is not None:
        text = encrypt(text, aes)
    nonce = "abcdefgh"
    return json.dumps(
        {
            "msg": text,
            "nonce": nonce,
            "signature": signature_of(token, nonce, text),
            "time": T_MS,
            "id": "f3a1b2",
        }
    ).encode()


PROPERTY = {
    "projectId": "990909090",
    "productId": "00001",
    "deviceName": "cover-0001",
    "messageType": "notify",
    "notifyType": "property",
    "imei": "862592051651472",
    "data": {
        "id": "12345",
        "params": {
            "tilt_deg": {"value": 23.5, "time": T_MS},
            "battery_pct": {"value": 88, "time": T_MS},
            "water_level": {"value": 0.4, "time": T_MS + 60_000},
        },
    },
}


def test_the_url_check_is_answered_with_msg_when_the_signature_holds() -> None:
    studio, source = OneNETStudio(), _source()
    good = signature_of(TOKEN, "n0nce123", "hello-onenet")
    answer = studio.handshake(
        source, _request(method="GET", msg="hello-onenet", nonce="n0nce123", signature=good)
    )
    assert answer is not None
    assert (answer.status, answer.body) == (200, "hello-onenet")
    # a '+' of the signature decoded as a space on the way still verifies
    spaced = good.replace("+", " ")
    assert studio.handshake(
        source, _request(method="GET", msg="hello-onenet", nonce="n0nce123", signature=spaced)
    )
    with pytest.raises(Refused) as bad:
        studio.handshake(
            source, _request(method="GET", msg="hello-onenet", nonce="n0nce124", signature=good)
        )
    assert (bad.value.status, bad.value.reason) == (401, "bad_signature")


def test_a_signed_push_verifies_and_a_tampered_or_foreign_one_does_not() -> None:
    studio, source = OneNETStudio(), _source()
    body = _studio(PROPERTY)
    studio.verify(source, _request(body))
    tampered = json.loads(body)
    tampered["msg"] = tampered["msg"].replace("23.5", "93.5")
    for wrong in (json.dumps(tampered).encode(), _studio(PROPERTY, token="another-token")):
        with pytest.raises(Refused) as err:
            studio.verify(source, _request(wrong))
        assert err.value.reason == "bad_signature"
    with pytest.raises(Refused):
        studio.verify(source, _request(b"not json"))


def test_a_property_notification_is_a_reading_message_per_time() -> None:
    parsed = OneNETStudio().parse(_studio(PROPERTY), _source())
    first, later = parsed.messages
    assert first.refs == ("cover-0001", "862592051651472")
    assert first.ts == datetime.fromtimestamp(T_MS / 1000, UTC)
    assert dict(first.values) == {"tilt_deg": 23.5, "battery_pct": 88}
    assert dict(later.values) == {"water_level": 0.4}
    assert first.dedup is not None
    assert first.dedup.startswith("f3a1b2|")
    assert first.dedup != later.dedup


def test_the_encrypted_mode_round_trips_and_a_wrong_key_says_so() -> None:
    text = json.dumps(PROPERTY)
    assert decrypt(encrypt(text, AES), AES) == text
    body = _studio(PROPERTY, aes=AES)
    OneNETStudio().verify(_source(aes_key=AES), _request(body))  # signed over the ciphertext
    [first, _] = OneNETStudio().parse(body, _source(aes_key=AES)).messages
    assert dict(first.values)["tilt_deg"] == 23.5
    with pytest.raises(PayloadError) as err:
        OneNETStudio().parse(body, _source(aes_key=base64.b64encode(b"fedcba9876543210").decode()))
    assert err.value.reason in {"bad_encryption", "bad_shape"}
    with pytest.raises(PayloadError, match="AES key"):
        OneNETStudio().parse(body, _source())


def test_life_cycle_events_and_replies() -> None:
    studio = OneNETStudio()
    life = {**PROPERTY, "messageType": "lifeCycle", "data": {"status": "offline", "time": T_MS}}
    [status] = studio.parse(_studio(life), _source()).messages
    assert (status.kind, status.status) == ("status", "offline")
    event = {
        **PROPERTY,
        "notifyType": "event",
        "data": {"id": "9", "params": {"tamper": {"value": {"tilt_deg": 40}, "time": T_MS}}},
    }
    [alarm] = studio.parse(_studio(event), _source()).messages
    assert (alarm.kind, dict(alarm.values), alarm.detail) == (
        "event",
        {"tilt_deg": 40},
        "event tamper",
    )
    [reply] = studio.parse(_studio({**PROPERTY, "messageType": "reply"}), _source()).messages
    assert reply.kind == "ack"
    with pytest.raises(PayloadError) as err:
        studio.parse(_studio({**PROPERTY, "messageType": "weird"}), _source())
    assert err.value.reason == "unknown_message_type"


LEGACY_BODY = (
    '{"msg": {"type":1, "dev_id":2016617, "ds_id":"tilt_deg", "at":1765094400000, "value":42.0},'
    ' "msg_signature":"%s", "nonce":"abcdefgh"}'
)


def test_the_older_push_verifies_over_the_raw_text_of_msg_as_sent() -> None:
    raw = '{"type":1, "dev_id":2016617, "ds_id":"tilt_deg", "at":1765094400000, "value":42.0}'
    body = (LEGACY_BODY % signature_of(TOKEN, "abcdefgh", raw)).encode()
    legacy, source = OneNETLegacy(), _source("onenet-legacy")
    legacy.verify(source, _request(body))
    reserialised = json.dumps(json.loads(raw), separators=(",", ":"))
    other = (LEGACY_BODY % signature_of(TOKEN, "abcdefgh", reserialised)).encode()
    with pytest.raises(Refused):
        legacy.verify(source, _request(other))
    [point] = legacy.parse(body, source).messages
    assert (point.kind, point.refs, dict(point.values)) == (
        "reading",
        ("2016617",),
        {"tilt_deg": 42.0},
    )


def test_the_older_push_reads_batches_and_login_status() -> None:
    msgs = [
        {"type": 2, "dev_id": 7, "status": 1, "login_type": 7, "at": T_MS},
        {"type": 1, "dev_id": 7, "ds_id": "tilt_deg", "at": T_MS, "value": 3},
        {"type": 9, "dev_id": 7},
    ]
    parsed = OneNETLegacy().parse(
        json.dumps({"msg": msgs, "nonce": "n", "msg_signature": "s"}).encode()
    )
    assert [m.kind for m in parsed.messages] == ["status", "reading"]
    assert parsed.messages[0].status == "online"
    [(_part, why)] = parsed.bad
    assert why.reason == "unknown_message_type"


def test_raw_member_returns_the_text_exactly_as_it_stands() -> None:
    text = '{ "a" : [1, 2 ,3] , "msg" :{"x": 1.50,  "y":"z"} , "b": null}'
    assert raw_member(text, "msg") == '{"x": 1.50,  "y":"z"}'
    assert raw_member(text, "a") == "[1, 2 ,3]"
    assert raw_member(text, "c") is None
    assert raw_member("[1]", "msg") is None
