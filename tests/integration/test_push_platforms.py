"""`cityops push serve` speaking CTWing's own subscription push and Huawei IoTDA's data
forwarding on the real Kafka and PostgreSQL: their messages find their devices by the
platform's id or IMEI, readings and status changes are in Kafka before the 200, a
retried message is produced once, and what is wrong is dead-lettered with its reason or
refused without a 5xx."""

from __future__ import annotations

import base64
import json
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from cityops.settings import Settings
from ingest.deadletter import DeadLetter
from ingest.push.connectors.onenet import signature_of
from lifeline import codec, topics
from lifeline.devices import gas_well
from lifeline.records import DeviceStatus
from store.devices import upsert_devices
from store.push_sources import create_source, parse_networks
from tests.integration.api_support import random_city
from tests.integration.helpers import during, push_service

pytestmark = pytest.mark.integration

PROFILE_ID = "40edca19b0124480864366de4621de99"
FRAME_IMEI = "862592051651472"
OTHER_IMEI = "490154203237518"
IOTDA_ID = "6aa570ac155456566827c784_hw-node-1"


@dataclass
class Platform:
    url: str
    city: str
    ca: ssl.SSLContext
    token: str
    fenced_token: str
    iotda_token: str
    onenet_token: str

    def post(
        self, body: object, source: str = "ctwing", token: str | None = None
    ) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(
            f"{self.url}/v1/ingest/{self.city}/ctwing/{source}",
            params={"token": self.token if token is None else token},
            content=content,
            headers={"content-type": "application/json"},
            verify=self.ca,
            timeout=30,
        )


