"""Every scenario the simulator injects into the demo city is found, by the detection and
correlation code the worker runs, as exactly one incident of the right type, place and
severity, and nothing is found where nothing was injected — in-process, tick by tick,
without the services (the end-to-end test does the same over the real pipeline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from geo.grid import GridIndex
from lifeline.devices import Device
from lifeline.incidents import PlaceState
from lifeline.incidents import fold as correlate
from lifeline.kinds import METRIC_UNITS
from lifeline.records import Anomaly, Incident, VideoEvent
from simulators.city import build_city
from simulators.demo_city import demo_devices
from simulators.live import SimDevice, Simulation, plan
from simulators.names import SCENARIOS
from simulators.score import score
from streams.detection import DetectionFold, SeriesState, offline_anomaly, video_anomaly

CITY = "320100"
START = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
OFFLINE_AFTER = timedelta(minutes=5)


@dataclass
class Platform:
    """The worker's folds over one city, with the liveness rule on simulated time."""

    devices: dict[str, Device]
    fold: DetectionFold = field(default_factory=DetectionFold)
    series: dict[tuple[str, str], SeriesState] = field(default_factory=dict)
    places: dict[str, PlaceState] = field(default_factory=dict)
    incidents: dict[str, Incident] = field(default_factory=dict)
    last_seen: dict[str, datetime] = field(default_factory=dict)
    offline: dict[str, datetime] = field(default_factory=dict)

    def anomaly(self, a: Anomaly) -> None:
        where = a.grid_cell or a.asset_id or a.device_id or a.anomaly_id
        key = f"{a.city}:{where}"
        device = self.devices.get(a.device_id or "")
        state, out = correlate(
            self.places.get(key, PlaceState()), a, device.kind if device else None
        )
        self.places[key] = state
        for incident in out:
            self.incidents[incident.incident_id] = incident

    def reading(self, device: Device, t: datetime, values: dict[str, float]) -> None:
        went = self.offline.pop(device.device_id, None)
        if went is not None:
            self.anomaly(offline_anomaly(device, went.timestamp(), 0.0, "cleared", t))
        self.last_seen[device.device_id] = t
        for metric, value in values.items():
            key = (device.device_id, metric)
            state, a = self.fold.step(
                device, metric, t, value, str(METRIC_UNITS[metric]), self.series.get(key)
            )
            self.series[key] = state
            if a is not None:
                self.anomaly(a)

    def liveness(self, now: datetime) -> None:
        for device_id, seen in self.last_seen.items():
            if device_id not in self.offline and now - seen > OFFLINE_AFTER:
                self.offline[device_id] = seen
                device = self.devices[device_id]
                self.anomaly(
                    offline_anomaly(
                        device, seen.timestamp(), (now - seen).total_seconds(), "raised", now
                    )
                )


def demo_city() -> tuple[list[SimDevice], dict[str, Device]]:
    layers = build_city(county="320102", blocks=3)
    rows = demo_devices(layers, CITY)
    grid = GridIndex.build(layers.grid)
    codes = grid.cell_codes([r[2] for r in rows], [r[3] for r in rows])
    sims, devices = [], {}
    for (device_id, kind, lon, lat, asset, owner), code in zip(rows, codes, strict=True):
        sims.append(SimDevice(device_id, kind, lon, lat, str(code) or None, asset or None))
        camera = kind == "camera"
        devices[device_id] = Device(
            city=CITY,
            device_id=device_id,
            family="cameras" if camera else "sensors",
            kind=kind,
            metrics={} if camera else {m: str(METRIC_UNITS[m]) for m in sims[-1].metrics},
            asset_id=asset or None,
            owner_dept=owner,
            lon=lon,
            lat=lat,
            grid_code=str(code) or None,
        )
    return sims, devices


def run(
    names: list[str],
    duration: timedelta,
    seed: int,
    kinds: tuple[str, ...] = (),
    step: timedelta = timedelta(minutes=1),
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Play ``names`` on the demo city (only its ``kinds`` of devices, if given)."""
    sims, devices = demo_city()
    sims = [d for d in sims if d.kind in kinds] if kinds else sims
    planned = plan(sims, names, START, duration, np.random.default_rng(seed))
    sim = Simulation(sims, planned, seed=seed)
    platform = Platform(devices)
    t = START
    while t < START + duration + timedelta(minutes=20):  # and the aftermath
        for dev, values in sim.readings_at(t):
            platform.reading(devices[dev.device_id], t, values)
        for camera, event, priority, confidence, at in sim.camera_events_at(t, step):
            cam = devices[camera]
            video = VideoEvent(
                city=CITY,
                camera_id=camera,
                event_type=event,
                ts=at,
                confidence=confidence,
                lon=cam.lon,
                lat=cam.lat,
                priority=priority,
            )
            platform.anomaly(video_anomaly(video, cam))
        platform.liveness(t)
        t += step
    truth = [s.truth() for s in planned]
    found = [i.model_dump(mode="json") for i in platform.incidents.values()]
    return truth, score(truth, found)


@pytest.mark.parametrize("seed", [3, 6, 7, 9])
def test_every_scenario_is_one_incident_of_its_type_place_and_severity(seed: int) -> None:
    truth, result = run([*SCENARIOS[:-2], "device_offline"], timedelta(minutes=60), seed)
    assert len(truth) == len(SCENARIOS) - 1
    assert result["missed"] == [], result
    assert result["false_positives"] == [], result
    assert result["severity_mismatches"] == [], result


def test_a_background_leak_is_one_water_leak_after_its_first_night() -> None:
    """Five days of the district meters at five-minute intervals; a leak from the third
    midnight on is found when its first night closes, once, and nothing else is."""
    truth, result = run(
        ["background_leak"],
        timedelta(days=5),
        seed=4,
        kinds=("water_flow",),
        step=timedelta(minutes=5),
    )
    assert [t["type"] for t in truth] == ["water_leak"]
    assert result["missed"] == [], result
    assert result["false_positives"] == [], result
    assert result["severity_mismatches"] == [], result
    ttd = result["per_type"]["water_leak"]["median_ttd_s"]
    assert ttd is not None
    assert ttd <= 30 * 3600
