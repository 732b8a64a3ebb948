"""The CTWing connector reads every message type CTWing pushes, in the shapes its
subscription push documents, with their placeholders; what it cannot read says why."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingest.errors import PayloadError
from ingest.push.connectors.ctwing import CTWing
from ingest.push.platforms import Recent
from lifeline.devices import luhn_valid, with_check_digit

T_MS = 1_765_000_000_123
T = datetime.fromtimestamp(T_MS / 1000, UTC)


def _msg(**fields: object) -> bytes:
    base: dict[str, object] = {
        "upPacketSN": -1,
        "upDataSN": -1,
        "topic": "v1/up/ad",
        "timestamp": T_MS,
        "tenantId": "2000033629",
        "serviceId": "",
        "protocol": "lwm2m",
        "productId": "15114816",
        "deviceType": "",
        "deviceId": "40edca19b0124480864366de4621de99",
        "assocAssetId": "",
        "IMSI": "undefined",
        "IMEI": "862592051651472",
    }
    return json.dumps({**base, **fields}).encode()


def test_a_profile_report_gives_its_service_data_at_the_platform_time() -> None:
    body = _msg(
        messageType="dataReport",
        payload={"serviceId": "notification", "serviceData": {"ch4": 12.5, "CSQ": 5}},
    )
    [m] = CTWing().parse(body).messages
    assert m.kind == "reading"
    assert m.refs == ("40edca19b0124480864366de4621de99", "862592051651472")
    assert m.ts == T
    assert dict(m.values) == {"ch4": 12.5, "CSQ": 5}
    assert m.dedup is not None
    assert str(T_MS) in m.dedup


def test_a_transparent_report_keeps_its_frame_for_the_vendor_mapping() -> None:
    body = _msg(messageType="dataReport", payload={"APPdata": "AQAAfQk2DhAAAQ=="}, IMEI="")
    [m] = CTWing().parse(body).messages
    assert m.kind == "reading"
    assert dict(m.values) == {}
    assert m.raw["payload"] == {"APPdata": "AQAAfQk2DhAAAQ=="}
    assert m.refs == ("40edca19b0124480864366de4621de99",)  # IMEI "" is no IMEI


def test_placeholders_are_no_ids_and_a_message_without_any_id_is_refused() -> None:
    body = _msg(messageType="dataReport", payload={"ch4": 1}, IMEI="undefined", deviceId="")
    with pytest.raises(PayloadError) as err:
        CTWing().parse(body)
    assert err.value.reason == "bad_shape"
    assert "deviceId" in str(err.value)


def test_the_imei_inside_service_data_also_names_the_device() -> None:
    body = _msg(
        messageType="dataReport",
        IMEI="",
        payload={"serviceId": "n", "serviceData": {"IMEI": "860374051096202", "ch4": 3}},
    )
    [m] = CTWing().parse(body).messages
    assert m.refs == ("40edca19b0124480864366de4621de99", "860374051096202")


def test_a_union_is_one_reading_message_per_part_at_each_parts_time() -> None:
    body = _msg(
        messageType="dataReportTupUnion",
        payload=[
            {"serviceId": "n", "serviceData": {"ch4": 1.0}, "timestamp": T_MS - 60_000},
            {"serviceId": "n", "serviceData": {"ch4": 2.0}},
            "not a report",
        ],
    )
    parsed = CTWing().parse(body)
    assert [dict(m.values) for m in parsed.messages] == [{"ch4": 1.0}, {"ch4": 2.0}]
    assert [m.ts for m in parsed.messages] == [
        datetime.fromtimestamp((T_MS - 60_000) / 1000, UTC),
        T,
    ]
    assert len({m.dedup for m in parsed.messages}) == 2
    [(part, why)] = parsed.bad
    assert part == "not a report"
    assert why.reason == "bad_shape"


def test_online_offline_and_events_and_command_receipts() -> None:
    ctwing = CTWing()
    [on] = ctwing.parse(_msg(messageType="deviceOnlineOfflineReport", eventType=1)).messages
    [off] = ctwing.parse(_msg(messageType="deviceOnlineOfflineReport", eventType=0)).messages
    assert (on.kind, on.status, off.status) == ("status", "online", "offline")
    [event] = ctwing.parse(
        _msg(
            messageType="eventReport",
            eventType=3,
            serviceId=1002,
            eventContent={"battery_value": 15, "ch4": 30.0},
        )
    ).messages
    assert event.kind == "event"
    assert "fault" in event.detail
    assert dict(event.values) == {"battery_value": 15, "ch4": 30.0}
    [ack] = ctwing.parse(
        _msg(
            messageType="commandResponse",
            taskId=7,
            result={"resultCode": "DELIVERED", "resultDetail": ""},
        )
    ).messages
    assert ack.kind == "ack"
    assert "DELIVERED" in ack.detail


def test_retries_repeat_the_dedup_key_and_a_new_packet_does_not() -> None:
    ctwing = CTWing()
    first = ctwing.parse(_msg(messageType="dataReport", payload={"ch4": 1}, upPacketSN=41))
    again = ctwing.parse(_msg(messageType="dataReport", payload={"ch4": 1}, upPacketSN=41))
    other = ctwing.parse(_msg(messageType="dataReport", payload={"ch4": 1}, upPacketSN=42))
    assert first.messages[0].dedup == again.messages[0].dedup != other.messages[0].dedup


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"[1, 2]", "bad_shape"),
        (_msg(messageType="somethingElse"), "unknown_message_type"),
        (_msg(messageType="dataReport", payload="text"), "bad_shape"),
        (_msg(messageType="dataReport", timestamp="yesterday", payload={}), "bad_timestamp"),
        (_msg(messageType="deviceOnlineOfflineReport", eventType=5), "bad_shape"),
        (_msg(messageType="eventReport", eventType=2), "bad_shape"),
        (_msg(messageType="dataReportTupUnion", payload={}), "bad_shape"),
    ],
)
def test_what_cannot_be_read_says_why(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as err:
        CTWing().parse(body)
    assert err.value.reason == reason


def test_recent_messages_are_known_within_the_window_and_forgotten_after() -> None:
    recent = Recent(window_s=60, most=3)
    recent.add(["a", "b"], now=0)
    assert recent.has("a", 30)
    assert not recent.has("c", 30)
    assert not recent.has("a", 61)
    recent.add(["c", "d", "e"], now=10)
    assert not recent.has("a", 11)  # the oldest go first past the size limit
    assert recent.has("e", 11)
    recent.add([], now=100)
    assert not recent.seen


def test_an_imei_checks_its_last_digit() -> None:
    assert luhn_valid("490154203237518")
    assert not luhn_valid("490154203237519")
    assert with_check_digit("86259205165147") == "862592051651472"
