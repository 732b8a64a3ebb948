"""A pilot city's devices as a simulation: realistic baselines, noise, sensor glitches and
injected scenarios with their ground truth. Pure: it turns a simulated time into the
payloads each device would send; publishing is the caller's business.

Baselines: daily water demand on pressure and flow, the temperature cycle on bridges and
in tunnels, rain-free drainage near zero; noise on every metric; rare one-sample
glitches (sewer biogas in a gas well) that must not become incidents.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from lifeline.kinds import KIND_METRICS, KINDS, METRIC_UNITS, Normal
from lifeline.vocabulary import IncidentType
from simulators.names import SCENARIOS


@dataclass(frozen=True)
class SimDevice:
    device_id: str
    kind: str
    lon: float
    lat: float
    grid_code: str | None = None
    asset_id: str | None = None
    #: The push source (carrier platform) that reports it over HTTPS; None: over MQTT.
    source: str | None = None
    #: The ids its platform knows it by (CTWing: its device id and IMEI).
    platform_id: str | None = None
    imei: str | None = None

    @property
    def is_camera(self) -> bool:
        return self.kind == "camera"

    @property
    def metrics(self) -> tuple[str, ...]:
        return KIND_METRICS.get(self.kind, ())


@dataclass(frozen=True)
class Scenario:
    """An injected situation: which devices it drives, how, and when."""

    type: IncidentType
    start: datetime
    end: datetime
    #: device id → {metric: value during the scenario, or None: the device is offline}
    effects: dict[str, dict[str, float | None]]
    cells: tuple[str, ...]
    assets: tuple[str, ...]
    severity: str
    camera_event: tuple[str, str, int] | None = None  # (camera id, event type, priority)
    name: str = ""
    #: device id → how long after the start its effect begins (rain before ponding)
    onset: dict[str, timedelta] = field(default_factory=dict)
    #: device id → {metric: amount added to its normal behaviour} (a leak's extra flow)
    added: dict[str, dict[str, float]] = field(default_factory=dict)

    def truth(self) -> dict[str, Any]:
        return {
            "scenario": self.name or self.type.value,
            "type": self.type.value,
            "severity": self.severity,
            "devices": sorted(self.effects) + ([self.camera_event[0]] if self.camera_event else []),
            "assets": list(self.assets),
            "cells": list(self.cells),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }


@dataclass
class Simulation:
    devices: Sequence[SimDevice]
    scenarios: list[Scenario] = field(default_factory=list)
    seed: int = 7
    glitch_rate: float = 0.0005

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._phase = {d.device_id: float(self._rng.uniform(-0.3, 0.3)) for d in self.devices}

    def readings_at(self, t: datetime) -> list[tuple[SimDevice, dict[str, float]]]:
        """What each sensor reports at simulated time ``t`` (offline ones say nothing)."""
        active = [s for s in self.scenarios if s.start <= t < s.end]
        day = (t.hour * 3600 + t.minute * 60 + t.second) / 86400.0
        out = []
        for dev in self.devices:
            if dev.is_camera or not dev.metrics:
                continue
            overrides: dict[str, float | None] = {}
            added: dict[str, float] = {}
            for s in active:
                effect = s.effects.get(dev.device_id)
                if effect is not None and t >= s.start + s.onset.get(dev.device_id, _NOW):
                    overrides.update(effect)
                for metric, extra in s.added.get(dev.device_id, {}).items():
                    added[metric] = added.get(metric, 0.0) + extra
            if None in overrides.values():
                continue  # the device is offline
            values = {}
            for metric in dev.metrics:
                if metric in overrides:
                    value = overrides[metric]
                    assert value is not None  # noqa: S101  # offline handled above
                    values[metric] = round(value + float(self._rng.normal(0, abs(value) * 0.01)), 4)
                    continue
                normal = normal_of(dev.kind, metric)
                phase = day - 0.25 + self._phase[dev.device_id]
                cycle = normal.amplitude * math.sin(2 * math.pi * phase)
                value = normal.mean + cycle + added.get(metric, 0.0)
                value += float(self._rng.normal(0, normal.sd))
                if dev.kind == "gas_well" and self._rng.random() < self.glitch_rate:
                    value += float(self._rng.uniform(12, 20))  # one-sample biogas whiff
                values[metric] = round(max(normal.floor, value), 4)
            out.append((dev, values))
        return out

    def camera_events_at(
        self, t: datetime, step: timedelta
    ) -> list[tuple[str, str, int, float, datetime]]:
        """(camera id, event type, priority, confidence, time) of events in [t, t + step)."""
        return [
            (*s.camera_event, 0.93, s.start)
            for s in self.scenarios
            if s.camera_event is not None and t <= s.start < t + step
        ]


_NOW = timedelta(0)
#: scenarios on series watched by the adaptive baseline, which needs 30 readings of
#: warm-up in a freshly simulated city: they are played last
_NEED_BASELINE = ("pipe_burst", "heating_leak", "bridge_overload")


def unit_of(metric: str) -> str:
    return str(METRIC_UNITS[metric])


_FLAT = Normal(0.0, floor=-1e9)


def normal_of(kind: str, metric: str) -> Normal:
    """How the catalogue says ``kind``'s ``metric`` behaves when nothing happens."""
    spec = KINDS.get(kind)
    found = spec.metric(metric) if spec else None
    return found.normal if found else _FLAT


