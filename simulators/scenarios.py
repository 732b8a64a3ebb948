"""Labelled series for detector evaluation: normal behaviour per sensor kind, with injected
incidents whose start and end are the ground truth.

Normal behaviour carries what real series carry: noise, daily cycles, and one-sample
glitches (a whiff of sewer biogas in a gas well) that must not alarm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
INTERVAL_S = 60.0


@dataclass(frozen=True)
class Labelled:
    kind: str
    metric: str
    ts: F64
    values: F64
    #: (start index, end index exclusive) of each injected incident.
    truth: tuple[tuple[int, int], ...]


def _daily(ts: F64, amplitude: float, phase: float = 0.0) -> F64:
    return amplitude * np.sin(2 * np.pi * (ts / 86400.0) + phase)


def generate(kind: str, n: int, rng: np.random.Generator, inject: bool) -> Labelled:
    """One series of ``n`` samples at one-minute intervals; with ``inject``, one incident."""
    ts = np.arange(n, dtype=np.float64) * INTERVAL_S + 1.78e9
    start = int(rng.integers(n // 3, n - n // 4)) if inject else -1
    length = int(rng.integers(20, 60))
    end = min(start + length, n)
    during = np.zeros(n, bool)
    if inject:
        during[start:end] = True
    if kind == "gas_well":
        metric = "ch4"
        v = np.abs(rng.normal(0.5, 0.3, n))
        glitch = rng.random(n) < 0.002
        v[glitch] += rng.uniform(15, 30, int(glitch.sum()))  # single-sample biogas whiffs
        v[during] = rng.uniform(30, 60) + rng.normal(0, 2, int(during.sum()))
    elif kind == "water_pressure":
        metric = "pressure"
        v = 0.32 + _daily(ts, 0.02) + rng.normal(0, 0.002, n)
        v[during] -= rng.uniform(0.05, 0.08)
    elif kind == "road_ponding":
        metric = "depth"
        v = np.abs(rng.normal(0.2, 0.3, n))
        v[during] = rng.uniform(18, 35) + rng.normal(0, 1, int(during.sum()))
    elif kind == "tunnel_env":
        metric = "o2"
        v = 20.9 + rng.normal(0, 0.05, n)
        v[during] = rng.uniform(17.5, 19.0) + rng.normal(0, 0.05, int(during.sum()))
    elif kind == "manhole_cover":
        metric = "tilt"
        v = 0.5 + rng.normal(0, 0.1, n)
        v[during] = rng.uniform(12, 30)
    elif kind == "drain_level":
        metric = "level"
        v = 1.5 + _daily(ts, 0.2) + rng.normal(0, 0.01, n)
        v[during] += rng.uniform(0.4, 0.8)
    else:
        raise ValueError(f"no scenario for kind {kind!r}")
    truth = ((start, end),) if inject else ()
    return Labelled(kind, metric, ts, np.round(v, 4).astype(np.float64), truth)


KINDS = ("gas_well", "water_pressure", "road_ponding", "tunnel_env", "manhole_cover", "drain_level")
