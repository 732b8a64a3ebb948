"""Turn one MQTT message into Kafka records, or a :class:`PayloadError` saying why not.

Every message is checked the same way whatever its shape: the topic names an
onboarded device, the payload parses, names no other device, and every value is a
known metric of that device, in a unit that converts, inside the metric's physical
range, with a timestamp neither far in the future nor far in the past.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from geo.chinese import to_wgs84
from ingest import adapters
from ingest.adapters import VendorMapping, parse_time
from ingest.errors import PayloadError
from lifeline import codec, topics
from lifeline.devices import Device
from lifeline.errors import RecordError
from lifeline.kinds import PHYSICAL_RANGE
from lifeline.records import DeviceStatus, VideoEvent
from lifeline.registry import Registry
from lifeline.units import UnitError, converter
from lifeline.vocabulary import VideoEventType

MAX_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record bound for Kafka; ``partition`` None: the key's partition."""

    topic: str
    key: bytes
    value: bytes
    partition: int | None = None


def batched(records: list[Outgoing], partitions: int) -> list[Outgoing]:
    """Readings joined into batch records, one partition each (``partitions`` of the
    readings topic); the other records as they are."""
    name = topics.READINGS.name
    by_partition = codec.group_by_partition(
        ((r.key.decode(), r.value) for r in records if r.topic == name), partitions
    )
    return [
        Outgoing(name, b"", record, partition)
        for partition, encoded in by_partition.items()
        for record in codec.batches(encoded)
    ] + [r for r in records if r.topic != name]


@dataclass(frozen=True, slots=True)
class TopicParts:
    city: str
    family: str  # sensors | cameras
    device_id: str
    leaf: str  # up | event | status


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_future: timedelta = timedelta(minutes=5)
    max_past: timedelta = timedelta(days=7)


def parse_topic(topic: str) -> TopicParts:
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "cityops" or parts[2] not in {"sensors", "cameras"}:
        raise PayloadError(
            "bad_topic",
            f"topic {topic!r} is not cityops/{{city}}/sensors|cameras/{{id}}/up|event|status",
        )
    return TopicParts(parts[1], parts[2], parts[3], parts[4])