@pytest.fixture(scope="module")
def platform(
    db_dsn: str, live_stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    city = random_city()
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        made = create_source(conn, city, "ctwing", platform="ctwing")
        fenced = create_source(
            conn, city, "fenced", platform="ctwing", networks=parse_networks(["203.0.113.0/24"])
        )
        create_source(conn, city, "own", platform="cityops")
        iotda = create_source(conn, city, "huawei", platform="iotda")
        onenet = create_source(conn, city, "cmcc", platform="onenet")
        devices = [
            gas_well(city, "nb-1", transport="http", source="ctwing", platform_id=PROFILE_ID),
            gas_well(
                city,
                "nb-2",
                transport="http",
                source="ctwing",
                vendor="nb-gaswell",
                imei=FRAME_IMEI,
            ),
            gas_well(
                city,
                "nb-3",
                transport="http",
                source="own",
                platform_id="other-1",
                imei=OTHER_IMEI,
            ),
            gas_well(city, "hw-1", transport="http", source="huawei", platform_id=IOTDA_ID),
            gas_well(city, "om-1", transport="http", source="cmcc", platform_id="gas-0001"),
        ]
        upsert_devices(conn, devices, {d.device_id: (f"{city}.{d.device_id}", "") for d in devices})
    assert made.url_token is not None
    assert fenced.url_token is not None
    assert iotda.url_token is not None
    logs: Path = tmp_path_factory.mktemp("push-platforms")
    with push_service(db_dsn, live_stack, [city], logs) as (url, ca):
        yield Platform(
            url,
            city,
            ca,
            made.url_token,
            fenced.url_token,
            iotda.url_token,
            onenet.source.platform_secret or "",
        )


def _ms(minutes_ago: float) -> int:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return int(at.timestamp() * 1000)


def _message(kind: str, **fields: object) -> dict[str, object]:
    return {
        "upPacketSN": -1,
        "upDataSN": -1,
        "topic": "v1/up/ad",
        "timestamp": _ms(1),
        "tenantId": "2000033629",
        "serviceId": "",
        "protocol": "lwm2m",
        "productId": "15114816",
        "deviceType": "",
        "deviceId": PROFILE_ID,
        "assocAssetId": "",
        "IMSI": "undefined",
        "IMEI": "",
        "messageType": kind,
        **fields,
    }


def _frame(ch4_dlel: int) -> str:
    return base64.b64encode(struct.pack(">BBHhHH", 1, 0, ch4_dlel, 2150, 3600, 7)).decode()


def _readings_of(city: str) -> Callable[[bytes], bool]:
    return lambda v: codec.decode(v)[0].city == city


def test_a_profile_report_is_in_kafka_before_the_answer(platform: Platform) -> None:
    stamp = _ms(2)
    body = _message(
        "dataReport",
        timestamp=stamp,
        payload={"serviceId": "gas", "serviceData": {"ch4": 12.5, "CSQ": 17}},
    )
    answers: list[httpx.Response] = []
    got = during(
        topics.READINGS.name,
        lambda: answers.append(platform.post(body)),
        _readings_of(platform.city),
        1,
    )
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json()["readings"] == 1
    [reading] = [codec.decode(v)[0] for v in got]
    assert (reading.device_id, reading.metric, reading.value) == ("nb-1", "ch4", 12.5)
    assert reading.ts == datetime.fromtimestamp(stamp / 1000, UTC)


def test_a_transparent_frame_is_unpacked_by_the_devices_vendor_found_by_imei(
    platform: Platform,
) -> None:
    body = _message(
        "dataReport", deviceId="a1b2c3", IMEI=FRAME_IMEI, payload={"APPdata": _frame(253)}
    )
    answers: list[httpx.Response] = []
    got = during(
        topics.READINGS.name,
        lambda: answers.append(platform.post(body)),
        _readings_of(platform.city),
        1,
    )
    assert answers[0].status_code == 200, answers[0].text
    [reading] = [codec.decode(v)[0] for v in got]
    assert (reading.device_id, reading.metric) == ("nb-2", "ch4")
    assert reading.value == pytest.approx(25.3)


def test_a_message_sent_three_times_is_produced_once(platform: Platform) -> None:
    repeated = _message(
        "dataReport", timestamp=_ms(5), upPacketSN=77, payload={"serviceData": {"ch4": 4.25}}
    )
    marker = _message("dataReport", timestamp=_ms(4), payload={"serviceData": {"ch4": 9.75}})
    answers: list[httpx.Response] = []

    def send() -> None:
        answers.extend(platform.post(repeated) for _ in range(3))
        answers.append(platform.post(marker))

    got = during(topics.READINGS.name, send, _readings_of(platform.city), 2)
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    assert [a.json()["duplicates"] for a in answers] == [0, 1, 1, 0]
    time.sleep(1.0)
    values = sorted(codec.decode(v)[0].value for v in got)
    assert values == [4.25, 9.75]


def test_a_union_gives_each_part_and_online_offline_become_status(platform: Platform) -> None:
    union = _message(
        "dataReportTupUnion",
        payload=[
            {"serviceId": "gas", "serviceData": {"ch4": 1.5}, "timestamp": _ms(8)},
            {"serviceId": "gas", "serviceData": {"ch4": 2.5}, "timestamp": _ms(7)},
        ],
    )
    got = during(topics.READINGS.name, lambda: platform.post(union), _readings_of(platform.city), 2)
    assert sorted(codec.decode(v)[0].value for v in got) == [1.5, 2.5]
    offline = _message("deviceOnlineOfflineReport", eventType=0, iccid="undefined")
    statuses = during(
        topics.STATUS.name,
        lambda: platform.post(offline),
        lambda v: DeviceStatus.from_json(v).city == platform.city,
        1,
    )
    status = DeviceStatus.from_json(statuses[0])
    assert (status.device_id, status.status) == ("nb-1", "offline")


def test_an_event_gives_its_readings_and_battery_and_a_receipt_stores_nothing(
    platform: Platform,
) -> None:
    event = _message(
        "eventReport",
        eventType=2,
        serviceId=1002,
        eventContent={"ch4": 31.0, "battery_value": 12},
    )
    answers: list[httpx.Response] = []
    got = during(
        topics.STATUS.name,
        lambda: answers.append(platform.post(event)),
        lambda v: DeviceStatus.from_json(v).city == platform.city,
        1,
    )
    assert answers[0].json()["readings"] == 1
    assert DeviceStatus.from_json(got[0]).battery_pct == 12
    receipt = _message(
        "commandResponse", taskId=3, result={"resultCode": "DELIVERED", "resultDetail": ""}
    )
    answer = platform.post(receipt)
    assert answer.status_code == 200
    assert answer.json()["readings"] == answer.json()["statuses"] == 0


def test_unknown_devices_and_bad_bodies_are_dead_lettered_with_their_reason(
    platform: Platform,
) -> None:
    stranger = _message("dataReport", deviceId="no-such-device", payload={"ch4": 1})
    wrong_source = _message("dataReport", deviceId="x9", IMEI=OTHER_IMEI, payload={"ch4": 1})
    no_metric = _message("dataReport", payload={"serviceData": {"CSQ": 17}})
    bodies: list[bytes] = [
        json.dumps(stranger).encode(),
        json.dumps(wrong_source).encode(),
        json.dumps(no_metric).encode(),
        b"{this is not json",
    ]
    answers: list[httpx.Response] = []
    topic = f"push/{platform.city}/ctwing"
    got = during(
        topics.DEADLETTER.name,
        lambda: answers.extend(platform.post(b) for b in bodies),
        lambda v: DeadLetter.from_json(v).mqtt_topic == topic,
        4,
    )
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    assert all(a.json()["dead_lettered"] == 1 for a in answers)
    letters = {DeadLetter.from_json(v).reason: DeadLetter.from_json(v).detail for v in got}
    assert set(letters) == {"unknown_device", "not_this_source", "no_metric", "bad_json"}
    assert "no-such-device" in letters["unknown_device"]
    assert "CSQ" in letters["no_metric"]


def test_a_wrong_token_another_network_or_platform_is_refused(platform: Platform) -> None:
    body = _message("dataReport", payload={"ch4": 1})
    missing = platform.post(body, token="")
    wrong = platform.post(body, token=platform.token[:-2] + "xx")
    fenced = platform.post(body, source="fenced", token=platform.fenced_token)
    other = platform.post(body, source="own")
    unknown = httpx.post(
        f"{platform.url}/v1/ingest/{platform.city}/nosuch/ctwing",
        content=b"{}",
        verify=platform.ca,
        timeout=30,
    )
    assert (missing.status_code, missing.json()["error"]) == (401, "bad_token")
    assert (wrong.status_code, wrong.json()["error"]) == (401, "bad_token")
    assert (fenced.status_code, fenced.json()["error"]) == (403, "network_refused")
    assert (other.status_code, other.json()["error"]) == (404, "unknown_source")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_platform")


def test_an_iotda_property_report_and_status_update(platform: Platform) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    header = {"device_id": IOTDA_ID, "node_id": "hw-node-1", "product_id": "6aa570ac"}
    report = {
        "resource": "device.property",
        "event": "report",
        "event_time": at.strftime("%Y%m%dT%H%M%SZ"),
        "notify_data": {
            "header": header,
            "body": {
                "services": [
                    {
                        "service_id": "Gas",
                        "properties": {"ch4": 7.25, "signal": -80},
                        "event_time": at.strftime("%Y%m%dT%H%M%SZ"),
                    }
                ]
            },
        },
    }
    url = f"{platform.url}/v1/ingest/{platform.city}/iotda/huawei"

    def post(body: object) -> httpx.Response:
        return httpx.post(
            url,
            params={"token": platform.iotda_token},
            content=json.dumps(body).encode(),
            verify=platform.ca,
            timeout=30,
        )

    answers: list[httpx.Response] = []
    got = during(
        topics.READINGS.name,
        lambda: answers.extend([post(report), post(report)]),
        _readings_of(platform.city),
        1,
    )
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["duplicates"] for a in answers] == [0, 1]
    [reading] = [codec.decode(v)[0] for v in got]
    assert (reading.device_id, reading.value, reading.ts) == ("hw-1", 7.25, at)
    offline = {
        "resource": "device.status",
        "event": "update",
        "event_time": at.strftime("%Y%m%dT%H%M%SZ"),
        "notify_data": {"header": header, "body": {"status": "OFFLINE"}},
    }
    statuses = during(
        topics.STATUS.name,
        lambda: post(offline),
        lambda v: DeviceStatus.from_json(v).city == platform.city,
        1,
    )
    status = DeviceStatus.from_json(statuses[0])
    assert (status.device_id, status.status) == ("hw-1", "offline")
    wrong = httpx.post(url, params={"token": platform.token}, content=b"{}", verify=platform.ca)
    assert (wrong.status_code, wrong.json()["error"]) == (401, "bad_token")


