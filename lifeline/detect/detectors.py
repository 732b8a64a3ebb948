"""The detector families of DESIGN §5, vectorised over a batch of one series, each with
a scalar ``step`` for one reading that gives what ``run`` gives for a one-row batch (the
stream worker's path: a numpy call per reading costs more than the arithmetic).

Severity ranks: 0 none, 1 blue (IV), 2 yellow (III), 3 orange (II), 4 red (I).
A row's score is in [0, 1]; 0.5 and above means the detector raises at that row.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from math import isnan
from typing import Any, Literal, TypeVar

import numpy as np

from lifeline.detect.kernels import (
    F64,
    Bool,
    cusum,
    equal_run_length,
    ewma,
    hold,
    previous,
    rolling_count,
    run_start,
)
from lifeline.vocabulary import Severity

I8 = np.ndarray[Any, np.dtype[np.int8]]
Direction = Literal["above", "below"]


def rank_of(sev: Severity) -> int:
    return 5 - sev.level


def severity_of(rank: int) -> Severity | None:
    return Severity.from_level(5 - rank) if rank else None


@dataclass(frozen=True)
class Out:
    """Per-row result of one detector."""

    score: F64
    rank: I8
    flags: dict[str, Bool]


def _scores(active_rank: I8, closeness: F64) -> F64:
    """0.5-1 where a rank is active (more for higher ranks), else below 0.5."""
    return np.where(active_rank > 0, 0.5 + 0.125 * active_rank, 0.49 * np.clip(closeness, 0.0, 1.0))


def _score(rank: int, closeness: float) -> float:
    """:func:`_scores` for one row."""
    if rank > 0:
        return 0.5 + 0.125 * rank
    if isnan(closeness):  # NaN stays NaN, as np.clip leaves it
        return closeness
    return 0.49 * min(max(closeness, 0.0), 1.0)


def _run_start(flag: bool, t: float, carried: float) -> float:
    """:func:`run_start` for one row: the start of the run this row belongs to, or NaN."""
    if not flag:
        return NAN
    return t if isnan(carried) else carried


#: one row's result: (score, rank, flags in the order ``run`` reports them)
Step = tuple[float, int, tuple[tuple[str, bool], ...]]
NAN = float("nan")
INF = float("inf")
MAX = float(np.finfo(np.float64).max)


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
        return new, Out(_scores(rank, closeness), rank, {self.name: rank > 0})

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
            start = _run_start(beyond, t, state.run_began[i])
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
        return new, (_score(rank, closeness), rank, ((self.name, rank > 0),))


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
        return new, Out(_scores(rank, signed / self.max_per_s), rank, {self.name: hit})

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
        score = _score(rank, signed / self.max_per_s)
        return SeriesTail(t, x), (score, rank, ((self.name, hit),))


@dataclass(frozen=True)
class Sustained:
    """Beyond ``limit`` without a break for at least ``duration_s``."""

    limit: float
    duration_s: float
    severity: Severity
    direction: Direction = "above"
    name: str = "sustained"

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
        return carried, Out(_scores(rank, closeness), rank, {self.name: hit})

    def step(self, state: float, t: float, x: float) -> tuple[float, Step]:
        sign = 1.0 if self.direction == "above" else -1.0
        beyond = sign * (x - self.limit) > 0
        start = _run_start(beyond, t, state)
        held = t - start if not isnan(start) else -1.0
        hit = held >= self.duration_s
        rank = rank_of(self.severity) if hit else 0
        closeness = 0.5 + 0.5 * held / max(self.duration_s, 1e-9) if beyond else 0.0
        return start, (_score(rank, closeness), rank, ((self.name, hit),))


# -- adaptive baseline and CUSUM ----------------------------------------------------------


@dataclass(frozen=True)
class BaselineState:
    mean: float = float("nan")
    var: float = float("nan")
    count: int = 0
    pos: float = 0.0
    neg: float = 0.0
    day_mean: tuple[float, ...] = field(default_factory=lambda: (float("nan"),) * 24)
    day_count: tuple[int, ...] = field(default_factory=lambda: (0,) * 24)
    last_ts: float = float("nan")


@dataclass(frozen=True)
class Baseline:
    """Adaptive baseline for series without fixed limits, causal.

    The expected value is an EWMA of the past (plus, with ``daily``, the EWMA of the
    same hour on earlier days), the spread an EWMA of squared errors. A row is scored by
    its standardised error against what was expected *before* it; two one-sided CUSUMs
    of that error catch slow drifts and steps. Level shifts are absorbed as the EWMAs
    follow, so a lasting new level stops alarming.
    """

    alpha: float = 0.05
    z_limit: float = 5.0
    warmup: int = 30
    daily: bool = False
    cusum_k: float = 1.0
    cusum_h: float = 8.0
    min_sigma: float = 1e-6
    severity: Severity = Severity.YELLOW
    max_gap_s: float = 3600.0
    name: str = "baseline"

    def init(self) -> BaselineState:
        return BaselineState()

    def run(self, state: BaselineState, ts: F64, v: F64) -> tuple[BaselineState, Out]:
        """Rows after a gap of more than ``max_gap_s`` start the level and spread afresh
        (keeping the daily profile): hours of silence, an outage, say nothing of the
        series, and the level it comes back at is not an anomaly."""
        n = v.size
        if n == 0:
            return state, Out(np.zeros(0), np.zeros(0, np.int8), {self.name: np.zeros(0, bool)})
        gaps = np.flatnonzero(np.diff(np.concatenate([[state.last_ts], ts])) > self.max_gap_s)
        if gaps.size == 0:
            return self._run(state, ts, v)
        parts = []
        for a, b in itertools.pairwise([0, *gaps.tolist(), n]):
            if a == b:
                continue
            if a in gaps:
                state = self._restart(state)
            state, out = self._run(state, ts[a:b], v[a:b])
            parts.append(out)
        joined = {k: np.concatenate([o.flags[k] for o in parts]) for k in parts[0].flags}
        score = np.concatenate([o.score for o in parts])
        return state, Out(score, np.concatenate([o.rank for o in parts]), joined)

    @staticmethod
    def _restart(state: BaselineState) -> BaselineState:
        return BaselineState(day_mean=state.day_mean, day_count=state.day_count)

    def _run(self, state: BaselineState, ts: F64, v: F64) -> tuple[BaselineState, Out]:
        n = v.size
        # EWMAs start from zero and are divided by 1 - (1-alpha)^k (k terms so far), so
        # early estimates are plain averages rather than pinned to the first sample.
        keep = 1.0 - self.alpha
        m0 = state.mean if not np.isnan(state.mean) else 0.0
        means = ewma(v, self.alpha, m0)
        seen = state.count + np.arange(1, n + 1)
        first = m0 / (1.0 - keep**state.count) if state.count else float(v[0])
        expect = previous(means / (1.0 - keep**seen), first)
        day_means = np.asarray(state.day_mean)
        day_counts = np.asarray(state.day_count)
        if self.daily:
            hours = ((ts // 3600) % 24).astype(np.int64)
            seasonal = np.full(n, np.nan)
            new_means, new_counts = day_means.copy(), day_counts.copy()
            for h in np.unique(hours):
                sel = np.flatnonzero(hours == h)
                start = day_means[h] if not np.isnan(day_means[h]) else float(v[sel[0]])
                series = ewma(v[sel], 0.3, start)
                seasonal[sel] = previous(series, start)
                counts = day_counts[h] + np.arange(sel.size)
                seasonal[sel] = np.where(counts >= 3, seasonal[sel], np.nan)
                new_means[h], new_counts[h] = float(series[-1]), int(day_counts[h] + sel.size)
            expect = np.where(np.isnan(seasonal), expect, seasonal)
            day_means, day_counts = new_means, new_counts
        err = v - expect
        v0 = state.var if not np.isnan(state.var) else 0.0
        variances = ewma(err * err, self.alpha, v0)
        # Started from zero, the EWMA variance is biased low by (1-alpha)^k after k terms.
        terms = state.count + np.arange(n)
        debias = 1.0 - (1.0 - self.alpha) ** np.maximum(terms, 1)
        sigma = np.sqrt(np.maximum(previous(variances, v0) / debias, self.min_sigma**2))
        z = err / sigma
        warm = state.count + np.arange(n) >= self.warmup
        z = np.where(warm, z, 0.0)
        zc = np.clip(z, -self.cusum_h, self.cusum_h)
        pos, pos_last = cusum(zc - self.cusum_k, state.pos)
        neg, neg_last = cusum(-zc - self.cusum_k, state.neg)
        spike = np.abs(z) >= self.z_limit
        drift = (pos >= self.cusum_h) | (neg >= self.cusum_h)
        hit = warm & (spike | drift)
        rank = np.where(hit, rank_of(self.severity), 0).astype(np.int8)
        closeness = np.maximum(np.abs(z) / self.z_limit, np.maximum(pos, neg) / self.cusum_h)
        new = BaselineState(
            float(means[-1]),
            float(variances[-1]),
            state.count + n,
            0.0 if pos_last >= self.cusum_h else pos_last,
            0.0 if neg_last >= self.cusum_h else neg_last,
            tuple(float(x) for x in day_means),
            tuple(int(x) for x in day_counts),
            float(ts[-1]),
        )
        flags = {
            f"{self.name}": hit & spike,
            "drift_up": warm & (pos >= self.cusum_h),
            "drift_down": warm & (neg >= self.cusum_h),
        }
        return new, Out(_scores(rank, np.where(warm, closeness, 0.0)), rank, flags)

    def step(self, state: BaselineState, t: float, x: float) -> tuple[BaselineState, Step]:
        if t - state.last_ts > self.max_gap_s:
            state = self._restart(state)
        alpha, keep, h = self.alpha, 1.0 - self.alpha, self.cusum_h
        count = state.count
        m0 = state.mean if not isnan(state.mean) else 0.0
        mean = keep * m0 + alpha * x
        expect = m0 / (1.0 - keep**count) if count else x
        day_mean, day_count = state.day_mean, state.day_count
        if self.daily:
            hour = int((t // 3600) % 24)
            start = day_mean[hour] if not isnan(day_mean[hour]) else x
            if day_count[hour] >= 3:
                expect = start
            day_mean = (*day_mean[:hour], 0.7 * start + 0.3 * x, *day_mean[hour + 1 :])
            day_count = (*day_count[:hour], day_count[hour] + 1, *day_count[hour + 1 :])
        err = x - expect
        v0 = state.var if not isnan(state.var) else 0.0
        var = keep * v0 + alpha * err * err
        debias = 1.0 - keep ** max(count, 1)
        sigma = max(v0 / debias, self.min_sigma**2) ** 0.5
        warm = count >= self.warmup
        z = err / sigma if warm else 0.0
        zc = min(max(z, -h), h)
        pos = max(0.0, state.pos + zc - self.cusum_k)
        neg = max(0.0, state.neg - zc - self.cusum_k)
        spike = abs(z) >= self.z_limit
        up, down = warm and pos >= h, warm and neg >= h
        hit = warm and (spike or up or down)
        rank = rank_of(self.severity) if hit else 0
        closeness = max(abs(z) / self.z_limit, max(pos, neg) / h) if warm else 0.0
        new = BaselineState(
            mean,
            var,
            count + 1,
            0.0 if pos >= h else pos,
            0.0 if neg >= h else neg,
            day_mean,
            day_count,
            t,
        )
        flags = ((self.name, hit and spike), ("drift_up", up), ("drift_down", down))
        return new, (_score(rank, closeness), rank, flags)


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
        return tuple(kept), (_score(rank, closeness), rank, ((self.name, rank > 0),))


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
        return state, (_score(rank, closeness), rank, ((self.name, rank > 0),))

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
    """Gross range, spike, flat line and gaps: the sensor, not the city, is wrong."""

    low: float
    high: float
    spike: float | None = None
    flat_suspect: int | None = None
    flat_fail: int | None = None
    max_gap_s: float | None = None

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
        score = np.where(fault, 0.75, np.where(suspect, 0.5, 0.0))
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
        score = 0.75 if fault else (0.5 if spike or flat_suspect else 0.0)
        rank = rank_of(Severity.BLUE) if fault else 0
        flags = (
            ("range", out_of_range),
            ("spike", spike),
            ("flatline", flat_suspect),
            ("gap", gap),
        )
        return FaultState(SeriesTail(t, x), run), (score, rank, flags)


Detector = Levels | Rate | Sustained | Baseline | Accumulation | NightFlow | Faults
