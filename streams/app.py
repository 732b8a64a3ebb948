"""The Faust app: ``cityops.readings`` → detect (per-series state in a changelog-backed
table) → ``cityops.anomalies``; ``cityops.video`` → anomalies too; anomalies (keyed by
grid cell) → correlate (per-place state in a second table) → ``cityops.incidents``.

Readings are keyed by device id, so each device's series live on one partition and its
state in the same partition of the table; a restarted or rebalanced worker rebuilds the
state from the table's changelog topic. A reading not newer than the last one applied to
its series is not applied again, so readings processed twice after a crash (the changelog
runs ahead of the committed offsets) leave the state as it was; anomaly and incident ids
are deterministic, so a record re-emitted after a crash is the same anomaly or incident
again, never a new one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import orjson
from prometheus_client import Counter

from ingest.registry import Registry
from lifeline import topics
from lifeline.detect.rules import RuleBook
from lifeline.errors import RecordError
from lifeline.incidents import PlaceState
from lifeline.incidents import fold as correlate_fold
from lifeline.records import Anomaly, VideoEvent
from streams.detection import DetectionFold, SeriesState, offline_anomaly, video_anomaly

log = logging.getLogger(__name__)

PROCESSED = Counter("cityops_detect_readings_total", "Readings through the detect agent")
EMITTED = Counter("cityops_detect_anomalies_total", "Anomaly records emitted", ["state"])
UNKNOWN = Counter(
    "cityops_detect_unknown_devices_total", "Readings and video events of unknown devices"
)
STALE = Counter(
    "cityops_detect_stale_readings_total",
    "Readings not newer than their series' last applied one (replays, duplicates, late)",
)
INCIDENTS = Counter("cityops_correlate_incidents_total", "Incident records emitted", ["status"])


Emit = Callable[[str, bytes, bytes], Awaitable[Any]]


@dataclass(frozen=True)
class Agents:
    detect: Any
    video: Any
    correlate: Any
    liveness: Any


def create_app(
    bootstrap: str,
    registry: Registry,
    *,
    app_id: str = "cityops-streams",
    store: str = "memory://",
    emit: Emit | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    offset_reset: str = "earliest",
    rules: RuleBook | None = None,
    liveness_every_s: float = 10.0,
    offline_min_s: float = 120.0,
    offline_default_s: float = 900.0,
    readings_topic: str = topics.READINGS.name,
) -> tuple[faust.App, Agents]:
    """The app and its agents (returned for tests).

    ``emit(topic, key, value)`` publishes a record; by default to Kafka. ``rules``
    overrides the default thresholds per city or device. A device silent for five of
    its usual reporting gaps (at least ``offline_min_s``; ``offline_default_s`` while its
    gap is unknown; silence counted from the worker's start at the earliest) raises an
    offline anomaly, cleared by its next reading.
    """
    # Faust keeps per-app files even with in-memory tables: not in the working directory.
    datadir = Path(os.environ.get("CITYOPS_WORKER_DATA", tempfile.gettempdir())) / "cityops-worker"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store=store,
        datadir=datadir / app_id,
        topic_partitions=topics.READINGS.partitions,
        topic_replication_factor=1,
        web_enabled=False,
        producer_acks=-1,
        # Table changelogs and anomalies go out in batches rather than one request each.
        producer_linger_ms=10,
        producer_max_batch_size=1 << 20,
        key_serializer="raw",
        value_serializer="raw",
        loop=loop,
        # A worker that dies is noticed within seconds, so its partitions move quickly.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        consumer_auto_offset_reset=offset_reset,
    )

    def raw_topic(name: str, partitions: int | None = None) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=partitions)

    readings = raw_topic(readings_topic, topics.READINGS.partitions)
    video = raw_topic(topics.VIDEO.name, topics.VIDEO.partitions)
    anomalies = raw_topic(topics.ANOMALIES.name, topics.ANOMALIES.partitions)
    outputs = {t.name: raw_topic(t.name) for t in (topics.ANOMALIES, topics.INCIDENTS)}
    series_state = app.Table(
        "detect-state",
        default=None,
        partitions=topics.READINGS.partitions,
        key_type=str,
        value_type=bytes,
    )
    place_state = app.Table(
        "correlate-state",
        default=None,
        partitions=topics.ANOMALIES.partitions,
        key_type=str,
        value_type=bytes,
    )
    fold = DetectionFold(rules)
    # Liveness per device of the active partitions: (last arrival, timeout, last event
    # time, partition); filled by the detect agent and, after a start or a rebalance,
    # from the table. Devices reported offline, by the event time of their last reading.
    seen: dict[tuple[str, str], tuple[float, float, float, int]] = {}
    offline: dict[tuple[str, str], float] = {}
    scanned: set[int] = set()
    started = time.time()

    async def send(topic: str, key: bytes, value: bytes) -> Any:
        return await outputs[topic].send(key=key, value=value)

    publish: Emit = emit or send

    async def publish_anomaly(anomaly: Anomaly) -> None:
        EMITTED.labels(anomaly.state).inc()
        # Keyed by city and grid cell: anomalies of one place meet in one correlate
        # partition, and places of different cities never share correlation state.
        where = anomaly.grid_cell or anomaly.asset_id or anomaly.device_id or anomaly.anomaly_id
        await publish(topics.ANOMALIES.name, f"{anomaly.city}:{where}".encode(), anomaly.to_json())

    @app.agent(readings)
    async def detect(stream: Any) -> None:
        async for event in stream.events():
            PROCESSED.inc()
            try:
                d = orjson.loads(event.value)
                device = registry.get(d["city"], d["device_id"])
                ts = datetime.fromisoformat(d["ts"])
                metric, reading, unit = d["metric"], float(d["value"]), d["unit"]
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("unreadable reading skipped", extra={"error": str(exc)})
                continue
            if device is None:
                UNKNOWN.inc()
                continue
            key = f"{device.city}|{device.device_id}|{metric}"
            previous = series_state.get(key)
            st = SeriesState.loads(previous) if previous else None
            if st is not None and st.last_ts and ts.timestamp() <= st.last_ts:
                # Already applied (a replay after a restart: the table's changelog runs
                # ahead of the committed offsets), or a duplicate or late reading. The
                # sink stores it; the detectors see each moment of a series once.
                STALE.inc()
                continue
            new, anomaly = fold.step(device, metric, ts, reading, unit, st)
            wall = time.time()
            new = new.arrived(wall, ts.timestamp(), event.message.partition)
            series_state[key] = new.dumps()
            if anomaly is not None:
                await publish_anomaly(anomaly)
            who = (device.city, device.device_id)
            seen[who] = (
                wall,
                new.timeout_s(offline_min_s, offline_default_s),
                new.last_ts,
                new.partition,
            )
            went = offline.pop(who, None)
            if went is not None:
                silent = wall - (st.seen if st else wall)
                now = datetime.fromtimestamp(wall, UTC)
                await publish_anomaly(offline_anomaly(device, went, silent, "cleared", now))

    @app.timer(interval=liveness_every_s)  # type: ignore[untyped-decorator]  # faust is untyped
    async def liveness() -> None:
        """Raise offline anomalies for silent devices of this worker's partitions."""
        active = {tp.partition for tp in app.consumer.assignment() if tp.topic == readings_topic}
        fresh = active - scanned
        if fresh:
            for key, raw in list(series_state.items()):
                st = SeriesState.loads(raw)
                if st.partition not in fresh:
                    continue
                city, device_id, _metric = key.split("|", 2)
                entry = seen.get((city, device_id))
                if entry is None or entry[0] < st.seen:
                    timeout = st.timeout_s(offline_min_s, offline_default_s)
                    seen[(city, device_id)] = (st.seen, timeout, st.last_ts, st.partition)
        scanned.clear()
        scanned.update(active)
        wall = time.time()
        for who, (last, timeout, last_ts, partition) in list(seen.items()):
            if partition not in active:
                seen.pop(who, None)
                offline.pop(who, None)
                continue
            # Silence counts from this worker's start at the earliest: while the platform
            # itself was down, nobody was listening, so that time says nothing of the device.
            silent = wall - max(last, started)
            if who in offline or silent <= timeout:
                continue
            device = registry.get(*who)
            if device is None:
                continue
            offline[who] = last_ts
            now = datetime.fromtimestamp(wall, UTC)
            await publish_anomaly(offline_anomaly(device, last_ts, silent, "raised", now))

    @app.agent(video)
    async def video_events(stream: Any) -> None:
        async for value in stream:
            try:
                event = VideoEvent.from_json(value)
            except RecordError as exc:
                log.warning("unreadable video event skipped", extra={"error": str(exc)})
                continue
            camera = registry.get(event.city, event.camera_id)
            if camera is None:
                UNKNOWN.inc()  # a camera of a city this worker does not serve
                continue
            await publish_anomaly(video_anomaly(event, camera))

    @app.agent(anomalies)
    async def correlate(stream: Any) -> None:
        async for event in stream.events():
            try:
                anomaly = Anomaly.from_json(event.value)
            except RecordError as exc:
                log.warning("unreadable anomaly skipped", extra={"error": str(exc)})
                continue
            key = (event.key or b"").decode()
            previous = place_state.get(key)
            state = pickle.loads(previous) if previous else PlaceState()  # noqa: S301  # own table
            device = registry.get(anomaly.city, anomaly.device_id or "")
            state, incidents = correlate_fold(state, anomaly, device.kind if device else None)
            place_state[key] = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
            for incident in incidents:
                INCIDENTS.labels(incident.status).inc()
                await publish(
                    topics.INCIDENTS.name, incident.incident_id.encode(), incident.to_json()
                )

    return app, Agents(detect, video_events, correlate, liveness)
