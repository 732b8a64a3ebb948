"""The decoder: every payload shape, every bad-input class, never an unexpected error."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.adapters import load_vendors
from ingest.decode import Decoder, Limits, parse_topic
from ingest.errors import PayloadError
from lifeline.devices import Device
from lifeline.records import DeviceStatus, Reading, VideoEvent
from lifeline.registry import Registry

NOW = datetime(2026, 7, 1, 2, 30, tzinfo=UTC)
CITY = "320100"
CAMERA = "32010000081320000001"


def device(
    dev_id: str,
    kind: str,
    metrics: dict[str, str],
    vendor: str | None = None,
    family: str = "sensors",
) -> Device:
    return Device(
        city=CITY,
        device_id=dev_id,
        family=family,
        kind=kind,  # type: ignore[arg-type]
        metrics=metrics,
        vendor=vendor,
        owner_dept="gas group",
        lon=118.8,
        lat=32.0,
    )


REGISTRY = Registry(
    [
        device("gw-1", "gas_well", {"ch4": "%LEL"}),
        device(
            "tn-1", "tunnel_env", {"o2": "%vol", "h2s": "ppm", "ch4": "%LEL", "temperature": "°C"}
        ),
        device("acme-7", "gas_well", {"ch4": "%LEL", "temperature": "°C"}, vendor="acme-lora"),
        device("hy-3", "drain_level", {"level": "m"}, vendor="hydro-flat"),
        device(CAMERA, "camera", {}, family="cameras"),
    ]
)
DECODE = Decoder(REGISTRY, load_vendors())
UP = f"cityops/{CITY}/sensors/gw-1/up"


def readings(out: list) -> list[Reading]:  # type: ignore[type-arg]
    assert all(o.topic == "cityops.readings" for o in out)
    return [Reading.from_json(o.value) for o in out]


def canonical(**change: object) -> bytes:
    body: dict[str, object] = {
        "v": 1,
        "city": CITY,
        "device_id": "gw-1",
        "ts": "2026-07-01T02:29:00Z",
        "metric": "ch4",
        "value": 12.5,
        "unit": "%LEL",
    }
    body.update(change)
    return json.dumps(body).encode()


def test_canonical_reading_is_keyed_by_device() -> None:
    out = DECODE(UP, canonical(), NOW)
    assert [o.key for o in out] == [b"gw-1"]
    [r] = readings(out)
    assert (r.metric, r.value, r.unit, r.ts) == ("ch4", 12.5, "%LEL", NOW - timedelta(minutes=1))


def test_canonical_reading_in_another_unit_is_converted() -> None:
    [r] = readings(DECODE(UP, canonical(value=1.0, unit="%vol"), NOW))
    assert (r.value, r.unit) == (20.0, "%LEL")


def test_compact_batch_of_several_metrics_and_timestamps() -> None:
    payload = {
        "units": {"temperature": "°F"},
        "readings": [
            {"ts": "2026-07-01T02:28:00Z", "values": {"o2": 20.9, "h2s": 0.0}},
            {
                "ts": "2026-07-01T02:29:00Z",
                "values": {"o2": 20.8, "temperature": 212.0, "ch4": [0.5, "%vol"]},
            },
        ],
    }
    out = readings(DECODE(f"cityops/{CITY}/sensors/tn-1/up", json.dumps(payload).encode(), NOW))
    got = {(r.ts.minute, r.metric): (r.value, r.unit) for r in out}
    assert got == {
        (28, "o2"): (20.9, "%vol"),
        (28, "h2s"): (0.0, "ppm"),
        (29, "o2"): (20.8, "%vol"),
        (29, "temperature"): (100.0, "°C"),
        (29, "ch4"): (10.0, "%LEL"),
    }


def test_vendor_nested_form_is_mapped_and_converted() -> None:
    payload = {
        "meta": {"sn": "acme-7", "fw": "2.1"},
        "payload": {
            "frames": [
                {
                    "collectTime": int((NOW - timedelta(minutes=2)).timestamp() * 1000),
                    "sensors": {"methane": {"val": 1.5, "unit": "%VOL"}, "temp": 21.5},
                },
            ]
        },
    }
    out = readings(DECODE(f"cityops/{CITY}/sensors/acme-7/up", json.dumps(payload).encode(), NOW))
    assert {(r.metric, r.value, r.unit) for r in out} == {
        ("ch4", 30.0, "%LEL"),
        ("temperature", 21.5, "°C"),
    }


def test_vendor_local_time_and_centimetres() -> None:
    payload = {"DevNo": "hy-3", "Time": "2026-07-01 10:25:00", "WaterLevel": 250}
    [r] = readings(DECODE(f"cityops/{CITY}/sensors/hy-3/up", json.dumps(payload).encode(), NOW))
    assert (r.value, r.unit, r.ts) == (2.5, "m", NOW - timedelta(minutes=5))


def test_video_event_in_gb28181_form_with_gcj02_position() -> None:
    alarm = {
        "DeviceID": CAMERA,
        "AlarmPriority": 2,
        "AlarmMethod": 5,
        "AlarmTime": "2026-07-01T10:29:30",
        "AlarmType": 2,
        "EventType": "road_ponding",
        "Longitude": 118.80,
        "Latitude": 32.05,
        "CRS": "GCJ-02",
        "Confidence": 0.93,
    }
    [out] = DECODE(f"cityops/{CITY}/cameras/{CAMERA}/event", json.dumps(alarm).encode(), NOW)
    assert out.topic == "cityops.video"
    event = VideoEvent.from_json(out.value)
    assert event.event_type == "road_ponding"
    assert event.crs == "EPSG:4326"
    assert 0.003 < 118.80 - event.lon < 0.008  # GCJ-02 → WGS84 moves a few hundred metres
    assert event.ts == NOW - timedelta(seconds=30)


def test_status_and_last_will_go_to_the_status_topic() -> None:
    [hb] = DECODE(
        f"cityops/{CITY}/sensors/gw-1/status", b'{"status": "heartbeat", "battery_pct": 81}', NOW
    )
    assert hb.topic == "cityops.status"
    assert DeviceStatus.from_json(hb.value).battery_pct == 81
    [lwt] = DECODE(f"cityops/{CITY}/sensors/gw-1/status", b"offline", NOW)
    assert DeviceStatus.from_json(lwt.value).status == "offline"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (UP, b"{not json", "bad_json"),
        (UP, b"[" * 60_000, "bad_json"),
        (UP, canonical(value="NaN").replace(b'"NaN"', b"NaN"), "bad_json"),
        # A number past the double range is not one JSON parsers agree on: refused as JSON.
        (UP, canonical(value=1e400).replace(b"Infinity", b"1e400"), "bad_json"),
        (f"cityops/{CITY}/sensors/ghost/up", canonical(device_id="ghost"), "unknown_device"),
        ("cityops/110100/sensors/gw-1/up", canonical(city="110100"), "unknown_device"),
        (UP, canonical(metric="flow", unit="m3/h"), "unknown_metric"),
        (UP, canonical(value=250.0), "out_of_range"),
        (UP, canonical(value=-3.0), "out_of_range"),
        (UP, canonical(unit="kPa"), "wrong_unit"),
        (UP, canonical(ts="2026-07-01T03:30:00Z"), "bad_timestamp"),
        (UP, canonical(ts="2026-05-01T02:30:00Z"), "bad_timestamp"),
        (UP, canonical(ts="yesterday"), "bad_timestamp"),
        (UP, b" " * (Limits().max_payload_bytes + 1), "oversize"),
        (UP, canonical(device_id="tn-1"), "topic_mismatch"),
        (UP, canonical(value=True), "bad_value"),
        (UP, canonical(value="12"), "bad_value"),
        (UP, b'{"hello": 1}', "bad_shape"),
        ("cityops/320100/sensors/gw-1", canonical(), "bad_topic"),
        (f"cityops/{CITY}/cameras/{CAMERA}/event", b'{"DeviceID": "1"}', "bad_shape"),
    ],
)
def test_each_bad_input_has_its_reason(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        DECODE(topic, payload, NOW)
    assert info.value.reason == reason
    assert str(info.value)


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_nothing_but_payload_error(raw: bytes) -> None:
    for topic in (
        UP,
        f"cityops/{CITY}/cameras/{CAMERA}/event",
        f"cityops/{CITY}/sensors/acme-7/up",
        f"cityops/{CITY}/sensors/gw-1/status",
    ):
        with contextlib.suppress(PayloadError):
            DECODE(topic, raw, NOW)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "ts",
                "metric",
                "value",
                "unit",
                "values",
                "readings",
                "units",
                "device_id",
                "city",
                "payload",
                "meta",
                "v",
                "status",
                "DeviceID",
            ]
        ),
        json_values,
        max_size=6,
    )
)
def test_arbitrary_json_objects_raise_nothing_but_payload_error(body: dict) -> None:  # type: ignore[type-arg]
    raw = json.dumps(body).encode()
    for topic in (
        UP,
        f"cityops/{CITY}/sensors/tn-1/up",
        f"cityops/{CITY}/sensors/acme-7/up",
        f"cityops/{CITY}/cameras/{CAMERA}/event",
        f"cityops/{CITY}/sensors/gw-1/status",
    ):
        with contextlib.suppress(PayloadError):
            DECODE(topic, raw, NOW)


def test_topic_parts() -> None:
    parts = parse_topic(f"cityops/{CITY}/cameras/{CAMERA}/event")
    assert (parts.city, parts.family, parts.device_id, parts.leaf) == (
        CITY,
        "cameras",
        CAMERA,
        "event",
    )


def test_the_bridge_client_reads_a_qos1_publish_past_its_properties() -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from ingest.bridge import ReadAheadClient

    got: list[tuple[bytes, bytes, int, int]] = []
    client = ReadAheadClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    client.on_inbound = lambda *message: got.append(message)
    topic = b"cityops/320100/sensors/gw-1/up"
    # Payload format indicator (0x01) and a user property (0x26 "k" "v").
    props = b"\x01\x01" + b"\x26\x00\x01k\x00\x01v"
    payload = b'{"ts": "2026-07-01T00:00:00Z", "values": {"ch4": 1}}'
    body = len(topic).to_bytes(2, "big") + topic + (513).to_bytes(2, "big")
    body += bytes([len(props)]) + props + payload
    client._in_packet = {"command": 0x32, "packet": bytearray(body)}
    client._handle_publish()
    assert got == [(topic, payload, 513, 1)]
