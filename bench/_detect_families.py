"""Detection quality on the signal families of :mod:`simulators.families`, for the
platform's default detector of a signal without fixed limits and for the alternatives it
is measured against, with the microseconds each spends per reading on one core.

Each detector sees each series reading by reading, through the same scalar path the
stream worker uses; the time is that of the stepping alone.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from lifeline.detect.rules import defaults_for
from lifeline.detect.series import SeriesDetector
from simulators.families import FAMILIES, Family, Judged, judge

#: targets of the adaptive baseline (a benchmark reports them; it does not assert)
TARGET_RECALL = 0.95
TARGET_FALSE_PER_1K = 0.5
TARGET_TTD = 2.0  # intervals, for steps and spikes


class Stepper(Protocol):
    def __call__(self, t: float, x: float) -> bool: ...


def baseline() -> Stepper:
    """The platform's default for a metric without fixed limits: the adaptive baseline
    and the sensor-fault checks, as the worker runs them."""
    det = SeriesDetector(defaults_for("generic", "value"))
    state = det.init()

    def step(t: float, x: float) -> bool:
        nonlocal state
        state, (_score, rank, _flags) = det.step(state, t, x)
        return rank > 0

    return step


def rolling_z(window: int = 60, limit: float = 5.0) -> Stepper:
    """A rolling z-score: the last ``window`` readings' mean and deviation."""
    held: deque[float] = deque()
    total = squares = 0.0

    def step(t: float, x: float) -> bool:
        nonlocal total, squares
        raised = False
        if len(held) >= window // 2:
            mean = total / len(held)
            var = max(squares / len(held) - mean * mean, 1e-12)
            raised = abs(x - mean) >= limit * var**0.5
        held.append(x)
        total += x
        squares += x * x
        if len(held) > window:
            old = held.popleft()
            total -= old
            squares -= old * old
        return raised

    return step


def river(kind: str) -> Stepper:
    """A drift detector of river (ADWIN or Page-Hinkley, their defaults) on the raw
    readings: a detected drift is an alarm on that reading."""
    from river import drift

    det = drift.ADWIN() if kind == "adwin" else drift.PageHinkley()  # type: ignore[no-untyped-call]

    def step(t: float, x: float) -> bool:
        det.update(x)  # type: ignore[no-untyped-call]
        return bool(det.drift_detected)

    return step


DETECTORS: dict[str, Callable[[], Stepper]] = {
    "baseline": baseline,
    "rolling_z": rolling_z,
    "river_adwin": lambda: river("adwin"),
    "river_page_hinkley": lambda: river("page_hinkley"),
}


def _river_available() -> bool:
    try:
        import river  # noqa: F401
    except ImportError:
        return False
    return True


def quality(
    seed: int, series_per_family: int = 12, days: float = 14.0, detectors: list[str] | None = None
) -> dict[str, Any]:
    """Per detector and family: events, recall, false-alarm episodes per 1,000 normal
    rows, repeats, median time to detect (intervals) and µs per reading."""
    names = detectors or [n for n in DETECTORS if _river_available() or not n.startswith("river")]
    rng = np.random.default_rng(seed)
    families: list[Family] = []
    bar = tqdm(total=len(FAMILIES) * series_per_family, desc="families", unit="series")
    for make in FAMILIES.values():
        for _ in range(series_per_family):
            families.append(make(rng, days))
            bar.update()
    bar.close()
    out: dict[str, Any] = {}
    bar = tqdm(total=len(names) * len(families), desc="detect quality", unit="series")
    for name in names:
        judged: dict[str, list[Judged]] = {}
        elapsed, rows = 0.0, 0
        for fam in families:
            step = DETECTORS[name]()
            raised = np.zeros(fam.values.size, bool)
            ts, values = fam.ts.tolist(), fam.values.tolist()
            t0 = time.perf_counter()
            for i, (t, x) in enumerate(zip(ts, values, strict=True)):
                raised[i] = step(t, x)
            elapsed += time.perf_counter() - t0
            rows += len(values)
            judged.setdefault(fam.name, []).append(judge(raised, fam))
            bar.update()
        out[name] = {
            "us_per_reading": round(1e6 * elapsed / rows, 2),
            "families": {fam: _summary(js) for fam, js in judged.items()},
        }
    bar.close()
    return out


def _summary(js: list[Judged]) -> dict[str, Any]:
    events = sum(j.events for j in js)
    found = [t for j in js for t in j.found]
    normal = sum(j.normal_rows for j in js)
    false = sum(j.false_alarms for j in js)
    return {
        "events": events,
        "recall": round(len(found) / events, 3) if events else None,
        "false_per_1k": round(1000 * false / normal, 3) if normal else None,
        "repeats": sum(j.repeats for j in js),
        "median_ttd": float(statistics.median(found)) if found else None,
    }


def meets_targets(families: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Per family, whether the targets of the adaptive baseline are met."""
    met = {}
    for fam, s in families.items():
        ok = s["false_per_1k"] is not None and s["false_per_1k"] <= TARGET_FALSE_PER_1K
        if s["events"]:
            ok = ok and s["recall"] is not None and s["recall"] >= TARGET_RECALL
        if fam in ("steps", "spikes"):
            ok = ok and s["median_ttd"] is not None and s["median_ttd"] <= TARGET_TTD
        met[fam] = ok
    return met
