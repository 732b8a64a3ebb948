"""The detection fold for one reading of one series, independent of Faust.

Per series (city, device, metric) the state is the detectors' state plus what the
last reading left open: the rank in force and when the current anomaly began. A reading
yields at most one anomaly record: raised, updated (severity changed) or cleared.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from math import isnan
from typing import Any, Literal

from lifeline.detect.detectors import severity_of
from lifeline.detect.joint import Joint, JointState, JointStep
from lifeline.detect.rules import RuleBook
from lifeline.detect.series import SeriesDetector
from lifeline.devices import Device
from lifeline.kinds import JOINT_KINDS
from lifeline.records import Anomaly, Evidence, VideoEvent
from lifeline.vocabulary import Severity


@dataclass(frozen=True)
class SeriesState:
    detectors: tuple[Any, ...]
    rank: int = 0
    since: float = 0.0
    #: liveness: wall-clock arrival of the last reading, the smoothed gap between
    #: arrivals, the last reading's event time, and the readings partition it came from
    seen: float = 0.0
    gap_s: float = 0.0
    last_ts: float = 0.0
    partition: int = -1
    #: event time the open anomaly was last reported (raised, updated or refreshed)
    reported: float = 0.0

    def arrived(self, wall: float, ts: float, partition: int) -> SeriesState:
        """This state after a reading arrived at ``wall`` (event time ``ts``)."""
        gap = smoothed_gap(self.seen, self.gap_s, wall)
        return replace(self, seen=wall, gap_s=gap, last_ts=ts, partition=partition)

    def silent_for(self, wall: float) -> float:
        return wall - self.seen if self.seen else 0.0

    def timeout_s(self, min_s: float, default_s: float) -> float:
        """How long without a reading before the series counts as offline: five
        typical gaps, at least ``min_s``; ``default_s`` while the gap is unknown."""
        return max(min_s, 5 * self.gap_s) if self.gap_s > 0 else default_s

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(raw: bytes) -> SeriesState:
        state = pickle.loads(raw)  # noqa: S301  # written only by this worker to its own table
        if not isinstance(state, SeriesState):
            raise TypeError("not a series state")
        return state


def smoothed_gap(seen: float, gap: float, wall: float) -> float:
    """The smoothed gap between arrivals after one at ``wall`` (last one at ``seen``)."""
    if not seen:
        return gap
    step = max(0.0, wall - seen)
    return step if gap == 0.0 else 0.8 * gap + 0.2 * step


#: seconds of event time after which an open anomaly is reported again
REFRESH_S = 300.0


class DetectionFold:
    """Caches one :class:`SeriesDetector` per (kind, metric), or per device where a
    rules file overrides the defaults for that kind and metric."""

    def __init__(self, rules: RuleBook | None = None) -> None:
        self.rules = rules
        self._overridden = {(o.kind, o.metric) for o in rules.overrides} if rules else set()
        self._detectors: dict[tuple[str, ...], SeriesDetector] = {}

    def detector(
        self, kind: str, metric: str, city: str | None = None, device_id: str | None = None
    ) -> SeriesDetector:
        specific = self.rules is not None and (kind, metric) in self._overridden
        key = (kind, metric, city or "", device_id or "") if specific else (kind, metric)
        found = self._detectors.get(key)
        if found is None:
            if specific and self.rules is not None:
                found = SeriesDetector(self.rules.detectors(kind, metric, city, device_id))
            else:
                found = SeriesDetector.for_metric(kind, metric)
            self._detectors[key] = found
        return found

    def release(
        self, device: Device, metric: str, state: SeriesState, acknowledged: float
    ) -> SeriesState | None:
        """The series after an operator acknowledged (at ``acknowledged``, epoch
        seconds) the alert of its open anomaly: a held shift of its adaptive baseline
        becomes the new normal, so the anomaly clears with the next reading. None when
        there is nothing to release, or the anomaly opened after the acknowledgement."""
        if not state.rank or state.since > acknowledged:
            return None
        det = self.detector(device.kind, metric, device.city, device.device_id)
        if len(state.detectors) != len(det.detectors):
            return None
        inner = det.release(state.detectors)
        return None if inner is None else replace(state, detectors=inner)

    def step(
        self,
        device: Device,
        metric: str,
        ts: datetime,
        value: float,
        unit: str,
        state: SeriesState | None,
        arrival: tuple[float, int] | None = None,
    ) -> tuple[SeriesState, Anomaly | None]:
        """The state after one reading, and the anomaly record it raised, updated or
        cleared if any. With ``arrival`` (wall-clock time, partition) the state is also
        :meth:`SeriesState.arrived` (one object built instead of two: the worker's path)."""
        det = self.detector(device.kind, metric, device.city, device.device_id)
        st = state
        if st is None or len(st.detectors) != len(det.detectors):
            # New series, or its rules changed: start its detectors afresh.
            st = SeriesState(det.init(), seen=st.seen if st else 0.0, gap_s=st.gap_s if st else 0.0)
        epoch = ts.timestamp()
        inner, (score, rank, flags) = det.step(st.detectors, epoch, value)
        seen, gap, last_ts, partition = st.seen, st.gap_s, st.last_ts, st.partition
        if arrival is not None:
            wall, partition = arrival
            seen, gap, last_ts = wall, smoothed_gap(seen, gap, wall), epoch
        if not _due(rank, st, epoch):
            return SeriesState(
                inner, st.rank, st.since, seen, gap, last_ts, partition, st.reported
            ), None
        since = epoch if st.rank == 0 else st.since
        names = [name for name, _ in flags]
        anomaly = _anomaly(device, metric, ts, value, unit, score, names, rank, st.rank, since)
        return SeriesState(
            inner, rank, since if rank else 0.0, seen, gap, last_ts, partition, epoch
        ), anomaly


#: the series key's metric part under which a device's joint model is kept
JOINT_KEY = "*joint"
NAN = float("nan")


@dataclass(frozen=True)
class JointRow:
    """The metrics of one device read at one moment, being gathered: the row's event
    time, its values so far (NaN where none yet, in the model's metric order), whether
    it has been judged, and each metric's last value (held for a row that misses it)."""

    ts: float = 0.0
    values: tuple[float, ...] = ()
    last: tuple[float, ...] = ()
    units: tuple[str, ...] = ()
    judged: bool = False
    #: how many metrics of the row are in
    filled: int = 0


class JointFold:
    """One joint model (``lifeline.detect.joint``) per device of a joint kind with two
    metrics or more, fed with the device's readings as rows: a row is judged when every
    metric of its moment is in, or when a reading of a later moment arrives (a metric
    missing from it holds its last value). The state is a :class:`SeriesState` whose
    detectors are the model's state and the row being gathered, under the series key
    ``city|device|*joint``; it raises, updates and clears anomalies as a series does."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, ...], Joint] = {}
        #: (kind, metrics as the device lists them) → the model and each metric's place
        #: in its rows; None for a device judged metric by metric
        self._by_device: dict[tuple[str, tuple[str, ...]], tuple[Joint, dict[str, int]] | None]
        self._by_device = {}

    def _lookup(self, device: Device) -> tuple[Joint, dict[str, int]] | None:
        key = (device.kind, tuple(device.metrics))
        try:
            return self._by_device[key]
        except KeyError:
            pass
        found: tuple[Joint, dict[str, int]] | None = None
        if device.kind in JOINT_KINDS and len(device.metrics) >= 2:
            metrics = tuple(sorted(device.metrics))
            joint = self._models.get(metrics)
            if joint is None:
                joint = self._models[metrics] = Joint(metrics)
            found = (joint, {m: i for i, m in enumerate(metrics)})
        self._by_device[key] = found
        return found

    def model(self, device: Device) -> Joint | None:
        found = self._lookup(device)
        return found[0] if found is not None else None

    def step(
        self,
        device: Device,
        metric: str,
        ts: datetime,
        value: float,
        unit: str,
        state: SeriesState | None,
        arrival: tuple[float, int] | None = None,
    ) -> tuple[SeriesState | None, Anomaly | None]:
        """The device's joint state after one of its readings, and the anomaly record a
        judged row raised, updated or cleared. (None, None) for a device without a joint
        model or a metric outside it."""
        found = self._lookup(device)
        i = found[1].get(metric, -1) if found is not None else -1
        if found is None or i < 0:
            return None, None
        joint = found[0]
        p = joint.p
        st = state
        if st is None or not isinstance(st.detectors[0], JointState):
            st = SeriesState((joint.init(), JointRow(values=(NAN,) * p, last=(NAN,) * p)))
        model, row = st.detectors
        if not joint.fits(model):  # the device's metrics changed: start afresh
            model, row = joint.init(), JointRow(values=(NAN,) * p, last=(NAN,) * p)
        epoch = ts.timestamp()
        if epoch < row.ts or (epoch == row.ts and row.judged):
            return st, None  # a late or repeated reading: its row has been judged
        anomaly = None
        rank, since, reported = st.rank, st.since, st.reported
        if epoch > row.ts:
            if not row.judged and row.filled:
                # A reading of a later moment: the row before is judged as it stands.
                model, out = joint.step(model, row.ts, self._vector(row))
                now = SeriesState(st.detectors, rank, since, reported=reported)
                rank, since, reported, anomaly = self._report(device, joint, row, out, now)
            values = [NAN] * p
            filled = 0
            ts_row = epoch
        else:
            values = list(row.values)
            filled = row.filled
            ts_row = row.ts
        if isnan(values[i]):
            filled += 1
        values[i] = value
        last = list(row.last)
        last[i] = value
        units = row.units
        if not units or units[i] != unit:
            changed = list(units) if units else [""] * p
            changed[i] = unit
            units = tuple(changed)
        judged = filled >= p
        row = JointRow(
            ts=ts_row,
            values=tuple(values),
            last=tuple(last),
            units=units,
            judged=judged,
            filled=filled,
        )
        if judged:
            model, out = joint.step(model, ts_row, values)
            now = SeriesState(st.detectors, rank, since, reported=reported)
            rank, since, reported, done = self._report(device, joint, row, out, now)
            anomaly = done or anomaly
        seen, gap, last_ts, partition = st.seen, st.gap_s, st.last_ts, st.partition
        if arrival is not None:
            wall, partition = arrival
            seen, gap, last_ts = wall, smoothed_gap(seen, gap, wall), epoch
        new = SeriesState((model, row), rank, since, seen, gap, last_ts, partition, reported)
        return new, anomaly

    @staticmethod
    def _vector(row: JointRow) -> list[float]:
        return [v if not isnan(v) else h for v, h in zip(row.values, row.last, strict=True)]

    @staticmethod
    def _report(
        device: Device, joint: Joint, row: JointRow, out: JointStep, st: SeriesState
    ) -> tuple[int, float, float, Anomaly | None]:
        """The rank in force, when its anomaly began and was last reported, and the
        anomaly record a judged row makes (a change of rank, or a refresh)."""
        rank = out.rank
        if not _due(rank, st, row.ts):
            return st.rank, st.since, st.reported, None
        since = row.ts if st.rank == 0 else st.since
        state, severity = _lifecycle(st.rank, rank)
        when = datetime.fromtimestamp(row.ts, UTC)
        named = out.top or tuple(joint.metrics[:1])
        evidence = tuple(
            Evidence(
                device_id=device.device_id,
                metric=m,
                value=row.last[joint.metrics.index(m)],
                unit=row.units[joint.metrics.index(m)] or device.metrics.get(m, ""),
                ts=when,
            )
            for m in named
        )
        started = datetime.fromtimestamp(since, UTC)
        anomaly = Anomaly(
            **_where(device),
            anomaly_id=f"{device.city}:{device.device_id}:joint:{int(since)}",
            kind=f"{named[0]}_joint",
            state=state,
            ts=when,
            detector="joint",
            severity=severity,
            score=out.score,
            evidence=evidence,
            message=f"{device.kind} {device.device_id}: its metrics no longer move together as "
            f"they usually do ({', '.join(named)} most); {state} since {started.isoformat()}",
        )
        return rank, since if rank else 0.0, row.ts, anomaly


def _due(rank: int, st: SeriesState, epoch: float) -> bool:
    """Whether a reading at ``epoch`` makes an anomaly record: a change of rank, or an
    anomaly still open ``REFRESH_S`` after it was last reported (re-reported as updated,
    so that rules waiting for persistence, a leak or a lone gas well, see it last and
    incidents show its latest value)."""
    return rank != st.rank or bool(rank and epoch - st.reported >= REFRESH_S)


def _lifecycle(
    previous: int, rank: int
) -> tuple[Literal["raised", "updated", "cleared"], Severity]:
    """The state and severity of an anomaly record when the rank goes from
    ``previous`` to ``rank``."""
    state: Literal["raised", "updated", "cleared"] = (
        "raised" if previous == 0 else ("cleared" if rank == 0 else "updated")
    )
    severity = severity_of(rank or previous)
    assert severity is not None  # noqa: S101  # a change of rank involves a non-zero rank
    return state, severity


def _where(device: Device) -> dict[str, Any]:
    """The fields of an anomaly that say which device it is and where."""
    return {
        "city": device.city,
        "device_id": device.device_id,
        "asset_id": device.asset_id,
        "grid_cell": device.grid_code,
        "lon": device.lon,
        "lat": device.lat,
    }


def offline_anomaly(
    device: Device,
    last_ts: float,
    silent_s: float,
    state: Literal["raised", "cleared"],
    now: datetime,
) -> Anomaly:
    """A device that stopped reporting (heartbeat loss), or its return."""
    last = datetime.fromtimestamp(last_ts, UTC)
    return Anomaly(
        **_where(device),
        anomaly_id=f"{device.city}:{device.device_id}:offline:{int(last_ts)}",
        kind="offline",
        state=state,
        ts=now if state == "cleared" else last,
        detector="heartbeat",
        severity=Severity.BLUE,
        score=1.0,
        message=(
            f"{device.kind} {device.device_id} silent for {silent_s / 60:.1f} min since "
            f"{last.isoformat()}"
            if state == "raised"
            else f"{device.kind} {device.device_id} reporting again since {now.isoformat()}"
        ),
    )


_PRIORITY = {1: Severity.RED, 2: Severity.ORANGE, 3: Severity.YELLOW, 4: Severity.BLUE}


def video_anomaly(event: VideoEvent, camera: Device) -> Anomaly:
    """A camera's video-analytics event as an anomaly of the camera's place (GB/T 28181
    alarm priority 1-4 as severity red-blue)."""
    return Anomaly(
        anomaly_id=f"{event.city}:{event.camera_id}:{event.event_type.value}:"
        f"{int(event.ts.timestamp())}",
        city=event.city,
        kind=f"video_{event.event_type.value}",
        state="raised",
        camera_id=event.camera_id,
        asset_id=camera.asset_id,
        grid_cell=camera.grid_code,
        lon=event.lon,
        lat=event.lat,
        ts=event.ts,
        detector="video",
        severity=_PRIORITY[event.priority],
        score=event.confidence,
        message=event.description or event.event_type.value,
        pictures=event.pictures or ((event.snapshot_url,) if event.snapshot_url else ()),
    )


def _anomaly(
    device: Device,
    metric: str,
    ts: datetime,
    value: float,
    unit: str,
    score: float,
    flags: list[str],
    rank: int,
    previous: int,
    since: float,
) -> Anomaly:
    state, severity = _lifecycle(previous, rank)
    started = datetime.fromtimestamp(since, UTC)
    return Anomaly(
        **_where(device),
        anomaly_id=f"{device.city}:{device.device_id}:{metric}:{int(since)}",
        kind=f"{metric}_{flags[0]}" if flags else f"{metric}_anomaly",
        state=state,
        ts=ts,
        detector=",".join(flags) or "recovered",
        severity=severity,
        score=score,
        evidence=(
            Evidence(device_id=device.device_id, metric=metric, value=value, unit=unit, ts=ts),
        ),
        message=f"{metric} {value:g} {unit} on {device.kind} {device.device_id}; "
        f"{state} since {started.isoformat()}",
    )
