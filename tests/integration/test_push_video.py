"""`cityops push serve` speaking Hikvision iSecure Center's event subscription and a
camera's ISAPI alarm-server push on the real Kafka and PostgreSQL: an event finds its
camera by index code or MAC address, is a video event of the type the city's code table
gives (``unmapped``, with its code, where the table has none) in Kafka before the 200,
a retried event is produced once, a heartbeat is the camera's status, and what is wrong
is dead-lettered with its reason."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg
import pytest

from cityops.settings import Settings
from ingest.deadletter import DeadLetter
from lifeline import topics
from lifeline.devices import Device, camera, gas_well
from lifeline.records import DeviceStatus, VideoEvent
from lifeline.vocabulary import VideoEventType
from store.devices import upsert_devices
from store.push_sources import create_source
from tests.integration.api_support import random_city
from tests.integration.helpers import during, push_service

pytestmark = pytest.mark.integration

CST = timezone(timedelta(hours=8))
INDEX = "4c777ca96a1c4eb997ab89caf34f3044"
MAC = "a6:63:9e:f8:01:09"


@dataclass
class Video:
    url: str
    city: str
    ca: ssl.SSLContext
    tokens: dict[str, str]

    def post(
        self, platform: str, source: str, body: bytes, content_type: str = "application/json"
    ) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/ingest/{self.city}/{platform}/{source}",
            params={"token": self.tokens[source]},
            content=body,
            headers={"content-type": content_type},
            verify=self.ca,
            timeout=30,
        )

    def camera_id(self, serial: int) -> str:
        return f"{self.city}0008132{serial:07d}"


def _camera(city: str, serial: int, source: str, platform_id: str) -> Device:
    return camera(city, serial, transport="http", source=source, platform_id=platform_id)


@pytest.fixture(scope="module")
def video(
    db_dsn: str, live_stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Video]:
    city = random_city()
    vendors: Path = tmp_path_factory.mktemp("vendors")
    (vendors / "events").mkdir()
    (vendors / "events" / f"{city}.toml").write_text(
        '[hik-isc]\n192513 = { type = "smoke_fire", priority = 1, name = "烟雾检测" }\n'
        '[isapi]\nsmokeDetection = { type = "smoke_fire", priority = 2 }\n',
        encoding="utf-8",
    )
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        isc = create_source(conn, city, "isc", platform="hik-isc")
        cams = create_source(conn, city, "cams", platform="isapi")
        devices = [
            _camera(city, 1, "isc", INDEX),
            _camera(city, 2, "cams", f"{MAC}/1"),
            gas_well(city, "gw-1", transport="http", source="isc", platform_id="sensor-1"),
        ]
        upsert_devices(conn, devices, {d.device_id: (f"{city}.{d.device_id}", "") for d in devices})
    assert isc.url_token is not None
    assert cams.url_token is not None
    logs: Path = tmp_path_factory.mktemp("push-video")
    with push_service(db_dsn, live_stack, [city], logs, vendor_dir=vendors) as (url, ca):
        yield Video(url, city, ca, {"isc": isc.url_token, "cams": cams.url_token})


def _notify(*events: dict[str, object]) -> bytes:
    sent = datetime.now(CST).isoformat(timespec="milliseconds")
    return json.dumps(
        {
            "method": "OnEventNotify",
            "params": {"ability": "event_vss", "sendTime": sent, "events": list(events)},
        }
    ).encode()


def _event(event_id: str, code: int, src: str = INDEX, minutes_ago: float = 1) -> dict[str, object]:
    at = datetime.now(CST) - timedelta(minutes=minutes_ago)
    return {
        "eventId": event_id,
        "srcIndex": src,
        "srcType": "camera",
        "eventType": code,
        "status": 0,
        "eventLvl": 0,
        "happenTime": at.isoformat(timespec="milliseconds"),
        "data": {"smokeDetection": [{"imageUrl": f"http://isc.example/pic/{event_id}.jpg"}]},
    }


def _videos_of(city: str) -> Callable[[bytes], bool]:
    return lambda v: VideoEvent.from_json(v).city == city


def test_an_event_is_a_video_event_of_its_camera_once_however_often_it_is_sent(
    video: Video,
) -> None:
    body = _notify(_event("E-1", 192513))
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.extend(video.post("hik-isc", "isc", body) for _ in range(3))
        answers.append(video.post("hik-isc", "isc", _notify(_event("E-2", 930999))))

    got = during(topics.VIDEO.name, send, _videos_of(video.city), 2)
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    assert [a.json()["duplicates"] for a in answers] == [0, 1, 1, 0]
    smoke, other = sorted((VideoEvent.from_json(v) for v in got), key=lambda e: e.code or "")
    assert smoke.camera_id == video.camera_id(1)
    assert (smoke.event_type, smoke.priority, smoke.code) == (
        VideoEventType.SMOKE_FIRE,
        1,
        "192513",
    )
    assert smoke.pictures == ("http://isc.example/pic/E-1.jpg",)
    assert smoke.snapshot_url == "http://isc.example/pic/E-1.jpg"
    assert "烟雾检测" in (smoke.description or "")
    # a code the city's table does not name: kept, with its code, for operators to see
    assert (other.event_type, other.code, other.priority) == (VideoEventType.UNMAPPED, "930999", 4)
    assert "930999" in (other.description or "")


def test_an_unknown_camera_and_a_sensor_are_dead_lettered_with_the_reason(video: Video) -> None:
    body = _notify(_event("E-3", 192513, src="no-such-camera"), _event("E-4", 192513, "sensor-1"))
    answers: list[httpx.Response] = []
    got = during(
        topics.DEADLETTER.name,
        lambda: answers.append(video.post("hik-isc", "isc", body)),
        lambda v: DeadLetter.from_json(v).mqtt_topic == f"push/{video.city}/isc",
        2,
    )
    assert answers[0].status_code == 200
    assert answers[0].json()["dead_lettered"] == 2
    letters = {DeadLetter.from_json(v).reason: DeadLetter.from_json(v).detail for v in got}
    assert set(letters) == {"unknown_device", "not_a_camera"}
    assert "no-such-camera" in letters["unknown_device"]


ALERT = """<?xml version="1.0" encoding="UTF-8"?>
<EventNotificationAlert version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema">
<ipAddress>10.20.1.64</ipAddress><portNo>80</portNo><protocol>HTTP</protocol>
<macAddress>{mac}</macAddress><channelID>1</channelID><dateTime>{at}</dateTime>
<activePostCount>1</activePostCount><eventType>{event}</eventType>
<eventState>active</eventState><eventDescription>{event} alarm</eventDescription>
</EventNotificationAlert>"""


def _alert(event: str) -> bytes:
    at = (datetime.now(CST) - timedelta(seconds=30)).isoformat(timespec="seconds")
    return ALERT.format(mac=MAC.upper(), at=at, event=event).encode()


def test_an_isapi_alert_with_its_picture_and_a_heartbeat(video: Video) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 512
    body = (
        b'--boundary\r\nContent-Disposition: form-data; name="smokeDetection"\r\n'
        b"Content-Type: application/xml\r\n\r\n" + _alert("smokeDetection") + b"\r\n"
        b'--boundary\r\nContent-Disposition: form-data; name="smokeDetectionImage"; '
        b'filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n' + jpeg + b"\r\n--boundary--\r\n"
    )
    answers: list[httpx.Response] = []
    got = during(
        topics.VIDEO.name,
        lambda: answers.append(
            video.post("isapi", "cams", body, "multipart/form-data; boundary=boundary")
        ),
        _videos_of(video.city),
        1,
    )
    assert answers[0].status_code == 200, answers[0].text
    [event] = [VideoEvent.from_json(v) for v in got]
    assert (event.camera_id, event.event_type, event.priority) == (
        video.camera_id(2),
        VideoEventType.SMOKE_FIRE,
        2,
    )
    [picture] = event.pictures
    assert picture.startswith("isapi-picture:smokeDetectionImage;image/jpeg;516B;sha256=")
    beats = during(
        topics.STATUS.name,
        lambda: video.post("isapi", "cams", _alert("heartBeat"), "application/xml"),
        lambda v: DeviceStatus.from_json(v).city == video.city,
        1,
    )
    status = DeviceStatus.from_json(beats[0])
    assert (status.device_id, status.family, status.status) == (
        video.camera_id(2),
        "cameras",
        "heartbeat",
    )
    assert status.ts < datetime.now(UTC)


def test_a_wrong_token_or_another_platforms_route_is_refused(video: Video) -> None:
    refused = httpx.post(
        f"{video.url}/v1/ingest/{video.city}/hik-isc/isc",
        params={"token": "x" * 43},
        content=_notify(_event("E-9", 192513)),
        verify=video.ca,
        timeout=30,
    )
    assert refused.status_code == 401
    assert refused.json()["error"] == "bad_token"
    crossed = video.post("isapi", "isc", _alert("smokeDetection"), "application/xml")
    assert crossed.status_code == 404
