"""Turn one MQTT message into Kafka records, or a :class:`PayloadError` saying why not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ingest.errors import PayloadError
from lifeline import topics
from lifeline.errors import RecordError
from lifeline.records import Reading

MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record bound for Kafka."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class TopicParts:
    city: str
    family: str  # sensors | cameras
    device_id: str
    leaf: str  # up | event | status


def parse_topic(topic: str) -> TopicParts:
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "cityops" or parts[2] not in {"sensors", "cameras"}:
        raise PayloadError(
            "bad_topic",
            f"topic {topic!r} is not cityops/{{city}}/sensors|cameras/{{id}}/up|event|status",
        )
    return TopicParts(parts[1], parts[2], parts[3], parts[4])


def decode_canonical_reading(topic: str, payload: bytes, received_at: datetime) -> list[Outgoing]:
    """Decode a canonical ``Reading`` JSON published on the device's own ``up`` topic."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            "oversize", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES} bytes"
        )
    where = parse_topic(topic)
    try:
        reading = Reading.from_json(payload)
    except RecordError as exc:
        raise PayloadError("invalid_record", str(exc)) from exc
    if reading.device_id != where.device_id or reading.city != where.city:
        raise PayloadError(
            "topic_mismatch",
            f"payload names device {reading.city}/{reading.device_id} but was published on "
            f"{topic}; a device may only publish its own readings",
        )
    return [Outgoing(topics.READINGS.name, reading.device_id.encode(), reading.to_json())]