# --- scenario building ----------------------------------------------------------------


def _at_underpass(device: SimDevice) -> bool:
    return (device.asset_id or "").upper().startswith("UP")


def _by_kind(devices: Iterable[SimDevice], kind: str) -> list[SimDevice]:
    return [d for d in devices if d.kind == kind and d.grid_code]


def plan(
    devices: Sequence[SimDevice],
    names: Sequence[str],
    start: datetime,
    duration: timedelta,
    rng: np.random.Generator,
) -> list[Scenario]:
    """Scenarios of the named kinds, spread over the window, each on its own devices and
    grid cells so that every one is a separate incident. Scenarios on series without
    fixed limits (adaptive baseline, 30 readings of warm-up) come last."""
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    names = sorted(names, key=lambda n: n in _NEED_BASELINE)
    used_cells: set[str] = set()
    out: list[Scenario] = []
    slot = duration / (len(names) + 1)
    length = min(timedelta(minutes=15), slot * 2)

    def pick(
        kind: str,
        n: int = 1,
        same_cell: bool = False,
        where: Callable[[SimDevice], bool] = lambda _d: True,
    ) -> list[SimDevice]:
        pool = [d for d in _by_kind(devices, kind) if d.grid_code not in used_cells and where(d)]
        if same_cell:
            cells: dict[str, list[SimDevice]] = {}
            for d in pool:
                cells.setdefault(d.grid_code or "", []).append(d)
            groups = [g for g in cells.values() if len(g) >= n]
            if not groups:
                raise ValueError(f"no grid cell has {n} {kind} devices for this scenario")
            chosen = groups[int(rng.integers(len(groups)))][:n]
        else:
            if len(pool) < n:
                raise ValueError(f"not enough {kind} devices for this scenario")
            idx = rng.choice(len(pool), size=n, replace=False)
            chosen = [pool[int(i)] for i in idx]
        used_cells.update(d.grid_code or "" for d in chosen)
        return chosen

    def pick_together(
        *kinds: str, where: Callable[[SimDevice], bool] = lambda _d: True
    ) -> list[SimDevice]:
        """One device of each kind, all in one grid cell not used yet."""
        cells: dict[str, dict[str, SimDevice]] = {}
        for kind in kinds:
            for d in _by_kind(devices, kind):
                if d.grid_code not in used_cells and where(d):
                    cells.setdefault(d.grid_code or "", {}).setdefault(kind, d)
        groups = sorted(c for c, found in cells.items() if len(found) == len(kinds))
        if not groups:
            raise ValueError(f"no grid cell has {' and '.join(kinds)} for this scenario")
        cell = groups[int(rng.integers(len(groups)))]
        used_cells.add(cell)
        return [cells[cell][k] for k in kinds]

    for i, name in enumerate(names):
        t0 = (start + slot * (i + 0.5)).replace(microsecond=0)
        t1 = t0 + length
        if name == "gas_leak":
            wells = pick("gas_well", 2, same_cell=True)
            effects: dict[str, dict[str, float | None]] = {
                w.device_id: {"ch4": 30.0 + 4 * j} for j, w in enumerate(wells)
            }
            out.append(_scenario(IncidentType.GAS_LEAK, t0, t1, effects, wells, "orange", name))
        elif name == "pipe_burst":
            # The district inlet: pressure falls by half as the inflow doubles.
            gauge, meter = pick_together("water_pressure", "water_flow")
            effects = {gauge.device_id: {"pressure": 0.16}, meter.device_id: {"flow": 240.0}}
            out.append(
                _scenario(IncidentType.PIPE_BURST, t0, t1, effects, [gauge, meter], "orange", name)
            )
        elif name == "heating_leak":
            # Make-up water ten times the usual while the pressure falls.
            (station,) = pick("heat_network")
            effects = {station.device_id: {"makeup_flow": 10.0, "pressure": 0.45}}
            out.append(
                _scenario(IncidentType.HEATING_LEAK, t0, t1, effects, [station], "orange", name)
            )
        elif name == "rainstorm_waterlogging":
            # A cloudburst (3 mm a minute, 180 mm/h); the low point floods once some 50 mm
            # have fallen (an orange rainstorm signal: 50 mm within 3 h).
            gauge, ponding = pick_together(
                "rain_gauge", "road_ponding", where=lambda d: not _at_underpass(d)
            )
            effects = {gauge.device_id: {"rainfall": 3.0}, ponding.device_id: {"depth": 28.0}}
            scenario = _scenario(
                IncidentType.WATERLOGGING,
                t0,
                t0 + max(length, timedelta(minutes=30)),
                effects,
                [gauge, ponding],
                "orange",
                name,
            )
            out.append(replace(scenario, onset={ponding.device_id: timedelta(minutes=17)}))
        elif name == "background_leak":
            # 25 m3/h lost day and night from the next midnight on: the minimum night
            # flow of earlier nights is the reference, so it needs days of history.
            if duration < timedelta(days=4):
                raise ValueError("background_leak needs a window of 4 days or more")
            (meter,) = pick("water_flow")
            midnight = (start + max(slot * (i + 0.5), timedelta(days=2))).replace(
                hour=0, minute=0, second=0, microsecond=0
            ) + timedelta(days=1)
            leak = _scenario(
                IncidentType.WATER_LEAK, midnight, start + duration, {}, [meter], "yellow", name
            )
            out.append(replace(leak, added={meter.device_id: {"flow": 25.0}}))
        elif name in _ONE_DEVICE:
            kind, itype, metric, value = _ONE_DEVICE[name]
            where = _at_underpass if name == "underpass_flooding" else (lambda _d: True)
            (dev,) = pick(kind, where=where)
            effects = {dev.device_id: {metric: value}}
            out.append(_scenario(itype, t0, t1, effects, [dev], "orange", name))
        elif name in ("smoke_fire", "missing_cover"):
            (cam,) = pick("camera")
            event = "smoke_fire" if name == "smoke_fire" else "manhole_cover_missing"
            itype = IncidentType.FIRE if name == "smoke_fire" else IncidentType.MANHOLE_COVER
            out.append(
                Scenario(
                    itype,
                    t0,
                    t0 + timedelta(minutes=1),
                    {},
                    (cam.grid_code or "",),
                    (),
                    "orange",
                    (cam.device_id, event, 2),
                    name,
                )
            )
        elif name == "device_offline":
            (dev,) = pick("drain_level")
            metric = dev.metrics[0]
            out.append(
                _scenario(
                    IncidentType.DEVICE_OFFLINE,
                    t0,
                    t1 + length,
                    {dev.device_id: {metric: None}},
                    [dev],
                    "blue",
                    name,
                )
            )
    return out


#: Scenarios on one device: its kind, the incident, and the value its metric jumps to.
_ONE_DEVICE: dict[str, tuple[str, IncidentType, str, float]] = {
    "underpass_flooding": ("road_ponding", IncidentType.UNDERPASS_FLOODING, "depth", 32.0),
    "manhole_cover": ("manhole_cover", IncidentType.MANHOLE_COVER, "tilt", 14.0),
    "tunnel_gas": ("tunnel_env", IncidentType.TUNNEL_HAZARD, "h2s", 14.0),
    "bridge_overload": ("bridge_deflection", IncidentType.BRIDGE_OVERLOAD, "deflection", 60.0),
}


def _scenario(
    itype: IncidentType,
    t0: datetime,
    t1: datetime,
    effects: dict[str, dict[str, float | None]],
    devices: Sequence[SimDevice],
    severity: str,
    name: str,
) -> Scenario:
    return Scenario(
        itype,
        t0,
        t1,
        effects,
        tuple(sorted({d.grid_code or "" for d in devices})),
        tuple(sorted({d.asset_id for d in devices if d.asset_id})),
        severity,
        None,
        name,
    )
