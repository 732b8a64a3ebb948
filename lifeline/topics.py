"""Kafka topics of the platform: names, keys and partition counts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    retention_hours: int = 168
    compacted: bool = False


READINGS = TopicSpec("cityops.readings", 12, "device_id")
VIDEO = TopicSpec("cityops.video", 6, "camera_id")
STATUS = TopicSpec("cityops.status", 6, "device_id", compacted=True)
ANOMALIES = TopicSpec("cityops.anomalies", 12, "asset or grid cell")
INCIDENTS = TopicSpec("cityops.incidents", 6, "incident_id", compacted=True)
DEADLETTER = TopicSpec("cityops.deadletter", 3, "mqtt topic", retention_hours=24 * 30)

ALL_TOPICS: tuple[TopicSpec, ...] = (READINGS, VIDEO, STATUS, ANOMALIES, INCIDENTS, DEADLETTER)
