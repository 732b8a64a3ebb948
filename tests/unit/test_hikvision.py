"""The Hikvision connectors read iSecure Center's ``OnEventNotify`` and a camera's ISAPI
``EventNotificationAlert`` as their published shapes have them (plain and linkage
events, local times, event states, pictures; XML in either namespace, JSON, multipart
with pictures, heartbeats, ``duration`` alerts); the city's code table says what a
code is, and a code it does not name is kept as ``unmapped``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.errors import PayloadError
from ingest.event_codes import EventCodeError, EventCodes, read_table
from ingest.push.connectors.hikvision import ISAPI, ISecureCenter
from lifeline.vocabulary import VideoEventType


def _notify(*events: object, method: str = "OnEventNotify") -> bytes:
    return json.dumps(
        {
            "method": method,
            "params": {
                "ability": "event_vss",
                "sendTime": "2026-12-08T08:00:01.000+08:00",
                "events": list(events),
            },
        },
        ensure_ascii=False,
    ).encode()


SMOKE = {
    "eventId": "44E20C02-A86C-3841-89A7-997F84FE52EF",
    "srcIndex": "4c777ca96a1c4eb997ab89caf34f3044",
    "srcType": "camera",
    "srcName": "新街口东",
    "eventType": 192513,
    "status": 0,
    "eventLvl": 3,
    "timeout": 0,
    "happenTime": "2026-12-08T08:00:00.000+08:00",
    "srcParentIndex": "8e27d3fe6a0e4a3c9d0f5c2b",
    "data": {
        "dataType": "smokeDetection",
        "channelID": 1,
        "smokeDetection": [
            {
                "imageUrl": "http://isc.example/pic?=d7ei703-e*b",
                "visiblePicUrl": "http://isc.example/pic?=v1",
                "targetAttrs": {"cameraIndexCode": "4c777ca96a1c4eb997ab89caf34f3044"},
            }
        ],
    },
}


def test_an_event_is_one_video_message_of_its_camera_with_its_pictures() -> None:
    parsed = ISecureCenter().parse(_notify(SMOKE))
    [message] = parsed.messages
    assert message.kind == "video"
    assert message.refs == ("4c777ca96a1c4eb997ab89caf34f3044",)
    assert message.ts == datetime(2026, 12, 8, 0, 0, tzinfo=UTC)
    assert message.values["code"] == "192513"
    assert message.values["priority"] == 2  # iSecure Center's level 3 (high)
    assert message.values["pictures"] == (
        "http://isc.example/pic?=d7ei703-e*b",
        "http://isc.example/pic?=v1",
    )
    assert message.dedup == "isc|44E20C02-A86C-3841-89A7-997F84FE52EF"


def test_a_time_without_an_offset_is_china_standard_time_and_codes_may_be_strings() -> None:
    event = {**SMOKE, "eventType": "131588", "happenTime": "2026-12-08 08:00:00"}
    [message] = ISecureCenter().parse(_notify(event)).messages
    assert message.ts == datetime(2026, 12, 8, 0, 0, tzinfo=UTC)
    assert message.values["code"] == "131588"


def test_a_linkage_event_gives_one_message_per_camera_it_names() -> None:
    linkage = {
        "eventId": "F97F5A0BA985465CB2138C7291527562",
        "eventType": 0,
        "eventLvl": 3,
        "eventName": "火点",
        "srcType": "eventRule",
        "srcIndex": "dd668537a8c04531b23a216a3719aa3b",
        "status": 0,
        "happenTime": "2026-12-08T08:00:00.137+08:00",
        "eventDetails": [
            {"srcIndex": "cam-a", "srcType": "camera", "eventType": 254104, "data": {}},
            {"srcIndex": "cam-b", "srcType": "camera", "eventType": 254104},
        ],
    }
    a, b = ISecureCenter().parse(_notify(linkage)).messages
    assert (a.refs, b.refs) == (("cam-a",), ("cam-b",))
    assert a.values["code"] == "254104"
    assert a.values["name"] == "火点"
    assert a.dedup != b.dedup


def test_the_end_of_an_event_and_later_pictures_are_logged_not_new_events() -> None:
    stop = {**SMOKE, "eventId": "e2", "status": 2}
    pictures = {**SMOKE, "eventId": "e3", "status": 5}
    kinds = [m.kind for m in ISecureCenter().parse(_notify(stop, pictures)).messages]
    assert kinds == ["ack", "ack"]


def test_a_bad_event_is_set_aside_and_the_rest_are_read() -> None:
    parsed = ISecureCenter().parse(
        _notify(SMOKE, {"eventId": "x", "happenTime": "2026-12-08T08:00:00+08:00"}, "junk")
    )
    assert len(parsed.messages) == 1
    reasons = sorted(why.reason for _, why in parsed.bad)
    assert reasons == ["bad_shape", "bad_shape"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "bad_json"),
        (b"[]", "bad_shape"),
        (_notify(SMOKE, method="OnAlarm"), "bad_shape"),
        (b'{"method": "OnEventNotify", "params": {}}', "bad_shape"),
    ],
)
def test_what_isecure_center_sends_that_cannot_be_read_says_why(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as err:
        ISecureCenter().parse(body)
    assert err.value.reason == reason


ALERT = """<?xml version="1.0" encoding="UTF-8"?>
<EventNotificationAlert version="2.0" xmlns="{ns}">
    <ipAddress>10.20.1.64</ipAddress>
    <portNo>80</portNo>
    <protocol>HTTP</protocol>
    <macAddress>A6:63:9E:F8:01:09</macAddress>
    <channelID>1</channelID>
    <dateTime>2026-12-08T08:00:00+08:00</dateTime>
    <activePostCount>1</activePostCount>
    <eventType>{event}</eventType>
    <eventState>{state}</eventState>
    <eventDescription>{event} alarm</eventDescription>
    <channelName>xinjiekou</channelName>
    {extra}
