"""The detection fold for one reading of one series, independent of Faust.

Per series (city, device, metric) the state is the detectors' state plus what the
last reading left open: the rank in force and when the current anomaly began. A reading
yields at most one anomaly record: raised, updated (severity changed) or cleared.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from lifeline.detect.detectors import severity_of
from lifeline.detect.series import SeriesDetector, SeriesOut
from lifeline.devices import Device
from lifeline.records import Anomaly, Evidence


@dataclass(frozen=True)
class SeriesState:
    detectors: tuple[Any, ...]
    rank: int = 0
    since: float = 0.0

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(raw: bytes) -> SeriesState:
        state = pickle.loads(raw)  # noqa: S301  # written only by this worker to its own table
        if not isinstance(state, SeriesState):
            raise TypeError("not a series state")
        return state


class DetectionFold:
    """Caches one :class:`SeriesDetector` per (kind, metric)."""

    def __init__(self) -> None:
        self._detectors: dict[tuple[str, str], SeriesDetector] = {}

    def detector(self, kind: str, metric: str) -> SeriesDetector:
        key = (kind, metric)
        found = self._detectors.get(key)
        if found is None:
            found = self._detectors[key] = SeriesDetector.for_metric(kind, metric)
        return found

    def step(
        self,
        device: Device,
        metric: str,
        ts: datetime,
        value: float,
        unit: str,
        state: SeriesState | None,
    ) -> tuple[SeriesState, Anomaly | None]:
        det = self.detector(device.kind, metric)
        st = state or SeriesState(det.init())
        epoch = ts.timestamp()
        inner, out = det.run(st.detectors, np.array([epoch]), np.array([value]))
        rank = int(out.rank[0])
        if rank == st.rank:
            return SeriesState(inner, st.rank, st.since), None
        since = epoch if st.rank == 0 else st.since
        anomaly = _anomaly(device, metric, ts, value, unit, out, rank, st.rank, since)
        return SeriesState(inner, rank, since if rank else 0.0), anomaly


def _anomaly(
    device: Device,
    metric: str,
    ts: datetime,
    value: float,
    unit: str,
    out: SeriesOut,
    rank: int,
    previous: int,
    since: float,
) -> Anomaly:
    state: Literal["raised", "updated", "cleared"] = (
        "raised" if previous == 0 else ("cleared" if rank == 0 else "updated")
    )
    severity = severity_of(rank or previous)
    assert severity is not None  # noqa: S101  # a change of rank involves a non-zero rank
    flags = out.row_flags(0)
    started = datetime.fromtimestamp(since, UTC)
    return Anomaly(
        anomaly_id=f"{device.city}:{device.device_id}:{metric}:{int(since)}",
        city=device.city,
        kind=f"{metric}_{flags[0]}" if flags else f"{metric}_anomaly",
        state=state,
        device_id=device.device_id,
        asset_id=device.asset_id,
        grid_cell=device.grid_code,
        lon=device.lon,
        lat=device.lat,
        ts=ts,
        detector=",".join(flags) or "recovered",
        severity=severity,
        score=float(out.score[0]),
        evidence=(
            Evidence(device_id=device.device_id, metric=metric, value=value, unit=unit, ts=ts),
        ),
        message=f"{metric} {value:g} {unit} on {device.kind} {device.device_id}; "
        f"{state} since {started.isoformat()}",
    )
