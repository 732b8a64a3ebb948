"""The Faust app: ``cityops.readings`` → detect (per-series state in a changelog-backed
table) → ``cityops.anomalies``; ``cityops.video`` → anomalies too; anomalies (keyed by
grid cell) → correlate (per-place state in a second table) → ``cityops.incidents``.

A device of a kind whose metrics are judged together also feeds its readings, gathered
into rows, to its joint model (:class:`streams.detection.JointFold`), kept in the same
table under ``city|device|*joint``.

Readings arrive in batch records (:mod:`lifeline.codec`), all of one partition: the
partition each device id keys to, so each device's series live on one partition and its
state in the same partition of the table. Detect and correlate keep their state as
objects in memory for the partitions they own and fold a whole record with no awaits; a
:class:`streams.checkpoint.Checkpoint` makes outputs, then state, durable before it
commits the input's offsets, about once a second; the agents keep those offsets
themselves and fold each record once and in order (:mod:`streams.offsets`). A restarted
or rebalanced worker rebuilds the state from the tables' changelogs. A reading not newer
than the last one applied to its series is not applied again, so readings processed
twice after a crash (the changelog runs ahead of the committed offsets) leave the state
as it was; anomaly and incident ids are deterministic, so a record re-emitted after a
crash is the same anomaly or incident again, never a new one.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import faust
from prometheus_client import Counter

from lifeline import codec, topics
from lifeline.detect.rules import RuleBook
from lifeline.errors import RecordError
from lifeline.incidents import PlaceState
from lifeline.incidents import fold as correlate_fold
from lifeline.records import Anomaly, VideoEvent
from lifeline.registry import Registry
from streams.checkpoint import Checkpoint, FaultPlan, Out, Publish, kafka_publisher
from streams.detection import (
    JOINT_KEY,
    DetectionFold,
    JointFold,
    SeriesState,
    offline_anomaly,
    video_anomaly,
)
from streams.offsets import FaustOffsets, Offsets, Position

log = logging.getLogger(__name__)

#: ``acknowledged(after)``: series (city, device, metric, seen at) whose alerts an
#: operator has seen since a cursor, and the new cursor
Acknowledged = Callable[[int], Awaitable[tuple[list[tuple[str, str, str, float]], int]]]

PROCESSED = Counter("cityops_detect_readings_total", "Readings through the detect agent")
RECORDS = Counter("cityops_detect_records_total", "Reading records (v1 or batch) consumed")
EMITTED = Counter("cityops_detect_anomalies_total", "Anomaly records emitted", ["state"])
UNKNOWN = Counter(
    "cityops_detect_unknown_devices_total", "Readings and video events of unknown devices"
)
UNREADABLE = Counter(
    "cityops_detect_unreadable_records_total", "Records the worker could not decode", ["topic"]
)
STALE = Counter(
    "cityops_detect_stale_readings_total",
    "Readings not newer than their series' last applied one (replays, duplicates, late)",
)
RELEASED = Counter(
    "cityops_detect_shifts_released_total",
    "Held shifts made the new normal because an operator saw their alert",
)
INCIDENTS = Counter("cityops_correlate_incidents_total", "Incident records emitted", ["status"])


@dataclass(frozen=True)
class Agents:
    detect: Any
    video: Any
    correlate: Any
    liveness: Any
    checkpoint: Any
    offsets: Offsets


def anomaly_out(anomaly: Anomaly) -> Out:
    """An anomaly keyed by city and grid cell: anomalies of one place meet in one
    correlate partition, and places of different cities never share correlation state."""
    EMITTED.labels(anomaly.state).inc()
    where = anomaly.grid_cell or anomaly.asset_id or anomaly.device_id or anomaly.anomaly_id
    return Out(topics.ANOMALIES.name, f"{anomaly.city}:{where}".encode(), anomaly.to_json())


_R = TypeVar("_R")


def _read(parse: Callable[[bytes], _R], value: bytes, topic: str, what: str) -> _R | None:
    """A record of ``topic`` parsed, or None: an unreadable one is counted and skipped
    (the sink dead-letters it; the agents have nothing to apply)."""
    try:
        return parse(value)
    except RecordError as exc:
        UNREADABLE.labels(topic).inc()
        log.warning(f"unreadable {what} skipped", extra={"error": str(exc)})
        return None


def create_app(
    bootstrap: str,
    registry: Registry,
    *,
    app_id: str = "cityops-streams",
    store: str = "memory://",
    publish: Publish | None = None,
    offsets: Offsets | None = None,
    offset_reset: str = "earliest",
    rules: RuleBook | None = None,
    liveness_every_s: float = 10.0,
    offline_min_s: float = 120.0,
    offline_default_s: float = 900.0,
    readings_topic: str = topics.READINGS.name,
    readings_partitions: int = topics.READINGS.partitions,
    checkpoint_s: float = 1.0,
    checkpoint_events: int = 2000,
    output_delay_s: float = 0.05,
    replication_factor: int = 1,
    acknowledged: Acknowledged | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    data_dir: Path | None = None,
) -> tuple[faust.App, Agents]:
    """The app and its agents (returned for tests).

    ``publish(records)`` produces records and returns once they are durable; by default
    Faust's producer with acks=all. ``offsets`` holds the consumer group's offsets of
    the checkpointed agents' input; by default the app's own group in Kafka. ``rules``
    overrides the default thresholds per city or device. A checkpoint runs every
    ``checkpoint_s``, after ``checkpoint_events`` consumed records, or
    ``output_delay_s`` after an anomaly or incident was produced.
    A device silent for five of its usual reporting gaps (at least
    ``offline_min_s``; ``offline_default_s`` while its gap is unknown; silence counted
    from the worker's start at the earliest) raises an offline anomaly, cleared by its
    next reading. ``acknowledged(after)`` returns the series whose alerts an operator
    has seen since a cursor (see :func:`store.events.acknowledged_series`); polled as
    often as the liveness check, it makes the held shifts of those series the new
    normal, so that their anomalies clear with the next reading.
    """
    # Faust keeps per-app files even with in-memory tables: not in the working directory.
    datadir = (data_dir or Path(tempfile.gettempdir())) / "cityops-worker"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store=store,
        datadir=datadir / app_id,
        topic_partitions=readings_partitions,
        topic_replication_factor=replication_factor,
        # A standby copy of every table partition on another worker: the survivor of a
        # lost worker takes its partitions over without reading their whole changelog.
        table_standby_replicas=1,
        web_enabled=False,
        producer_acks=-1,
        # Table changelogs and anomalies go out in batches rather than one request each.
        producer_linger_ms=5,
        producer_max_batch_size=1 << 20,
        key_serializer="raw",
        value_serializer="raw",
        # A worker that dies is noticed within seconds, so its partitions move quickly.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        consumer_auto_offset_reset=offset_reset,
        loop=loop,
    )

    def raw_topic(name: str, partitions: int | None = None, *, acks: bool = True) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=partitions, acks=acks)

    # The agents keep and commit their own positions (streams.offsets): Faust neither
    # acknowledges nor commits their topics.
    readings = raw_topic(readings_topic, readings_partitions, acks=False)
    video = raw_topic(topics.VIDEO.name, topics.VIDEO.partitions, acks=False)
    anomalies = raw_topic(topics.ANOMALIES.name, topics.ANOMALIES.partitions, acks=False)
    series_state = app.Table(
        "detect-state",
        default=None,
        partitions=readings_partitions,
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
    out: Publish = publish or kafka_publisher(lambda: app.producer)
    group = offsets or FaustOffsets(app, bootstrap, app_id)
    reading_positions = Position(readings_topic, group)
    anomaly_positions = Position(topics.ANOMALIES.name, group)
    video_positions = Position(topics.VIDEO.name, group)
    fault = FaultPlan.from_env()
    fold = DetectionFold(rules)
    joint_fold = JointFold()
    # Series states of the active partitions as objects; a miss reads the table.
    series: dict[str, SeriesState] = {}
    places: dict[str, tuple[int, PlaceState]] = {}
    # Liveness per device of the active partitions: (last arrival, timeout, last event
    # time, partition); filled by the detect agent and, after a start or a rebalance,
    # from the table. Devices reported offline, by the event time of their last reading.
    seen: dict[tuple[str, str], tuple[float, float, float, int]] = {}
    offline: dict[tuple[str, str], float] = {}
    scanned: set[int] = set()
    started = time.time()
    checkpoints: list[Checkpoint[Any]] = []

    def checkpoint(name: str, table: Any, dumps: Any, position: Position) -> Checkpoint[Any]:
        async def commit(upto: Mapping[int, int]) -> None:
            await position.offsets.commit(position.topic, upto)

        cp: Checkpoint[Any] = Checkpoint(
            agent=name,
            publish=out,
            changelog_topic=table.changelog_topic.get_topic_name(),
            store=table.data,
            dumps=dumps,
            commit=commit,
            changelog_key=lambda key: (
                app.serializers.dumps_key(table.key_type, key, serializer=table.key_serializer)
                or b""
            ),
            interval_s=checkpoint_s,
            max_events=checkpoint_events,
            output_delay_s=output_delay_s,
            fault=fault,
        )
        checkpoints.append(cp)
        return cp

    @app.agent(readings)
    async def detect(stream: Any) -> None:
        cp = checkpoint("detect", series_state, SeriesState.dumps, reading_positions)
        async for event in stream.noack().events():
            partition, offset = event.message.partition, event.message.offset
            if not await reading_positions.admit(partition, offset):
                continue
            batch = _read(codec.decode, event.value, readings_topic, "reading record") or []
            RECORDS.inc()
            PROCESSED.inc(len(batch))
            wall = time.time()
            for r in batch:
                device = registry.get(r.city, r.device_id)
                if device is None:
                    UNKNOWN.inc()
                    continue
                key = f"{r.city}|{r.device_id}|{r.metric}"
                st = series.get(key)
                if st is None:
                    raw = series_state.data.get(key)
                    st = SeriesState.loads(raw) if raw else None
                epoch = r.ts.timestamp()
                if st is not None and st.last_ts and epoch <= st.last_ts:
                    # Already applied (a replay after a restart: the table's changelog
                    # runs ahead of the committed offsets), or a duplicate or late
                    # reading. The sink stores it; the detectors see each moment once.
                    STALE.inc()
                    continue
                new, anomaly = fold.step(
                    device, r.metric, r.ts, r.value, r.unit, st, (wall, partition)
                )
                series[key] = new
                cp.changed(key, partition, new)
                if anomaly is not None:
                    cp.output(partition, anomaly_out(anomaly))
                if joint_fold.model(device) is not None:
                    # Equipment judged as a whole: its readings also feed its joint model.
                    jkey = f"{r.city}|{r.device_id}|{JOINT_KEY}"
                    jst = series.get(jkey)
                    if jst is None:
                        raw = series_state.data.get(jkey)
                        jst = SeriesState.loads(raw) if raw else None
                    jnew, janomaly = joint_fold.step(
                        device, r.metric, r.ts, r.value, r.unit, jst, (wall, partition)
                    )
                    if jnew is not None and jnew is not jst:
                        series[jkey] = jnew
                        cp.changed(jkey, partition, jnew)
                    if janomaly is not None:
                        cp.output(partition, anomaly_out(janomaly))
                who = (r.city, r.device_id)
                seen[who] = (
                    wall,
                    new.timeout_s(offline_min_s, offline_default_s),
                    new.last_ts,
                    partition,
                )
                went = offline.pop(who, None) if offline else None
                if went is not None:
                    silent = wall - (st.seen if st else wall)
                    now = datetime.fromtimestamp(wall, UTC)
                    cleared = offline_anomaly(device, went, silent, "cleared", now)
                    cp.output(partition, anomaly_out(cleared))
            cp.consumed(partition, offset)
            await cp.maybe_flush()

    @app.timer(interval=min(checkpoint_s, output_delay_s))  # type: ignore[untyped-decorator]
    async def flush_checkpoints() -> None:
        """Checkpoint agents that have gone quiet with work due; seek again partitions
        whose fetcher has not yet come back with the records it skipped."""
        for cp in checkpoints:
            await cp.maybe_flush()
        for position in (reading_positions, anomaly_positions, video_positions):
            await position.watch()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode's signal type is narrow
    async def on_revoked(_app: Any, revoked: set[Any], **_kwargs: Any) -> None:
        lost = {tp.partition for tp in revoked if tp.topic == readings_topic}
        for key in [k for k, st in series.items() if st.partition in lost]:
            del series[key]
        lost_places = {tp.partition for tp in revoked if tp.topic == topics.ANOMALIES.name}
        for key in [k for k, (p, _s) in places.items() if p in lost_places]:
            del places[key]
        for cp in checkpoints:
            cp.revoke(lost if cp.agent == "detect" else lost_places)
        reading_positions.forget(lost)
        anomaly_positions.forget(lost_places)
        video_positions.forget(tp.partition for tp in revoked if tp.topic == topics.VIDEO.name)

    @app.timer(interval=liveness_every_s)  # type: ignore[untyped-decorator]  # faust is untyped
    async def liveness() -> None:
        """Raise offline anomalies for silent devices of this worker's partitions."""
        active = {tp.partition for tp in app.consumer.assignment() if tp.topic == readings_topic}
        fresh = active - scanned
        if fresh:
            for key, raw in list(series_state.data.items()):
                st = series.get(key) or SeriesState.loads(raw)
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
        raised = []
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
            raised.append(anomaly_out(offline_anomaly(device, last_ts, silent, "raised", now)))
        if raised:
            await out(raised)

    @app.agent(video)
    async def video_events(stream: Any) -> None:
        # Few and far between: each event's anomaly is durable before its offset is
        # committed, one event at a time.
        async for event in stream.noack().events():
            partition, offset = event.message.partition, event.message.offset
            if not await video_positions.admit(partition, offset):
                continue
            seen_event = _read(VideoEvent.from_json, event.value, topics.VIDEO.name, "video event")
            if seen_event is not None:
                camera = registry.get(seen_event.city, seen_event.camera_id)
                if camera is None:
                    UNKNOWN.inc()  # a camera of a city this worker does not serve
                else:
                    await out([anomaly_out(video_anomaly(seen_event, camera))])
            await group.commit(topics.VIDEO.name, {partition: offset + 1})

    if acknowledged is not None:
        cursor = [0]

        @app.timer(interval=liveness_every_s)  # type: ignore[untyped-decorator]
        async def release_acknowledged() -> None:
            """Held shifts whose alerts an operator has seen become the new normal."""
            rows, cursor[0] = await acknowledged(cursor[0])
            detect_cp = next((c for c in checkpoints if c.agent == "detect"), None)
            if not rows or detect_cp is None:
                return
            active = {
                tp.partition for tp in app.consumer.assignment() if tp.topic == readings_topic
            }
            for city, device_id, metric, seen_at in rows:
                key = f"{city}|{device_id}|{metric}"
                st = series.get(key)
                if st is None:
                    raw = series_state.data.get(key)
                    st = SeriesState.loads(raw) if raw else None
                device = registry.get(city, device_id)
                if st is None or device is None or st.partition not in active:
                    continue
                new = fold.release(device, metric, st, seen_at)
                if new is None:
                    continue
                series[key] = new
                detect_cp.changed(key, st.partition, new)
                RELEASED.inc()
                log.info(
                    "held shift released by its acknowledgement",
                    extra={"city": city, "device_id": device_id, "metric": metric},
                )

    def dump_place(state: PlaceState) -> bytes:
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @app.agent(anomalies)
    async def correlate(stream: Any) -> None:
        cp = checkpoint("correlate", place_state, dump_place, anomaly_positions)
        async for event in stream.noack().events():
            partition, offset = event.message.partition, event.message.offset
            if not await anomaly_positions.admit(partition, offset):
                continue
            anomaly = _read(Anomaly.from_json, event.value, topics.ANOMALIES.name, "anomaly")
            if anomaly is not None:
                key = (event.key or b"").decode()
                held = places.get(key)
                if held is not None:
                    state = held[1]
                else:
                    raw = place_state.data.get(key)
                    state = pickle.loads(raw) if raw else PlaceState()  # noqa: S301  # own table
                device = registry.get(anomaly.city, anomaly.device_id or "")
                state, incidents = correlate_fold(state, anomaly, device.kind if device else None)
                places[key] = (partition, state)
                cp.changed(key, partition, state)
                for incident in incidents:
                    INCIDENTS.labels(incident.status).inc()
                    cp.output(
                        partition,
                        Out(
                            topics.INCIDENTS.name,
                            incident.incident_id.encode(),
                            incident.to_json(),
                        ),
                    )
            cp.consumed(partition, offset)
            await cp.maybe_flush()

    return app, Agents(detect, video_events, correlate, liveness, checkpoints, group)