</EventNotificationAlert>
"""


def _alert(
    event: str = "smokeDetection",
    state: str = "active",
    ns: str = "http://www.isapi.org/ver20/XMLSchema",
    extra: str = "",
) -> bytes:
    return ALERT.format(event=event, state=state, ns=ns, extra=extra).encode()


def test_an_isapi_alert_names_its_camera_by_mac_and_channel_then_ip() -> None:
    [message] = ISAPI().parse(_alert(), None, 'application/xml; charset="UTF-8"').messages
    assert message.kind == "video"
    assert message.refs == (
        "a6:63:9e:f8:01:09/1",
        "a6:63:9e:f8:01:09",
        "10.20.1.64/1",
        "10.20.1.64",
    )
    assert message.ts == datetime(2026, 12, 8, 0, 0, tzinfo=UTC)
    assert message.values["code"] == "smokeDetection"
    again = ISAPI().parse(_alert(ns="http://www.hikvision.com/ver20/XMLSchema")).messages[0]
    assert again.dedup == message.dedup  # the same alert sent again


def test_a_duration_alert_is_its_related_event_and_pictures_by_url_are_kept() -> None:
    extra = (
        "<DurationList><Duration><relationEvent>fielddetection</relationEvent></Duration>"
        "</DurationList><bkgUrl>http://10.20.1.64/pic/1.jpg</bkgUrl>"
    )
    [message] = ISAPI().parse(_alert("duration", extra=extra)).messages
    assert message.values["code"] == "fielddetection"
    assert message.values["pictures"] == ("http://10.20.1.64/pic/1.jpg",)


def test_a_heartbeat_is_a_status_and_an_inactive_alert_is_logged() -> None:
    [beat] = ISAPI().parse(_alert("heartBeat", "inactive")).messages
    assert beat.kind == "status"
    assert beat.status is None
    [end] = ISAPI().parse(_alert("smokeDetection", "inactive")).messages
    assert end.kind == "ack"


def test_a_multipart_alert_carries_its_pictures_by_digest() -> None:
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
    body = (
        b"--MIME_boundary\r\n"
        b'Content-Disposition: form-data; name="smokeDetection"\r\n'
        b"Content-Type: application/xml\r\n\r\n" + _alert() + b"\r\n"
        b"--MIME_boundary\r\n"
        b'Content-Disposition: form-data; name="smokeDetectionImage"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + jpeg + b"\r\n"
        b"--MIME_boundary--\r\n"
    )
    [message] = ISAPI().parse(body, None, "multipart/form-data; boundary=MIME_boundary").messages
    [picture] = message.values["pictures"]
    assert picture.startswith("isapi-picture:smokeDetectionImage;image/jpeg;1028B;sha256=")


def test_a_json_alert_from_newer_firmware_reads_the_same() -> None:
    alert = {
        "ipAddress": "10.20.1.64",
        "macAddress": "a6:63:9e:f8:01:09",
        "channelID": 1,
        "dateTime": "2026-12-08T08:00:00+08:00",
        "activePostCount": 1,
        "eventType": "smokeDetection",
        "eventState": "active",
        "eventDescription": "smoke",
    }
    [message] = ISAPI().parse(json.dumps(alert).encode(), None, "application/json").messages
    assert message.refs[0] == "a6:63:9e:f8:01:09/1"
    assert message.values["code"] == "smokeDetection"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<Other/>", "application/xml"),
        (b"<EventNotificationAlert><eventType>x</eventType>", "application/xml"),
        (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', "application/xml"),
        (b"<EventNotificationAlert><eventType>x</eventType></EventNotificationAlert>", ""),
        (b"--b\r\nContent-Type: image/jpeg\r\n\r\nxx\r\n--b--", "multipart/form-data; boundary=b"),
        (b"plain", "text/plain"),
    ],
)
def test_what_an_isapi_camera_sends_that_cannot_be_read_says_why(
    body: bytes, content_type: str
) -> None:
    with pytest.raises(PayloadError) as err:
        ISAPI().parse(body, None, content_type)
    assert err.value.reason == "bad_shape"


def test_a_citys_code_table_maps_codes_and_leaves_others_unmapped(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "340100.toml").write_text(
        '[hik-isc]\n192513 = { type = "smoke_fire", priority = 1, name = "烟雾检测" }\n'
        '930335 = "road_ponding"\n[isapi]\nsmokeDetection = "smoke_fire"\n',
        encoding="utf-8",
    )
    codes = EventCodes.load(tmp_path)
    smoke = codes.lookup("340100", "hik-isc", "192513")
    assert (smoke.event_type, smoke.priority, smoke.name) == (
        VideoEventType.SMOKE_FIRE,
        1,
        "烟雾检测",
    )
    assert codes.lookup("340100", "hik-isc", "930335").event_type is VideoEventType.ROAD_PONDING
    assert codes.lookup("340100", "isapi", "SMOKEDETECTION").event_type is VideoEventType.SMOKE_FIRE
    unknown = codes.lookup("340100", "hik-isc", "1")
    assert (unknown.event_type, unknown.priority) == (VideoEventType.UNMAPPED, 4)
    assert codes.lookup("110100", "hik-isc", "192513").event_type is VideoEventType.UNMAPPED
    # the demo city's table ships with the platform
    assert "320100" in codes.cities()


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("nanjing.toml", "", "6-digit code"),
        ("320100.toml", '[ctwingx]\n1 = "smoke_fire"\n', "not a platform's table"),
        ("320100.toml", '[hik-isc]\n1 = "flood"\n', "'flood' is not one of"),
        ("320100.toml", '[hik-isc]\n1 = { type = "smoke_fire", priority = 9 }\n', "priority"),
        ("320100.toml", '[hik-isc]\n1 = { kind = "smoke_fire" }\n', "give a video event type"),
        ("320100.toml", "[hik-isc\n", "320100.toml"),
    ],
)
def test_a_bad_code_table_says_where(tmp_path: Path, name: str, text: str, says: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EventCodeError, match=says):
        read_table(path)
