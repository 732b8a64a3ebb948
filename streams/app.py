"""The Faust app: ``cityops.readings`` → detect (per-series state in a changelog-backed
table) → ``cityops.anomalies``.

Readings are keyed by device id, so each device's series live on one partition and its
state in the same partition of the table; a restarted or rebalanced worker rebuilds the
state from the table's changelog topic. Anomaly ids are deterministic, so a reading
processed twice after a crash yields the same anomaly again, never a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import faust
import orjson
from prometheus_client import Counter

from ingest.registry import Registry
from lifeline import topics
from streams.detection import DetectionFold, SeriesState

log = logging.getLogger(__name__)

PROCESSED = Counter("cityops_detect_readings_total", "Readings through the detect agent")
EMITTED = Counter("cityops_detect_anomalies_total", "Anomaly records emitted", ["state"])
UNKNOWN = Counter("cityops_detect_unknown_devices_total", "Readings of devices not in registry")


Emit = Callable[[bytes, bytes], Awaitable[Any]]


def create_app(
    bootstrap: str,
    registry: Registry,
    *,
    app_id: str = "cityops-streams",
    readings_topic: str = topics.READINGS.name,
    anomalies_topic: str = topics.ANOMALIES.name,
    store: str = "memory://",
    emit: Emit | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> tuple[faust.App, Any]:
    """The app and its detect agent (returned for tests).

    ``emit(key, value)`` publishes an anomaly; by default it sends to the anomalies topic.
    """
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store=store,
        topic_partitions=topics.READINGS.partitions,
        topic_replication_factor=1,
        web_enabled=False,
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
        loop=loop,
        # A worker that dies is noticed within seconds, so its partitions move quickly.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
    )
    readings = app.topic(
        readings_topic, key_type=bytes, value_type=bytes, partitions=topics.READINGS.partitions
    )
    anomalies = app.topic(anomalies_topic, key_type=bytes, value_type=bytes)
    state = app.Table(
        "detect-state",
        default=None,
        partitions=topics.READINGS.partitions,
        key_type=str,
        value_type=bytes,
    )
    fold = DetectionFold()

    async def send(key: bytes, value: bytes) -> Any:
        return await anomalies.send(key=key, value=value)

    publish: Emit = emit or send

    @app.agent(readings)
    async def detect(stream: Any) -> None:
        async for raw in stream:
            PROCESSED.inc()
            try:
                d = orjson.loads(raw)
                device = registry.get(d["city"], d["device_id"])
                ts = datetime.fromisoformat(d["ts"])
                metric, value, unit = d["metric"], float(d["value"]), d["unit"]
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("unreadable reading skipped", extra={"error": str(exc)})
                continue
            if device is None:
                UNKNOWN.inc()
                continue
            key = f"{device.city}|{device.device_id}|{metric}"
            previous = state.get(key)
            st = SeriesState.loads(previous) if previous else None
            new, anomaly = fold.step(device, metric, ts, value, unit, st)
            state[key] = new.dumps()
            if anomaly is not None:
                EMITTED.labels(anomaly.state).inc()
                where = anomaly.asset_id or anomaly.grid_cell or device.device_id
                await publish(where.encode(), anomaly.to_json())

    return app, detect
