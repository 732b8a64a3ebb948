from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.decode import MAX_PAYLOAD_BYTES, decode_canonical_reading, parse_topic
from ingest.errors import PayloadError
from lifeline.records import Reading

NOW = datetime(2026, 7, 1, tzinfo=UTC)
TOPIC = "cityops/320100/sensors/gw-1/up"


def reading(device: str = "gw-1", city: str = "320100") -> bytes:
    return Reading(
        city=city, device_id=device, ts=NOW, metric="ch4", value=3.0, unit="%LEL"
    ).to_json()


def test_canonical_reading_goes_to_readings_keyed_by_device() -> None:
    [out] = decode_canonical_reading(TOPIC, reading(), NOW)
    assert out.topic == "cityops.readings"
    assert out.key == b"gw-1"
    assert Reading.from_json(out.value).value == 3.0


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (TOPIC, b"{not json", "invalid_record"),
        (TOPIC, reading(device="gw-2"), "topic_mismatch"),
        (TOPIC, reading(city="110100"), "topic_mismatch"),
        ("cityops/320100/sensors/gw-1", reading(), "bad_topic"),
        (TOPIC, b" " * (MAX_PAYLOAD_BYTES + 1), "oversize"),
    ],
)
def test_bad_messages_raise_payload_error_with_reason(
    topic: str, payload: bytes, reason: str
) -> None:
    with pytest.raises(PayloadError) as info:
        decode_canonical_reading(topic, payload, NOW)
    assert info.value.reason == reason


@given(st.binary(max_size=2000))
def test_decoder_raises_only_payload_error_on_arbitrary_bytes(raw: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_canonical_reading(TOPIC, raw, NOW)


def test_topic_parts() -> None:
    parts = parse_topic("cityops/320100/cameras/32010000081310000001/event")
    assert (parts.city, parts.family, parts.device_id, parts.leaf) == (
        "320100",
        "cameras",
        "32010000081310000001",
        "event",
    )