def parse_json(payload: bytes) -> Any:
    """Strict JSON (no NaN or Infinity, integers within 64 bits, valid UTF-8)."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError("bad_json", f"payload is not valid JSON: {str(exc)[:200]}") from exc


class Decoder:
    """Decodes the messages of onboarded devices; callable as the bridge's decoder."""

    def __init__(
        self,
        registry: Registry,
        vendors: dict[str, VendorMapping] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.registry = registry
        self.vendors = vendors if vendors is not None else adapters.load_vendors()
        self.limits = limits or Limits()

    def __call__(self, topic: str, payload: bytes, received_at: datetime) -> list[Outgoing]:
        if len(payload) > self.limits.max_payload_bytes:
            raise PayloadError(
                "oversize",
                f"payload of {len(payload)} bytes exceeds {self.limits.max_payload_bytes}; "
                "split it into several messages",
            )
        where = parse_topic(topic)
        device = self.registry.get(where.city, where.device_id)
        if device is None or device.family != where.family:
            raise PayloadError(
                "unknown_device",
                f"{where.family[:-1]} {where.device_id!r} is not onboarded in city "
                f"{where.city}; onboard it with `cityops onboard --city {where.city}`",
            )
        if where.leaf == "status":
            return [self._status(device, payload, received_at)]
        if where.family == "sensors" and where.leaf == "up":
            return self._readings(device, payload, received_at)
        if where.family == "cameras" and where.leaf == "event":
            return [self._video(device, payload, received_at)]
        raise PayloadError("bad_topic", f"topic {topic!r} has no handler for {where.leaf!r}")

    # -- readings -------------------------------------------------------------------

    def _readings(self, device: Device, payload: bytes, received_at: datetime) -> list[Outgoing]:
        return self.readings_of(device, parse_json(payload), received_at)

    def readings_of(
        self,
        device: Device,
        data: Any,
        received_at: datetime,
        known_as: tuple[str, ...] = (),
    ) -> list[Outgoing]:
        """The readings records of ``device``'s parsed report ``data`` (its vendor mapping
        or the platform's shapes), checked like every message. ``known_as``: the ids a
        platform named the device by, which the report may name it by too."""
        if device.vendor:
            mapping = self.vendors.get(device.vendor)
            if mapping is None:
                raise PayloadError(
                    "unknown_vendor",
                    f"device {device.device_id} names vendor {device.vendor!r} but no mapping "
                    "file defines it",
                )
            extracted = mapping.extract(data)
        else:
            extracted = adapters.auto(data)
        if extracted.device_id is not None and extracted.device_id not in (
            device.device_id,
            device.platform_id,
            device.imei,
            *known_as,
        ):
            raise PayloadError(
                "topic_mismatch",
                f"payload names device {extracted.device_id!r} but was published on the topic "
                f"of {device.device_id!r}; a device may only publish its own readings",
            )
        if extracted.city is not None and extracted.city != device.city:
            raise PayloadError(
                "topic_mismatch",
                f"payload names city {extracted.city} but the device belongs to {device.city}",
            )
        key = device.device_id.encode()
        out = []
        for s in extracted.samples:
            canonical = device.metrics.get(s.metric)
            if canonical is None:
                raise PayloadError(
                    "unknown_metric",
                    f"metric {s.metric!r} is not onboarded for {device.kind} device "
                    f"{device.device_id} (known: {', '.join(sorted(device.metrics)) or 'none'})",
                )
            unit = s.unit or canonical
            try:
                value = converter(s.metric, unit)(s.value) if unit != canonical else s.value
            except UnitError as exc:
                raise PayloadError("wrong_unit", str(exc)) from exc
            low, high = PHYSICAL_RANGE.get(s.metric, (float("-inf"), float("inf")))
            if not low <= value <= high:
                raise PayloadError(
                    "out_of_range",
                    f"{s.metric} = {value:g} {canonical} is outside the physical range "
                    f"[{low:g}, {high:g}]; check the sensor or its unit",
                )
            self.check_time(s.ts, received_at)
            encoded = codec.encode_reading(
                device.city, device.device_id, s.ts, s.metric, value, canonical, s.quality
            )
            out.append(Outgoing(topics.READINGS.name, key, encoded))
        return out

    def check_time(self, ts: datetime, received_at: datetime) -> None:
        if ts > received_at + self.limits.max_future:
            raise PayloadError(
                "bad_timestamp",
                f"timestamp {ts.isoformat()} is more than {self.limits.max_future} ahead of "
                "the platform clock; check the device's clock",
            )
        if ts < received_at - self.limits.max_past:
            raise PayloadError(
                "bad_timestamp",
                f"timestamp {ts.isoformat()} is more than {self.limits.max_past.days} days old; "
                "replay old data with `cityops replay` instead",
            )

    # -- video -----------------------------------------------------------------------

    def _video(self, device: Device, payload: bytes, received_at: datetime) -> Outgoing:
        data = parse_json(payload)
        if not isinstance(data, dict):
            raise PayloadError("bad_shape", "a video event must be a JSON object")
        if "DeviceID" in data:
            data = _from_gb28181(data, device)
        data.setdefault("city", device.city)
        data.setdefault("camera_id", device.device_id)
        try:
            event = VideoEvent.from_dict(data)
        except RecordError as exc:
            raise PayloadError("invalid_record", str(exc)) from exc
        if event.camera_id != device.device_id or event.city != device.city:
            raise PayloadError(
                "topic_mismatch",
                f"event names camera {event.camera_id} but was published on the topic of "
                f"{device.device_id}",
            )
        self.check_time(event.ts, received_at)
        if event.crs not in {"EPSG:4326", "EPSG:4490"}:
            lon, lat = to_wgs84(event.lon, event.lat, event.crs)
            event = event.model_copy(
                update={"lon": float(lon), "lat": float(lat), "crs": "EPSG:4326"}
            )
        return Outgoing(topics.VIDEO.name, device.device_id.encode(), event.to_json())

    # -- status ----------------------------------------------------------------------

    def _status(self, device: Device, payload: bytes, received_at: datetime) -> Outgoing:
        text = payload.strip()
        fields: dict[str, Any]
        if text in {b"online", b"offline", b"1", b"0"}:
            state = {b"1": "online", b"0": "offline"}.get(text, text.decode())
            fields = {"status": state, "ts": received_at}
        else:
            data = parse_json(payload)
            if not isinstance(data, dict) or "status" not in data:
                raise PayloadError("bad_shape", "a status message needs a 'status' field")
            fields = {
                "status": data["status"],
                "ts": parse_time(data["ts"]) if "ts" in data else received_at,
                "battery_pct": data.get("battery_pct"),
                "rssi_dbm": data.get("rssi_dbm"),
            }
        try:
            status = DeviceStatus.from_dict(
                {
                    "city": device.city,
                    "device_id": device.device_id,
                    "family": device.family,
                    **{k: v for k, v in fields.items() if v is not None},
                }
            )
        except RecordError as exc:
            raise PayloadError("invalid_record", str(exc)) from exc
        return Outgoing(topics.STATUS.name, device.device_id.encode(), status.to_json())


def _from_gb28181(data: dict[str, Any], device: Device) -> dict[str, Any]:
    """A GB/T 28181 alarm notification (JSON-mapped) with the AI label in ``EventType``."""
    event_type = data.get("EventType")
    if event_type not in {e.value for e in VideoEventType}:
        raise PayloadError(
            "bad_shape",
            f"GB/T 28181 alarm needs an EventType of {', '.join(e.value for e in VideoEventType)}",
        )
    return {
        "city": device.city,
        "camera_id": str(data.get("DeviceID")),
        "event_type": event_type,
        "ts": parse_time(data.get("AlarmTime"), "iso8601", _CST),
        "confidence": data.get("Confidence", 1.0),
        "lon": data.get("Longitude"),
        "lat": data.get("Latitude"),
        "crs": data.get("CRS", "EPSG:4326"),
        "priority": data.get("AlarmPriority"),
        "description": data.get("AlarmDescription"),
        "snapshot_url": data.get("SnapshotURL"),
    }


_CST = timezone(timedelta(hours=8))
