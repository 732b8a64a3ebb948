"""The detector families, vectorised over a batch of one series, each with
a scalar ``step`` for one reading that gives what ``run`` gives for a one-row batch (the
stream worker's path: a numpy call per reading costs more than the arithmetic).

Severity ranks and scores are those of :mod:`lifeline.detect.base`; the adaptive
baseline, composed of parts of its own, is :mod:`lifeline.detect.baseline`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from math import isnan
from typing import Literal, TypeVar

import numpy as np

from lifeline.detect.base import (
    I8,
    INF,
    MAX,
    Direction,
    History,
    Out,
    Step,
    rank_of,
    row_run_start,
    row_score,
    scores,
    severity_of,
)
from lifeline.detect.baseline import Baseline, BaselineState, StuckRun, StuckState
from lifeline.detect.kernels import (
    F64,
    equal_run_length,
    hold,
    previous,
    rolling_count,
    run_start,
)
from lifeline.vocabulary import Severity

__all__ = [
    "I8",
    "Accumulation",
    "Amount",
    "Baseline",
    "BaselineState",
    "Detector",
    "Faults",
    "Level",
    "Levels",
    "NightFlow",
    "Out",
    "Rate",
    "Step",
    "Stuck",
    "Sustained",
    "rank_of",
    "severity_of",
]

# -- graded thresholds with hysteresis and debounce ----------------------------------------


@dataclass(frozen=True)
class Level:
    threshold: float
    severity: Severity


@dataclass(frozen=True)
class LevelsState:
    active: tuple[int, ...]
    raise_tail: tuple[tuple[bool, ...], ...]
    clear_tail: tuple[tuple[bool, ...], ...]
    run_began: tuple[float, ...]


@dataclass(frozen=True)
class Levels:
    """Graded thresholds: raise on the way up after ``k`` of ``n`` samples beyond a level
    (and ``min_duration_s`` beyond it), clear only after ``k`` samples in a row back past
    the level minus ``hysteresis``."""

    levels: tuple[Level, ...]
    direction: Direction = "above"
    hysteresis: float = 0.0
    k: int = 2
    n: int = 3
    min_duration_s: float = 0.0
    name: str = "level"

    def history(self) -> History:
        """Fixed levels judge from the first readings: ``k`` past a level (and
        ``min_duration_s``)."""
        return History(readings=self.k, seconds=self.min_duration_s, note="debounce")

    def init(self) -> LevelsState:
        m = len(self.levels)
        return LevelsState((0,) * m, ((),) * m, ((),) * m, (float("nan"),) * m)

    def run(self, state: LevelsState, ts: F64, v: F64) -> tuple[LevelsState, Out]:
        sign = 1.0 if self.direction == "above" else -1.0
        rank = np.zeros(v.size, np.int8)
        actives, raise_tails, clear_tails, began = [], [], [], []
        for i, lvl in enumerate(self.levels):
            beyond = sign * (v - lvl.threshold) >= 0
            back = sign * (v - (lvl.threshold - sign * self.hysteresis)) < 0
            count, rtail = rolling_count(beyond, self.n, np.array(state.raise_tail[i], bool))
            back_count, ctail = rolling_count(back, self.k, np.array(state.clear_tail[i], bool))
            start, carried = run_start(beyond, ts, state.run_began[i])
            lasted = np.nan_to_num(ts - start, nan=-1.0) >= self.min_duration_s
            raise_now = beyond & (count >= self.k) & lasted
            clear_now = back_count >= self.k
            events = np.where(raise_now, 1, np.where(clear_now, 0, -1)).astype(np.int8)
            active, last = hold(events, state.active[i])
            rank = np.maximum(rank, active * np.int8(rank_of(lvl.severity)))
            actives.append(last)
            raise_tails.append(tuple(bool(b) for b in rtail))
            clear_tails.append(tuple(bool(b) for b in ctail))
            began.append(carried)
        first = self.levels[0].threshold
        closeness = (sign * v) / (sign * first) if first else np.zeros(v.size)
        new = LevelsState(tuple(actives), tuple(raise_tails), tuple(clear_tails), tuple(began))
        return new, Out(scores(rank, closeness), rank, {self.name: rank > 0})

    def step(self, state: LevelsState, t: float, x: float) -> tuple[LevelsState, Step]:
        sign = 1.0 if self.direction == "above" else -1.0
        k, n = self.k, self.n
        rank = 0
        actives, raise_tails, clear_tails, began = [], [], [], []
        for i, lvl in enumerate(self.levels):
            beyond = sign * (x - lvl.threshold) >= 0
            back = sign * (x - (lvl.threshold - sign * self.hysteresis)) < 0
            rtail = state.raise_tail[i] + (beyond,)
            ctail = state.clear_tail[i] + (back,)
            count = sum(rtail[-n:])
            back_count = sum(ctail[-k:])
            start = row_run_start(beyond, t, state.run_began[i])
            lasted = (t - start if not isnan(start) else -1.0) >= self.min_duration_s
            active = state.active[i]
            if beyond and count >= k and lasted:
                active = 1
            elif back_count >= k:
                active = 0
            rank = max(rank, active * rank_of(lvl.severity))
            actives.append(active)
            raise_tails.append(rtail[-(n - 1) :] if n > 1 else ())
            clear_tails.append(ctail[-(k - 1) :] if k > 1 else ())
            began.append(start)
        first = self.levels[0].threshold
        closeness = (sign * x) / (sign * first) if first else 0.0
        new = LevelsState(tuple(actives), tuple(raise_tails), tuple(clear_tails), tuple(began))
        return new, (row_score(rank, closeness), rank, ((self.name, rank > 0),))


# -- rate of change, sustained exceedance --------------------------------------------------


@dataclass(frozen=True)
class SeriesTail:
    ts: float = float("nan")
    value: float = float("nan")


@dataclass(frozen=True)
class Rate:
    """Change per second beyond ``max_per_s`` (``direction``: rise, fall or both)."""

    max_per_s: float
    severity: Severity
    direction: Literal["rise", "fall", "both"] = "both"
    name: str = "rate"

    def history(self) -> History:
        """Two readings make a rate."""
        return History(readings=2, note="two readings")

    def init(self) -> SeriesTail:
        return SeriesTail()

    def run(self, state: SeriesTail, ts: F64, v: F64) -> tuple[SeriesTail, Out]:
        dt = ts - previous(ts, state.ts)
        dv = v - previous(v, state.value)
        rate = np.where(dt > 0, dv / np.where(dt > 0, dt, 1.0), 0.0)
        rate = np.nan_to_num(rate)
        signed = {"rise": rate, "fall": -rate, "both": np.abs(rate)}[self.direction]
        hit = signed > self.max_per_s
        rank = np.where(hit, rank_of(self.severity), 0).astype(np.int8)
        new = SeriesTail(float(ts[-1]), float(v[-1])) if v.size else state
        return new, Out(scores(rank, signed / self.max_per_s), rank, {self.name: hit})

    def step(self, state: SeriesTail, t: float, x: float) -> tuple[SeriesTail, Step]:
        dt = t - state.ts
        rate = (x - state.value) / dt if dt > 0 else 0.0
        if isnan(rate):
            rate = 0.0
        elif rate in (INF, -INF):
            rate = MAX if rate > 0 else -MAX  # as np.nan_to_num
        signed = {"rise": rate, "fall": -rate, "both": abs(rate)}[self.direction]
        hit = signed > self.max_per_s
        rank = rank_of(self.severity) if hit else 0
        score = row_score(rank, signed / self.max_per_s)
        return SeriesTail(t, x), (score, rank, ((self.name, hit),))


@dataclass(frozen=True)
class Sustained:
    """Beyond ``limit`` without a break for at least ``duration_s``."""

    limit: float
    duration_s: float
    severity: Severity
    direction: Direction = "above"
    name: str = "sustained"

    def history(self) -> History:
        """As long as the exceedance must last."""
        return History(readings=2, seconds=self.duration_s, note="the exceedance's duration")

    def init(self) -> float:
        return float("nan")

    def run(self, state: float, ts: F64, v: F64) -> tuple[float, Out]:
        sign = 1.0 if self.direction == "above" else -1.0
        beyond = sign * (v - self.limit) > 0
        start, carried = run_start(beyond, ts, state)
        held = np.nan_to_num(ts - start, nan=-1.0)
        hit = held >= self.duration_s
        rank = np.where(hit, rank_of(self.severity), 0).astype(np.int8)
        closeness = np.where(beyond, 0.5 + 0.5 * held / max(self.duration_s, 1e-9), 0.0)
        return carried, Out(scores(rank, closeness), rank, {self.name: hit})

    def step(self, state: float, t: float, x: float) -> tuple[float, Step]:
        sign = 1.0 if self.direction == "above" else -1.0
        beyond = sign * (x - self.limit) > 0
        start = row_run_start(beyond, t, state)
        held = t - start if not isnan(start) else -1.0
        hit = held >= self.duration_s
        rank = rank_of(self.severity) if hit else 0
        closeness = 0.5 + 0.5 * held / max(self.duration_s, 1e-9) if beyond else 0.0
        return start, (row_score(rank, closeness), rank, ((self.name, hit),))


S = TypeVar("S")


def _stepwise(
    step: Callable[[S, float, float], tuple[S, Step]], name: str, state: S, ts: F64, v: F64
) -> tuple[S, Out]:
    """``run`` for detectors whose state is not worth vectorising (few, slow series):
    their scalar ``step`` row by row."""
    n = v.size
    score, rank = np.zeros(n), np.zeros(n, np.int8)
    for i in range(n):
        state, (score[i], rank[i], _flags) = step(state, float(ts[i]), float(v[i]))
    return state, Out(score, rank, {name: rank > 0})


# -- accumulation over time windows (rainfall) ---------------------------------------------


@dataclass(frozen=True)
class Amount:
    window_s: float
    amount: float
    severity: Severity


@dataclass(frozen=True)
class Accumulation:
    """The sum of the readings over trailing windows against amounts, e.g. the CMA
    rainstorm signals (50 mm in 12 h blue … 100 mm in 3 h red) on a rain gauge that
    reports the rain of each interval. Kept in ``bucket_s`` buckets, so a window's edge
    is exact to a bucket; a signal lifts when its window no longer holds the amount."""

    amounts: tuple[Amount, ...]
    bucket_s: float = 300.0
    name: str = "accumulation"

    def history(self) -> History:
        """One reading can fill a window; a window is judged as it fills."""
        return History(readings=1, note="judged as its windows fill")

    def init(self) -> tuple[tuple[float, float], ...]:
        return ()

    def run(
        self, state: tuple[tuple[float, float], ...], ts: F64, v: F64
    ) -> tuple[tuple[tuple[float, float], ...], Out]:
        return _stepwise(self.step, self.name, state, ts, v)

    def step(
        self, state: tuple[tuple[float, float], ...], t: float, x: float
    ) -> tuple[tuple[tuple[float, float], ...], Step]:
        bucket = (t // self.bucket_s) * self.bucket_s
        horizon = max(a.window_s for a in self.amounts)
        kept = [(b, s) for b, s in state if b > bucket - horizon]
        if kept and kept[-1][0] == bucket:
            kept[-1] = (bucket, kept[-1][1] + x)
        else:
            kept.append((bucket, x))
        rank, closeness = 0, 0.0
        for a in self.amounts:
            total = sum(s for b, s in kept if b > bucket - a.window_s)
            closeness = max(closeness, total / a.amount)
            if total >= a.amount:
                rank = max(rank, rank_of(a.severity))
        return tuple(kept), (row_score(rank, closeness), rank, ((self.name, rank > 0),))


# -- minimum night flow (background leaks) -------------------------------------------------


@dataclass(frozen=True)
class NightFlowState:
    night: float = float("nan")  # local day number of the night being measured
    minimum: float = float("nan")  # its lowest flow so far
    history: tuple[float, ...] = ()  # minimum night flow of earlier normal nights
    streak: int = 0  # nights in a row above the usual
    active: int = 0


@dataclass(frozen=True)
class NightFlow:
    """Background leaks: the minimum night flow (MNF, lowest flow between ``start_h``
    and ``end_h`` local time, when demand is least and leakage shows) steps up and stays
    up. A night is judged when its window closes, against the median MNF of the last
    ``nights`` normal nights (at least ``min_nights``): above by ``rise`` (relative) and
    ``min_rise`` (absolute) for ``confirm`` nights raises; the first normal night
    clears. Nights in alarm do not enter the history, so a leak never becomes the norm."""

    start_h: float = 2.0
    end_h: float = 4.0
    utc_offset_h: float = 8.0
    nights: int = 7
    min_nights: int = 2
    rise: float = 0.1
    min_rise: float = 2.0
    confirm: int = 1
    severity: Severity = Severity.YELLOW
    name: str = "night_flow"

    def history(self) -> History:
        """``min_nights`` normal nights, then the night being judged."""
        return History(
            readings=self.min_nights + 1,
            seconds=(self.min_nights + 1) * 86400.0,
            note="normal nights before a night is judged",
        )

    def init(self) -> NightFlowState:
        return NightFlowState()

    def run(self, state: NightFlowState, ts: F64, v: F64) -> tuple[NightFlowState, Out]:
        return _stepwise(self.step, self.name, state, ts, v)

    def step(self, state: NightFlowState, t: float, x: float) -> tuple[NightFlowState, Step]:
        local = t + self.utc_offset_h * 3600.0
        day, hour = local // 86400.0, (local % 86400.0) / 3600.0
        inside = self.start_h <= hour < self.end_h
        closeness = 0.0
        if not isnan(state.minimum) and (not inside or day != state.night):
            state, closeness = self._judge(state)
        if inside:
            low = x if isnan(state.minimum) or day != state.night else min(state.minimum, x)
            state = replace(state, night=day, minimum=low)
        rank = state.active
        return state, (row_score(rank, closeness), rank, ((self.name, rank > 0),))

    def _judge(self, state: NightFlowState) -> tuple[NightFlowState, float]:
        """Close the night measured in ``state``."""
        mnf, history = state.minimum, state.history
        closed = replace(state, minimum=float("nan"))
        if len(history) < self.min_nights:
            return replace(closed, history=(*history, mnf)[-self.nights :]), 0.0
        usual = float(np.median(history))
        limit = max(usual * (1.0 + self.rise), usual + self.min_rise)
        closeness = mnf / limit if limit > 0 else 0.0
        if mnf <= limit:
            normal = (*history, mnf)[-self.nights :]
            return replace(closed, history=normal, streak=0, active=0), closeness
        streak = state.streak + 1
        active = rank_of(self.severity) if streak >= self.confirm else state.active
        return replace(closed, streak=streak, active=active), closeness


# -- sensor faults (QARTOD-style) ---------------------------------------------------------


@dataclass(frozen=True)
class FaultState:
    tail: SeriesTail = SeriesTail()
    run: int = 0


@dataclass(frozen=True)
class Faults:
    """Gross range, spike, flat line and gaps: the sensor, not the city, is wrong.
    Readings out of range or flat for ``flat_fail`` raise (blue); a jump or the start of
    a flat line is flagged as suspect with a score under 0.5: noted, not raised."""

    low: float
    high: float
    spike: float | None = None
    flat_suspect: int | None = None
    flat_fail: int | None = None
    max_gap_s: float | None = None

    def history(self) -> History:
        """The range from the first reading; a flat line after ``flat_fail``."""
        return History(readings=1, note="range from the first reading")

    def init(self) -> FaultState:
        return FaultState()

    def run(self, state: FaultState, ts: F64, v: F64) -> tuple[FaultState, Out]:
        n = v.size
        out_of_range = (v < self.low) | (v > self.high)
        prev_v = previous(v, state.tail.value)
        jump = np.abs(v - prev_v)
        spike = (np.nan_to_num(jump, nan=0.0) > self.spike) if self.spike else np.zeros(n, bool)
        run, last_value, last_run = equal_run_length(v, state.tail.value, state.run)
        flat = run >= self.flat_fail if self.flat_fail else np.zeros(n, bool)
        flat_suspect = run >= self.flat_suspect if self.flat_suspect else np.zeros(n, bool)
        gap = (
            np.nan_to_num(ts - previous(ts, state.tail.ts), nan=0.0) > self.max_gap_s
            if self.max_gap_s
            else np.zeros(n, bool)
        )
        fault = out_of_range | flat
        suspect = spike | flat_suspect
        score = np.where(fault, 0.75, np.where(suspect, 0.45, 0.0))
        rank = np.where(fault, rank_of(Severity.BLUE), 0).astype(np.int8)
        new = FaultState(SeriesTail(float(ts[-1]), last_value), last_run) if n else state
        return new, Out(
            score,
            rank,
            {"range": out_of_range, "spike": spike, "flatline": flat_suspect, "gap": gap},
        )

    def step(self, state: FaultState, t: float, x: float) -> tuple[FaultState, Step]:
        out_of_range = x < self.low or x > self.high
        jump = abs(x - state.tail.value)
        spike = jump > self.spike if self.spike else False
        run = state.run + 1 if x == state.tail.value else 1
        flat = run >= self.flat_fail if self.flat_fail else False
        flat_suspect = run >= self.flat_suspect if self.flat_suspect else False
        gap_s = t - state.tail.ts
        gap = gap_s > self.max_gap_s if self.max_gap_s else False
        fault = out_of_range or flat
        score = 0.75 if fault else (0.45 if spike or flat_suspect else 0.0)
        rank = rank_of(Severity.BLUE) if fault else 0
        flags = (
            ("range", out_of_range),
            ("spike", spike),
            ("flatline", flat_suspect),
            ("gap", gap),
        )
        return FaultState(SeriesTail(t, x), run), (score, rank, flags)


# -- a stuck sensor, judged by the series' own runs --------------------------------------


_NO_RUN = StuckState()


@dataclass(frozen=True)
class StuckReadingState:
    stuck: StuckState = _NO_RUN
    last_x: float = float("nan")
    count: int = 0


@dataclass(frozen=True)
class Stuck:
    """A stuck sensor: a run of equal readings longer than the series' own runs make
    likely (:class:`lifeline.detect.baseline.StuckRun`, as the adaptive baseline judges
    it), for metrics whose other judgement is joint (an equipment's). Blue,
    ``flatline``; judged after ``warmup`` readings."""

    min_run: int = 5
    p: float = 1e-6
    warmup: int = 30
    name: str = "flatline"

    def history(self) -> History:
        """``warmup`` readings and the runs that tell its habits."""
        runs = StuckRun(self.min_run, self.p).min_runs
        return History(readings=max(self.warmup, runs), note="its runs of equal readings")

    def init(self) -> StuckReadingState:
        return StuckReadingState()

    def run(self, state: StuckReadingState, ts: F64, v: F64) -> tuple[StuckReadingState, Out]:
        return _stepwise(self.step, self.name, state, ts, v)

    def step(self, state: StuckReadingState, t: float, x: float) -> tuple[StuckReadingState, Step]:
        judge = StuckRun(self.min_run, self.p)
        count = state.count + 1
        stuck = judge.observe(state.stuck, x, state.last_x, count)
        if state.count >= self.warmup and judge.stuck(stuck, x):
            # Nothing is learnt from a stuck run, not even how often it repeats.
            kept = replace(stuck, p_equal=state.stuck.p_equal)
            new = StuckReadingState(stuck=kept, last_x=x, count=count)
            return new, (0.625, rank_of(Severity.BLUE), ((self.name, True),))
        return StuckReadingState(stuck=stuck, last_x=x, count=count), (
            0.0,
            0,
            ((self.name, False),),
        )


Detector = Levels | Rate | Sustained | Baseline | Accumulation | NightFlow | Faults | Stuck
