"""The IoTDA connector reads Huawei IoTDA's data-forwarding notifications as the platform
documents them: property reports per service at each service's time, status updates,
device messages and command outcomes; what it cannot read says why."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingest.errors import PayloadError
from ingest.push.connectors.iotda import IoTDA

HEADER = {
    "app_id": "6989a30bea954354b662920f369f4503",
    "device_id": "6aa570ac155456566827c784_862592051651472",
    "node_id": "862592051651472",
    "product_id": "6aa570ac155456566827c784",
    "gateway_id": "6aa570ac155456566827c784_862592051651472",
}


def _note(resource: str, event: str, body: object, **extra: object) -> bytes:
    return json.dumps(
        {
            "resource": resource,
            "event": event,
            "event_time": "20261207T080000Z",
            "notify_data": {"header": HEADER, "body": body},
            **extra,
        }
    ).encode()


def test_a_property_report_is_one_reading_message_per_service_at_its_time() -> None:
    body = _note(
        "device.property",
        "report",
        {
            "services": [
                {
                    "service_id": "Gas",
                    "properties": {"ch4": 3.5, "alarm": 0},
                    "event_time": "20261207T075900Z",
                },
                {"service_id": "Battery", "properties": {"battery_pct": 80}},
                {"service_id": "Broken"},
            ]
        },
    )
    parsed = IoTDA().parse(body)
    gas, battery = parsed.messages
    assert gas.refs == (HEADER["device_id"], HEADER["node_id"])
    assert gas.ts == datetime(2026, 12, 7, 7, 59, tzinfo=UTC)
    assert battery.ts == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert dict(gas.values) == {"ch4": 3.5, "alarm": 0}
    assert gas.dedup != battery.dedup
    [(part, why)] = parsed.bad
    assert part == {"service_id": "Broken"}
    assert why.reason == "bad_shape"


def test_status_updates_are_online_or_offline() -> None:
    iotda = IoTDA()
    [on] = iotda.parse(
        _note(
            "device.status", "update", {"status": "ONLINE", "last_online_time": "20261207T075800Z"}
        )
    ).messages
    [off] = iotda.parse(_note("device.status", "update", {"status": "ABNORMAL"})).messages
    assert (on.kind, on.status, on.ts) == (
        "status",
        "online",
        datetime(2026, 12, 7, 7, 58, tzinfo=UTC),
    )
    assert (off.status, off.ts) == ("offline", datetime(2026, 12, 7, 8, 0, tzinfo=UTC))


def test_messages_and_command_outcomes_are_logged_not_stored() -> None:
    iotda = IoTDA()
    [message] = iotda.parse(_note("device.message", "report", {"content": "hello"})).messages
    [command] = iotda.parse(
        _note("device.command", "updateStatus", {"command_id": "c1", "status": "SUCCESSFUL"})
    ).messages
    assert (message.kind, command.kind) == ("ack", "ack")
    assert "SUCCESSFUL" in command.detail


def test_the_same_notification_twice_has_the_same_dedup_key() -> None:
    body = _note(
        "device.property",
        "report",
        {
            "services": [
                {"service_id": "Gas", "properties": {"ch4": 1}, "event_time": "20261207T075900Z"}
            ]
        },
    )
    assert IoTDA().parse(body).messages[0].dedup == IoTDA().parse(body).messages[0].dedup


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "bad_json"),
        (b"[]", "bad_shape"),
        (json.dumps({"resource": "device.property", "event": "report"}).encode(), "bad_shape"),
        (_note("device.property", "report", {"services": []}), "bad_shape"),
        (_note("device.lifecycle", "create", {}), "unknown_message_type"),
        (
            _note("device.property", "report", {"services": []}, event_time="2026-13-45"),
            "bad_timestamp",
        ),
    ],
)
def test_what_cannot_be_read_says_why(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as err:
        IoTDA().parse(body)
    assert err.value.reason == reason


def test_a_notification_without_a_device_is_refused() -> None:
    body = json.dumps(
        {
            "resource": "device.property",
            "event": "report",
            "notify_data": {"header": {"device_id": ""}, "body": {"services": []}},
        }
    ).encode()
    with pytest.raises(PayloadError, match="names no device"):
        IoTDA().parse(body)
