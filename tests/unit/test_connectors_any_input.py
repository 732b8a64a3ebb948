"""Whatever a platform's request holds, its connector either reads it or says why
(a ``PayloadError`` with a reason): no input makes the push service answer 5xx."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import PayloadError
from ingest.push.answers import Refused
from ingest.push.connectors import CONNECTORS
from ingest.push.connectors.base import Connector, Parsed, Request
from store.push_sources import PushSource

LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
JSON = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
#: the fields each platform's messages have, so generated bodies reach deep into the parsers
FIELDS = st.sampled_from(
    [
        "messageType",
        "deviceId",
        "IMEI",
        "timestamp",
        "payload",
        "serviceData",
        "APPdata",
        "eventType",
        "eventContent",
        "upPacketSN",
        "result",
        "resource",
        "event",
        "event_time",
        "notify_data",
        "header",
        "body",
        "services",
        "properties",
        "status",
        "device_id",
        "node_id",
        "method",
        "params",
        "events",
        "eventId",
        "srcIndex",
        "happenTime",
        "eventDetails",
        "eventLvl",
        "data",
        "imageUrl",
        "EventNotificationAlert",
        "macAddress",
        "ipAddress",
        "channelID",
        "dateTime",
        "eventState",
        "DurationList",
    ]
)
VALUES = st.sampled_from(
    [
        "dataReport",
        "dataReportTupUnion",
        "eventReport",
        "deviceOnlineOfflineReport",
        "commandResponse",
        "device.property",
        "device.status",
        "device.message",
        "device.command",
        "report",
        "update",
        "ONLINE",
        "20261207T080000Z",
        1765000000000,
        "OnEventNotify",
        "2026-12-08T08:00:00.000+08:00",
        "2026-12-08 08:00:00",
        "heartBeat",
        "duration",
        "active",
        192513,
    ]
)
MESSAGE = st.recursive(
    LEAVES | VALUES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(FIELDS, inner, max_size=6),
    max_leaves=30,
)


def _read(connector: Connector, raw: bytes, content_type: str = "") -> Parsed | str:
    """What the connector made of ``raw``, or the reason it gave for refusing it (any
    other exception fails the test)."""
    try:
        return connector.parse(raw, None, content_type)
    except PayloadError as exc:
        return exc.reason


TAGS = st.sampled_from(
    [
        "EventNotificationAlert",
        "macAddress",
        "ipAddress",
        "channelID",
        "dateTime",
        "eventType",
        "eventState",
        "DurationList",
        "Duration",
        "relationEvent",
        "bkgUrl",
        "x",
    ]
)
XML = st.recursive(
    st.text(max_size=12) | VALUES.map(str),
    lambda inner: st.tuples(TAGS, st.lists(inner, max_size=4)).map(
        lambda t: f"<{t[0]}>" + "".join(t[1]) + f"</{t[0]}>"
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    xml=XML,
    parts=st.lists(st.binary(max_size=24), max_size=3),
    boundary=st.text(min_size=0, max_size=8),
)
def test_the_isapi_connector_reads_or_refuses_any_xml_and_multipart(
    xml: str, parts: list[bytes], boundary: str
) -> None:
    connector = CONNECTORS["isapi"]
    for content_type, body in (
        ("application/xml", xml.encode()),
        (
            f"multipart/form-data; boundary={boundary}",
            b"".join(
                b"--" + boundary.encode() + b"\r\nContent-Type: image/jpeg\r\n\r\n" + p + b"\r\n"
                for p in parts
            )
            + b"--"
            + boundary.encode()
            + b"\r\nContent-Type: application/xml\r\n\r\n"
            + xml.encode()
            + b"\r\n--"
            + boundary.encode()
            + b"--\r\n",
        ),
    ):
        got = _read(connector, body, content_type)
        if isinstance(got, str):
            assert got
        else:
            assert all(m.refs and all(m.refs) for m in got.messages)


@settings(max_examples=400, deadline=None)
@given(body=MESSAGE | JSON)
def test_every_connector_reads_or_refuses_any_json(body: object) -> None:
    raw = json.dumps(body).encode()
    for connector in CONNECTORS.values():
        got = _read(connector, raw)
        if isinstance(got, str):
            assert got, connector.platform
            continue
        for message in got.messages:
            assert message.refs
            assert all(isinstance(r, str) and r for r in message.refs)


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=64))
def test_every_connector_refuses_bytes_that_are_not_json(raw: bytes) -> None:
    for connector in CONNECTORS.values():
        got = _read(connector, raw)
        assert isinstance(got, str) or got.messages or got.bad


@settings(max_examples=200, deadline=None)
@given(body=MESSAGE | JSON, raw=st.binary(max_size=32))
def test_every_connector_lets_a_request_in_or_refuses_it(body: object, raw: bytes) -> None:
    for connector in CONNECTORS.values():
        source = PushSource(
            "320100", "s", "k", "h", "x", None, 1.0, connector.platform, "t", (), "tok", None
        )
        for data in (json.dumps(body).encode(), raw):
            for method in ("POST", "GET"):
                request = Request(method, {"token": "t", "msg": "m"}, {}, data, "127.0.0.1")
                assert 200 <= _status(connector, source, request) < 500


def _status(connector: Connector, source: PushSource, request: Request) -> int:
    """What the request gets as far as verification goes (200: let in)."""
    try:
        connector.verify(source, request)
        if request.method == "GET":
            connector.handshake(source, request)
    except Refused as exc:
        return exc.status
    return 200


def test_hostile_bodies_are_refused_or_read_by_every_connector() -> None:
    from drills.suite import _hostile_bodies

    for connector in CONNECTORS.values():
        source = PushSource(
            "320100", "s", "k", "h", "x", None, 1.0, connector.platform, "t", (), "tok", None
        )
        for what, body in _hostile_bodies():
            request = Request("POST", {"token": "t"}, {}, body, "127.0.0.1")
            assert 200 <= _status(connector, source, request) < 500, (connector.platform, what)
            got = _read(connector, body)
            assert isinstance(got, str | Parsed), (connector.platform, what)
