"""Signal families for judging the adaptive baseline: weeks of a daily cycle with noise,
and on top of it one kind of event per family, with the rows each event covers.

Every series is drawn from the generator it is given, so a seed reproduces a run and a
new seed varies it: the reporting interval (1, 5 or 15 minutes), the level, the daily
amplitude (5-20 noise deviations), the shape of the day (a morning and an evening peak,
and for half the series a later, flatter weekend), outages of a few hours, and the
events' sizes and times.

An event's window is where an alarm belongs: a spike's one row, a dropout, a stuck
stretch or a wider spread for as long as it lasts, a step's first hour and a drift's
ramp plus an hour. Alarms elsewhere are false alarms; the first day is the detector's
learning time and is not judged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.scenarios import F64

Bool = npt.NDArray[np.bool_]

DAY = 86400.0
#: rows after a lasting change (step, drift) in which its alarm belongs
AFTER_CHANGE_S = 3600.0


@dataclass(frozen=True)
class Family:
    name: str
    ts: F64
    values: F64
    #: (start row, end row exclusive) of each event
    events: tuple[tuple[int, int], ...]
    #: rows before this one are the detector's learning time
    judged_from: int
    interval_s: float
    #: the noise deviation and daily amplitude the series was drawn with
    sigma: float
    amplitude: float


def _day_shape(hours: F64, weekend: Bool, weekly: bool) -> F64:
    """A demand-like day: morning and evening peaks, a night trough; with ``weekly``,
    weekends wake later and flatter (the same night, so no jump at midnight)."""

    def around(centre: float | F64, width: float) -> F64:
        d = (hours - centre + 12.0) % 24.0 - 12.0  # hours from the centre, across midnight
        return np.asarray(np.exp(-0.5 * (d / width) ** 2))

    late = weekend if weekly else np.zeros_like(weekend)
    morning = np.where(late, 0.6 * around(10.5, 2.0), around(8.0, 1.5))
    return morning + 0.8 * around(19.0, 2.0) - 0.6 * around(3.0, 2.0)


@dataclass(frozen=True)
class _Base:
    ts: F64
    values: F64
    interval_s: float
    sigma: float
    amplitude: float
    level: float
    judged_from: int


def _base(rng: np.random.Generator, days: float) -> _Base:
    interval = float(rng.choice([60.0, 300.0, 900.0]))
    n = int(days * DAY / interval)
    start = 1_780_000_000.0 // DAY * DAY - 8 * 3600  # a local midnight (UTC+8)
    ts: F64 = start + np.arange(n, dtype=np.float64) * interval
    local = ts + 8 * 3600
    hours = np.asarray((local % DAY) / 3600.0, dtype=np.float64)
    weekend = ((local // DAY).astype(np.int64) + 3) % 7 >= 5
    sigma = float(rng.uniform(0.5, 2.0))
    amplitude = sigma * float(rng.uniform(5.0, 20.0))
    level = float(rng.uniform(20.0, 200.0))
    weekly = bool(rng.random() < 0.5)
    values: F64 = level + amplitude * _day_shape(hours, weekend, weekly) + rng.normal(0, sigma, n)
    return _Base(ts, values, interval, sigma, amplitude, level, int(DAY / interval))


def _drop_outages(
    rng: np.random.Generator, b: _Base, values: F64, events: list[tuple[int, int]]
) -> tuple[F64, F64, tuple[tuple[int, int], ...], int]:
    """Cut one or two outages of 2-6 hours out of the normal stretches; events and the
    learning time are renumbered to the rows that remain."""
    keep = np.ones(values.size, bool)
    for _ in range(int(rng.integers(1, 3))):
        length = int(rng.uniform(2, 6) * 3600 / b.interval_s)
        start = int(rng.integers(b.judged_from, values.size - length))
        if any(start < e + length and start + length > s for s, e in events):
            continue
        keep[start : start + length] = False
    index = np.cumsum(keep) - 1
    renumbered = tuple((int(index[s]), int(index[e - 1]) + 1) for s, e in events)
    return b.ts[keep], values[keep], renumbered, int(index[b.judged_from])


def _places(rng: np.random.Generator, b: _Base, count: int, room: int) -> list[int]:
    """``count`` event starts at least ``room`` rows apart, after the learning time."""
    n = b.values.size
    starts: list[int] = []
    for _ in range(50 * count):
        if len(starts) == count:
            break
        s = int(rng.integers(b.judged_from + room, n - room))
        if all(abs(s - o) >= room for o in starts):
            starts.append(s)
    return sorted(starts)


def daily(rng: np.random.Generator, days: float) -> Family:
    """Normal days only, with outages: nothing should alarm."""
    b = _base(rng, days)
    ts, values, events, judged = _drop_outages(rng, b, b.values.copy(), [])
    return Family("daily", ts, values, events, judged, b.interval_s, b.sigma, b.amplitude)


def steps(rng: np.random.Generator, days: float) -> Family:
    """Lasting steps up or down of 1-3 daily amplitudes."""
    b = _base(rng, days)
    v = b.values.copy()
    after = int(AFTER_CHANGE_S / b.interval_s)
    events = []
    for s in _places(rng, b, 2, int(DAY / b.interval_s)):
        v[s:] += float(rng.choice([-1, 1])) * float(rng.uniform(1.0, 3.0)) * b.amplitude
        events.append((s, s + after))
    return _finish("steps", rng, b, v, events)


def drifts(rng: np.random.Generator, days: float) -> Family:
    """Slow drifts of 1-3 daily amplitudes over 6-24 hours, then a lasting new level."""
    b = _base(rng, days)
    v = b.values.copy()
    after = int(AFTER_CHANGE_S / b.interval_s)
    events = []
    for s in _places(rng, b, 2, int(2 * DAY / b.interval_s)):
        length = int(rng.uniform(6, 24) * 3600 / b.interval_s)
        total = float(rng.choice([-1, 1])) * float(rng.uniform(1.0, 3.0)) * b.amplitude
        ramp = np.clip((np.arange(v.size - s) + 1) / length, 0.0, 1.0) * total
        v[s:] += ramp
        events.append((s, min(v.size, s + length + after)))
    return _finish("drifts", rng, b, v, events)


def spread(rng: np.random.Generator, days: float) -> Family:
    """The noise 3-5 times wider for 1-6 hours (a loose mount, a failing sensor)."""
    b = _base(rng, days)
    v = b.values.copy()
    events = []
    for s in _places(rng, b, 2, max(100, int(DAY / b.interval_s))):
        length = max(12, int(rng.uniform(1, 6) * 3600 / b.interval_s))
        factor = float(rng.uniform(3.0, 5.0))
        v[s : s + length] += rng.normal(0, b.sigma * np.sqrt(factor**2 - 1), length)
        events.append((s, s + length))
    return _finish("variance", rng, b, v, events)


def spikes(rng: np.random.Generator, days: float) -> Family:
    """Isolated one-reading spikes of 8-20 noise deviations, either way."""
    b = _base(rng, days)
    v = b.values.copy()
    events = []
    for s in _places(rng, b, 5, int(0.5 * DAY / b.interval_s)):
        v[s] += float(rng.choice([-1, 1])) * float(rng.uniform(8.0, 20.0)) * b.sigma
        events.append((s, s + 1))
    return _finish("spikes", rng, b, v, events)


def dropouts(rng: np.random.Generator, days: float) -> Family:
    """The reading falls to zero for 3-60 readings (power or signal lost), then back."""
    b = _base(rng, days)
    v = b.values.copy()
    events = []
    for s in _places(rng, b, 3, max(100, int(0.5 * DAY / b.interval_s))):
        length = int(rng.integers(3, 61))
        v[s : s + length] = 0.0
        events.append((s, s + length))
    return _finish("dropouts", rng, b, v, events)


def stuck(rng: np.random.Generator, days: float) -> Family:
    """The sensor repeats its last reading for 30-300 readings."""
    b = _base(rng, days)
    v = np.round(b.values, 3)
    events = []
    for s in _places(rng, b, 3, max(400, int(0.5 * DAY / b.interval_s))):
        length = int(rng.integers(30, 301))
        v[s : s + length] = v[s - 1]
        events.append((s, s + length))
    return _finish("stuck", rng, b, v, events)


def random_walk(rng: np.random.Generator, days: float) -> Family:
    """Demand whose level wanders as a random walk (normal), with lasting steps of 2-3
    daily amplitudes on top."""
    b = _base(rng, days)
    per_row = b.sigma * 0.05 * np.sqrt(b.interval_s / 60.0)
    walk = np.cumsum(rng.normal(0, per_row, b.values.size))
    v = b.values + walk
    after = int(AFTER_CHANGE_S / b.interval_s)
    events = []
    for s in _places(rng, b, 2, int(DAY / b.interval_s)):
        v[s:] += float(rng.choice([-1, 1])) * float(rng.uniform(2.0, 3.0)) * b.amplitude
        events.append((s, s + after))
    return _finish("random_walk", rng, b, v, events)


def _finish(
    name: str, rng: np.random.Generator, b: _Base, v: F64, events: list[tuple[int, int]]
) -> Family:
    clipped = [(s, min(e, v.size)) for s, e in events]
    ts, values, renumbered, judged = _drop_outages(rng, b, v, clipped)
    return Family(name, ts, values, renumbered, judged, b.interval_s, b.sigma, b.amplitude)


FAMILIES: dict[str, Callable[[np.random.Generator, float], Family]] = {
    "daily": daily,
    "steps": steps,
    "drifts": drifts,
    "variance": spread,
    "spikes": spikes,
    "dropouts": dropouts,
    "stuck": stuck,
    "random_walk": random_walk,
}


#: alarms starting this many rows after an event's window still belong to it
GRACE = 5


@dataclass(frozen=True)
class Judged:
    """How a detector's alarms on one series compare with its events."""

    events: int
    #: time to detect, in reporting intervals, of each event found
    found: tuple[int, ...]
    false_alarms: int
    #: further alarm episodes within an event that already had one
    repeats: int
    normal_rows: int


def episodes(raised: np.ndarray) -> list[tuple[int, int]]:
    """Runs of raised rows as (first row, row after the last)."""
    padded = np.concatenate([[False], raised.astype(bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def judge(raised: np.ndarray, family: Family) -> Judged:
    """Each alarm episode after the learning time is the detection of the first event
    whose window (plus :data:`GRACE` rows) it overlaps, a repeat if that event was
    already found, or else a false alarm. Normal rows are those after the learning
    time outside every event's window and grace."""
    n = raised.size
    normal = np.ones(n, bool)
    normal[: family.judged_from] = False
    for s, e in family.events:
        normal[s : min(n, e + GRACE)] = False
    found: dict[int, int] = {}
    false_alarms = repeats = 0
    for a0, a1 in episodes(raised):
        if a1 <= family.judged_from:
            continue
        hit = [j for j, (s, e) in enumerate(family.events) if a0 < e + GRACE and a1 > s]
        if not hit:
            false_alarms += 1
        elif hit[0] in found:
            repeats += 1
        else:
            found[hit[0]] = max(0, a0 - family.events[hit[0]][0])
    return Judged(
        len(family.events), tuple(found.values()), false_alarms, repeats, int(normal.sum())
    )