def test_onenet_checks_the_url_then_its_signed_pushes_are_in_kafka(platform: Platform) -> None:
    url = f"{platform.url}/v1/ingest/{platform.city}/onenet/cmcc"
    good = signature_of(platform.onenet_token, "n0nce123", "check-me")
    check = httpx.get(
        url, params={"msg": "check-me", "nonce": "n0nce123", "signature": good}, verify=platform.ca
    )
    assert (check.status_code, check.text) == (200, "check-me")
    assert check.headers["content-type"].startswith("text/plain")
    refused = httpx.get(
        url, params={"msg": "check-me", "nonce": "n0nce124", "signature": good}, verify=platform.ca
    )
    assert refused.status_code == 401
    at_ms = _ms(6)
    msg = json.dumps(
        {
            "productId": "00001",
            "deviceName": "gas-0001",
            "messageType": "notify",
            "notifyType": "property",
            "data": {"id": "1", "params": {"ch4": {"value": 5.5, "time": at_ms}}},
        }
    )
    body = json.dumps(
        {
            "msg": msg,
            "nonce": "abcdefgh",
            "signature": signature_of(platform.onenet_token, "abcdefgh", msg),
            "time": at_ms,
            "id": "push-1",
        }
    ).encode()
    answers: list[httpx.Response] = []
    got = during(
        topics.READINGS.name,
        lambda: answers.append(httpx.post(url, content=body, verify=platform.ca)),
        _readings_of(platform.city),
        1,
    )
    assert answers[0].status_code == 200, answers[0].text
    [reading] = [codec.decode(v)[0] for v in got]
    assert (reading.device_id, reading.value) == ("om-1", 5.5)
    forged = body.replace(b"5.5", b"9.5")
    assert httpx.post(url, content=forged, verify=platform.ca).status_code == 401
