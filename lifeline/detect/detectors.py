"""The detector families, vectorised over a batch of one series, each with
a scalar ``step`` for one reading that gives what ``run`` gives for a one-row batch (the
stream worker's path: a numpy call per reading costs more than the arithmetic).

Severity ranks: 0 none, 1 blue (IV), 2 yellow (III), 3 orange (II), 4 red (I).
A row's score is in [0, 1]; 0.5 and above means the detector raises at that row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from math import exp, isnan, log
from typing import Any, Literal, TypeVar

import numpy as np

from lifeline.detect.kernels import (
    F64,
    Bool,
    equal_run_length,
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


# -- adaptive baseline: level, daily profile, spread, and one episode per change -----------

#: episode codes of :class:`BaselineState`
CALM, UP, DOWN, SPREAD = 0, 1, -1, 2
#: readings after a (re)start that only set the level
RELEARN = 3
#: the fewest readings of a new level or spread before it can be judged settled
_SETTLE_MIN = 4
_SLOTS = 48  # half-hour slots
_SLOT_S = 86400.0 / _SLOTS
_WEEKEND = 5  # Saturday, Sunday: weekday index 5 and 6 (Monday 0)


@dataclass(frozen=True)
class BaselineState:
    """What the baseline has learnt of a series, and the episode it has open."""

    level: float = float("nan")  # the deseasonalised level
    var: float = float("nan")  # spread of the errors against the expected value
    count: int = 0  # readings seen (a restart after a silence keeps counting)
    #: two-sided CUSUM of the standardised error, and the error summed while each runs
    pos: float = 0.0
    neg: float = 0.0
    pos_sum: float = 0.0
    pos_n: int = 0
    neg_sum: float = 0.0
    neg_n: int = 0
    #: CUSUM of the squared standardised error (a wider spread), its squared errors
    vstat: float = 0.0
    vsum: float = 0.0
    vn: int = 0
    vbias: float = 0.0
    #: the daily profile: half-hour slots for weekdays then for weekends, as deviations
    #: from the level, and the days of readings each slot has learnt from
    profile: tuple[float, ...] = ()
    weight: tuple[float, ...] = ()
    last_ts: float = float("nan")
    last_x: float = float("nan")
    #: equal readings in a row, and how often a reading usually equals the one before
    repeats: int = 0
    p_eq: float = 0.0
    #: the open episode: CALM, UP, DOWN or SPREAD; its onset score; the level and spread
    #: before it; rows since the last re-basing; rows in a row back at the old level
    episode: int = CALM
    onset: float = 0.0
    old_level: float = float("nan")
    old_var: float = float("nan")
    age: int = 0
    back: int = 0
    #: rows of the new level's estimate (its running mean) since the change
    new_n: int = 0
    #: readings since the level (re)started
    fresh: int = 0
    #: the level when the open shift was last re-based or found still moving
    moving_from: float = float("nan")
    #: days of readings the daily profile has learnt from; until the first is in,
    #: the level holds still so that the profile learns the day's shape undistorted
    profile_days: float = 0.0
    #: where the level has stood over the last days (slow drifts are judged against it)
    reference: float = float("nan")
    #: half the mean square difference of successive readings on the learning day: the
    #: noise, for the spread once the profile is in use
    dvar: float = 0.0
    #: the score of the previous reading if it raised (an episode it opens continues it)
    prev_score: float = 0.0
    #: when ``moving_from`` was last set
    moved_at: float = float("nan")
    #: mean square of the level's distance from its reference in calm times: how far
    #: the series' level wanders by itself (a slow drift must go further than that)
    wander: float = 0.0


def _evidence_score(evidence: float) -> float:
    """0.5 at the raising limit (evidence 1), towards 1 as the evidence grows."""
    return 0.5 + 0.5 * (1.0 - 1.0 / max(evidence, 1.0))


@dataclass(frozen=True)
class Baseline:
    """Adaptive baseline for series without fixed limits, causal, one alarm per change.

    The expected value of a reading is the series' level plus, with ``daily``, its daily
    profile at that local time of day (half-hour slots, interpolated; weekends learn
    their own profile once they have data, and borrow the weekdays' until then). The
    spread is a robust EWMA of squared errors. A reading is scored by its standardised
    error ``z`` against what was expected before it:

    - ``|z| >= z_limit`` alone is a spike: raised for that reading, and it teaches the
      baseline nothing.
    - A two-sided CUSUM of ``z`` reaching ``cusum_h`` confirms a change of level (a step
      or a drift; with ``daily`` also the level ``drift_limit`` spreads away from where
      it has stood over ``reference_hours``, or ``wander_k`` times as far as the level
      of this series usually wanders from there by itself, whichever is further: demand
      that wanders as a random walk is not a drift): the episode is raised once, the
      level is re-based on the mean of the readings since the change began, and it is
      updated while the level keeps moving.
      It clears when the series comes back to the old level (``back`` readings in a
      row), or, for a lasting shift, once the new level has held for ``settle``
      readings (on a sparse series, ``settle_max_s`` since it last moved will do) and
      ``settle_s`` seconds: then the new level is normal (a drift that slows down for
      half an hour of 1-minute readings is still one drift). With ``hold_shift`` a
      lasting shift stays raised until the series returns to its old level or an
      operator acknowledges it. During a shift, readings still plausible against the
      old level teach the profile only where it has learnt less than
      ``episode_learn_days`` (a new weekend's later morning is learnt; a slow drift is
      not absorbed into a settled profile).
    - A CUSUM of ``z**2`` reaching ``spread_h`` confirms a wider spread (a loose or
      failing sensor, turbulence): one reading adds at most ``spread_cap``, a spike at
      most ``spike_cap``, and none is confirmed while a change of level is half-way to
      its own limit (a step's first readings are not a wider spread). Raised once, the
      spread re-based, cleared when the old spread returns or the new one has held
      (as a shift settles); a spike that announces it stays raised into it.
    - A run of equal readings that the series' own history makes less likely than
      ``stuck_p`` (at least ``stuck_min``) is a stuck sensor (blue): nothing is learnt
      from it.

    With ``daily`` the first day is the profile's learning day: the level is held still
    (the mean of the first hour) while the profile learns the day's shape, and only
    changes well beyond that shape are raised; once it is over, the spread counts the
    young profile's own uncertainty. The profile is not changed by shifts, so
    after a re-based shift or a gap of more than ``max_gap_s`` (which restarts the
    level; the spread and the profile carry over) the usual morning peak is still
    expected.
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
    settle: int = 30
    settle_s: float = 3600.0
    settle_max_s: float = 10800.0
    episode_learn_days: float = 3.0
    back: int = 3
    hold_shift: bool = False
    spread_alpha: float = 0.02
    spread_k: float = 2.0
    spread_h: float = 22.0
    spread_cap: float = 12.0
    spike_cap: float = 9.0
    still_moving: float = 0.25
    stuck_min: int = 5
    stuck_p: float = 1e-6
    profile_gamma: float = 0.3
    level_hours: float = 3.0
    reference_hours: float = 72.0
    drift_limit: float = 3.0
    wander_k: float = 3.0
    wander_hours: float = 24.0
    wander_cap: float = 0.6
    utc_offset_h: float = 8.0
    name: str = "baseline"

    FLAGS = ("drift_up", "drift_down", "variance", "flatline")

    def init(self) -> BaselineState:
        return BaselineState()

    def run(self, state: BaselineState, ts: F64, v: F64) -> tuple[BaselineState, Out]:
        n = v.size
        score, rank = np.zeros(n), np.zeros(n, np.int8)
        names = (self.name, *self.FLAGS)
        flags = {name: np.zeros(n, bool) for name in names}
        columns = [flags[name] for name in names]
        for i in range(n):
            state, (score[i], r, raised) = self.step(state, float(ts[i]), float(v[i]))
            rank[i] = r
            for column, (_name, hit) in zip(columns, raised, strict=True):
                column[i] = hit
        return state, Out(score, rank, flags)

    # -- the daily profile

    def _slots(self, t: float) -> tuple[int, int, float, int]:
        """The two slots around ``t`` (local time), the second one's weight, and the
        offset of the day type's slots (0 weekdays, ``_SLOTS`` weekends)."""
        local = t + self.utc_offset_h * 3600.0
        days = local // 86400.0
        slot = (local - days * 86400.0) / _SLOT_S - 0.5
        below = slot // 1.0
        frac = slot - below
        h0 = int(below) % _SLOTS
        base = _SLOTS if (int(days) + 3) % 7 >= _WEEKEND else 0
        return h0, (h0 + 1) % _SLOTS, frac, base

    def _expected_profile(self, st: BaselineState, t: float) -> float:
        if not self.daily or not st.profile:
            return 0.0
        h0, h1, frac, base = self._slots(t)
        p, w = st.profile, st.weight
        other = _SLOTS - base
        a = p[base + h0] if w[base + h0] > 0 else p[other + h0]
        b = p[base + h1] if w[base + h1] > 0 else p[other + h1]
        return (1.0 - frac) * a + frac * b

    def _slot_days(self, st: BaselineState, t: float) -> float:
        """Days of readings the slot of ``t`` (its day type) has learnt from."""
        if not st.weight:
            return 0.0
        h0, _h1, _frac, base = self._slots(t)
        return st.weight[base + h0]

    def _learn_profile(
        self, st: BaselineState, t: float, resid: float, dt: float
    ) -> tuple[tuple[float, ...], tuple[float, ...], float, float]:
        """Move the two slots around ``t`` towards the reading's deviation from the
        level: a plain mean over a slot's first days, then an EWMA of ``profile_gamma``
        per day of readings. Also the days of readings learnt in all, and what the
        level must take over from the profile (its mean, once the first day is in)."""
        p = list(st.profile) if st.profile else [0.0] * (2 * _SLOTS)
        w = list(st.weight) if st.weight else [0.0] * (2 * _SLOTS)
        h0, h1, frac, base = self._slots(t)
        other = _SLOTS - base
        days = min(max(dt, 0.0), _SLOT_S) / _SLOT_S if not isnan(dt) else 0.1
        total = st.profile_days
        for slot, share in ((h0, 1.0 - frac), (h1, frac)):
            i = base + slot
            learnt = share * days
            if learnt <= 0.0:
                continue
            if w[i] == 0.0:
                p[i] = p[other + slot]  # a day type starts from the other one's
            gain = max(learnt / (w[i] + learnt), 1.0 - (1.0 - self.profile_gamma) ** learnt)
            p[i] += gain * (resid - p[i])
            w[i] += learnt
            total += learnt / _SLOTS
        if st.profile_days < 1.0 <= total:
            # A whole day learnt against a level held still: the profile's mean
            # belongs to the level.
            learnt_slots = [v for v, n in zip(p, w, strict=True) if n > 0]
            mean = sum(learnt_slots) / len(learnt_slots)
            return tuple(v - mean for v in p), tuple(w), total, mean
        return tuple(p), tuple(w), total, 0.0

    @staticmethod
    def release(st: BaselineState) -> BaselineState | None:
        """The state after an operator acknowledged a lasting shift: its new level is
        normal from here on. None when no shift is open."""
        if st.episode not in (UP, DOWN):
            return None
        return replace(
            st,
            episode=CALM,
            onset=0.0,
            old_level=NAN,
            old_var=NAN,
            age=0,
            back=0,
            reference=st.level,
            pos=0.0,
            neg=0.0,
            pos_sum=0.0,
            pos_n=0,
            neg_sum=0.0,
            neg_n=0,
            prev_score=0.0,
        )

    @staticmethod
    def _onset(st: BaselineState, evidence: float) -> float:
        """The onset score of an episode: by its evidence, and no higher than the
        raised reading just before it (a spike that turned out to begin it)."""
        score = _evidence_score(evidence)
        return min(score, st.prev_score) if st.prev_score >= 0.5 else score

    def _level_gain(self, dt: float) -> float:
        """How far a reading moves the level: ``alpha`` per reading, or with ``daily``
        (the profile carries the day) an EWMA over ``level_hours`` of time."""
        if not self.daily:
            return self.alpha
        return 1.0 - exp(-max(dt, 0.0) / (self.level_hours * 3600.0))

    def _settled(self, age: int, t: float, since: float) -> bool:
        """Whether an episode's new level or spread has held long enough to be judged:
        ``settle`` readings, or on a sparse series ``settle_max_s`` (and a few
        readings) since it last moved."""
        return age >= self.settle or (age >= _SETTLE_MIN and t - since >= self.settle_max_s)

    # -- one reading

    def step(self, state: BaselineState, t: float, x: float) -> tuple[BaselineState, Step]:
        st = state
        if t - st.last_ts > self.max_gap_s or isnan(st.level):
            # New, or back after a silence: the level starts afresh; the spread, the
            # daily profile and the habits of the sensor carry over.
            st = BaselineState(
                var=st.var,
                count=st.count,
                profile=st.profile,
                weight=st.weight,
                profile_days=st.profile_days,
                p_eq=st.p_eq,
                wander=st.wander,
            )
        dt = t - st.last_ts
        seasonal = self._expected_profile(st, t)
        u = x - seasonal
        quiet = (self.name, False), *((f, False) for f in self.FLAGS)
        if isnan(st.level):
            new = replace(st, level=u, count=st.count + 1, fresh=1, last_ts=t, last_x=x)
            return new, (0.0, 0, quiet)
        if st.fresh < RELEARN:
            # The first readings after a (re)start set the level; nothing is judged.
            fresh = st.fresh + 1
            level = st.level + (u - st.level) / fresh
            new = replace(st, level=level, count=st.count + 1, fresh=fresh, last_ts=t, last_x=x)
            return new, (0.0, 0, quiet)

        alpha, h = self.alpha, self.cusum_h
        count = st.count
        warm = count >= self.warmup
        var = st.var if not isnan(st.var) else 0.0
        sigma = max(var, self.min_sigma**2) ** 0.5
        err = u - st.level
        z = err / sigma if warm else 0.0

        # A stuck sensor: readings equal for longer than the series makes likely.
        repeats = st.repeats + 1 if x == st.last_x else 0
        p_eq = st.p_eq
        if repeats < self.stuck_min:
            gain = max(0.01, 1.0 / count)
            p_eq += gain * ((1.0 if repeats else 0.0) - p_eq)
        if p_eq <= 0.0:
            needed = float(self.stuck_min)
        elif p_eq >= 1.0:
            needed = INF
        else:
            needed = max(float(self.stuck_min), log(self.stuck_p) / log(p_eq))
        if warm and repeats + 1 >= needed:
            new = replace(st, count=count + 1, last_ts=t, last_x=x, repeats=repeats)
            flags = (
                (self.name, False),
                ("drift_up", False),
                ("drift_down", False),
                ("variance", False),
                ("flatline", True),
            )
            return new, (0.625, rank_of(Severity.BLUE), flags)

        k, spread_h = self.cusum_k, self.spread_h
        if self.daily and st.profile_days < 1.0:
            # The learning day: the errors carry the day's shape, not yet learnt; only
            # changes well beyond it are judged.
            k, h, spread_h = 2.0 * k, 2.0 * h, 2.0 * spread_h
        reach = 0.5 * h if self.daily else h  # with a profile, no one reading is a change
        zc = min(max(z, -reach), reach)
        pos = max(0.0, st.pos + zc - k)
        neg = max(0.0, st.neg - zc - k)
        pos_sum, pos_n = (st.pos_sum + err, st.pos_n + 1) if pos > 0.0 else (0.0, 0)
        neg_sum, neg_n = (st.neg_sum + err, st.neg_n + 1) if neg > 0.0 else (0.0, 0)
        spike = warm and abs(z) >= self.z_limit
        # One reading's evidence of a wider spread is capped; a spike, raised on its
        # own, counts for less (a lone spike is not a wider spread).
        q = min(z * z, self.spike_cap if spike else self.spread_cap)
        vstat = max(0.0, st.vstat + q - self.spread_k)
        if vstat > 0.0:
            vsum, vn, vbias = st.vsum + err * err, st.vn + 1, st.vbias + err
        else:
            vsum, vn, vbias = 0.0, 0, 0.0
        evidence = max(abs(z) / self.z_limit, pos / h, neg / h, vstat / spread_h)

        level, level_n = st.level, st.new_n
        episode, onset = st.episode, st.onset
        old_level, old_var, age, back = st.old_level, st.old_var, st.age + 1, st.back
        profile, weight = st.profile, st.weight
        moving_from, profile_days = st.moving_from, st.profile_days
        moved_at = st.moved_at
        wander = st.wander
        dx = x - st.last_x
        dvar = st.dvar
        if self.daily and profile_days < 1.0 and not isnan(dx):
            dvar += max(self.spread_alpha, 1.0 / count) * (min(dx * dx / 2.0, 9.0 * var) - dvar)
        reference = st.reference if not isnan(st.reference) else level
        # Slow drifts are judged where the profile carries the day (elsewhere the
        # level's own wander would be taken for one).
        drift = 0.0
        if warm and self.daily and profile_days >= 1.0:
            limit = max(sigma * self.drift_limit, self.wander_k * st.wander**0.5)
            drift = (level - reference) / limit
        evidence = max(evidence, abs(drift))
        changed = warm and (pos >= h or neg >= h)
        # A wider spread: errors both ways (one-sided ones are a change of level).
        widened = (
            warm
            and not changed
            and vstat >= spread_h
            and max(pos, neg) < 0.5 * h
            and abs(vbias) < 0.5 * (vsum * vn) ** 0.5
        )
        cleared = False
        moved = 0.0

        if changed:
            # A change of level confirmed: re-base on the readings since it began.
            shift = pos_sum / pos_n if pos >= h else neg_sum / neg_n
            if episode == CALM:
                old_level, old_var, onset = level, var, self._onset(st, evidence)
            elif episode == SPREAD:
                old_level = level
            level += shift
            level_n = pos_n if pos >= h else neg_n
            episode = UP if level > old_level else DOWN
            moving_from, moved_at = level, t
            age, back = 0, 0
            pos = neg = pos_sum = neg_sum = vstat = vsum = vbias = 0.0
            pos_n = neg_n = vn = 0
        elif widened:
            if episode == CALM:
                old_level, old_var, onset = level, var, self._onset(st, evidence)
                episode = SPREAD
            var = vsum / vn
            age, back = 0, 0
            if episode == SPREAD:
                moved_at = t
            vstat, vsum, vn, vbias = 0.0, 0.0, 0, 0.0
        elif episode == CALM and abs(drift) >= 1.0:
            # The level has wandered from where it has stood for days: a slow drift,
            # too slow for the CUSUM against the level that trails it.
            old_level, old_var, onset = reference, var, self._onset(st, evidence)
            episode = UP if drift > 0 else DOWN
            moving_from, level_n, age, back = level, int(1.0 / alpha), 0, 0
            moved_at = t
        elif episode == CALM:
            if not spike:
                # Learn, with errors clipped at 2.5 spreads so a step in the making
                # or a near-spike moves nothing much (a series without a profile
                # learns every error: its level and spread must follow its day).
                clip = 2.5 * sigma if warm and self.daily else INF
                e = min(max(err, -clip), clip)
                if not self.daily or st.profile_days >= 1.0:
                    level += max(self._level_gain(dt), 1.0 / (st.fresh + 1)) * e
                gain = self.spread_alpha if self.daily else alpha
                var += max(gain, 1.0 / count) * (min(err * err, clip * clip) - var)
                if self.daily:
                    profile, weight, profile_days, moved = self._learn_profile(
                        st, t, seasonal + e, dt
                    )
                    level += moved
                if moved and dvar > 0.0:
                    # The learning day is over: the spread of its errors held the day's
                    # shape; the noise is what the differences of readings say.
                    # Errors against a one-day profile also carry the profile's own
                    # error: a slot learnt from few readings (coarse intervals) is
                    # uncertain by about their share of the noise, counted twice for
                    # the two slots a reading is read between.
                    share = min(max(dt, 0.0) / _SLOT_S, 1.0)
                    var = dvar * (1.0 + 2.0 * share)
                if self.daily and (profile_days < 1.0 or moved):
                    reference = level
                else:
                    gain = 1.0 - exp(-max(dt, 0.0) / (self.reference_hours * 3600.0))
                    reference += gain * (level - reference)
                    if profile_days >= 1.0:
                        cap = (self.wander_cap * self.drift_limit * sigma) ** 2
                        d2 = min((level - reference) ** 2, cap)
                        wgain = 1.0 - exp(-max(dt, 0.0) / (self.wander_hours * 3600.0))
                        wander += wgain * (d2 - wander)
        else:
            old_sigma = max(old_var, self.min_sigma**2) ** 0.5
            if episode == SPREAD:
                near = err * err < 4.0 * old_var
                back = back + 1 if near else 0
                var += max(alpha, 1.0 / (age + 1)) * (min(err * err, 25.0 * var) - var)
                if self.daily and not spike:
                    clip = 2.5 * sigma
                    e = min(max(err, -clip), clip)
                    profile, weight, profile_days, moved = self._learn_profile(
                        st, t, seasonal + e, dt
                    )
                    level += moved
                    old_level += moved
                if back >= 10:
                    var, cleared = old_var, True
                elif self._settled(age, t, moved_at):
                    cleared = True
            else:
                near = abs(u - old_level) < min(abs(u - level), 3.0 * old_sigma)
                back = back + 1 if near else 0
                if not spike:
                    e = min(max(err, -2.5 * sigma), 2.5 * sigma)
                    level_n += 1
                    level += max(alpha, 1.0 / level_n) * e
                # A reading still plausible against the old level teaches the profile
                # (a weekend's later morning is learnt, not alarmed at every weekend);
                # a dropout or a step does not.
                e_old = u - old_level
                if (
                    self.daily
                    and abs(e_old) < 3.0 * old_sigma
                    and self._slot_days(st, t) < self.episode_learn_days
                ):
                    clip = 2.5 * old_sigma
                    e_old = min(max(e_old, -clip), clip)
                    profile, weight, profile_days, moved = self._learn_profile(
                        st, t, seasonal + e_old, dt
                    )
                    level += moved
                    old_level += moved
                if back >= self.back:
                    level, var, cleared = old_level, old_var, True
                    pos = neg = pos_sum = neg_sum = 0.0
                    pos_n = neg_n = 0
                elif self._settled(age, t, moved_at):
                    moving = (level - moving_from) * episode > self.still_moving * sigma
                    if moving or max(pos, neg) >= 0.5 * h:
                        moving_from, age, moved_at = level, 0, t  # a drift still under way
                    elif t - moved_at < self.settle_s:
                        pass  # still for too short a time yet: a slow drift may go on
                    elif not self.hold_shift:
                        cleared = True
            if cleared:
                reference = level
                pos = neg = pos_sum = neg_sum = 0.0
                pos_n = neg_n = 0
                episode, onset = CALM, 0.0
                old_level, old_var, age, back = NAN, NAN, 0, 0

        up = episode == UP
        down = episode == DOWN
        spread = episode == SPREAD
        # A raised reading stays raised while the evidence of a wider spread is past
        # half its limit: the spikes that announce a wider spread are its episode.
        held = episode == CALM and st.prev_score >= 0.5 and vstat >= 0.5 * spread_h
        raised = episode != CALM or spike or held
        if raised:
            current = evidence
            if episode in (UP, DOWN):
                old_sigma = max(old_var, self.min_sigma**2) ** 0.5
                current = max(current, abs(u - old_level) / (old_sigma * self.z_limit))
            now = _evidence_score(current)
            # A spike is its own onset; an episode never scores above its onset.
            score = now if episode == CALM else max(0.5, min(onset, now))
            if st.prev_score >= 0.5:  # the same alarm goes on: never above its start
                score = min(score, st.prev_score)
            rank = rank_of(self.severity)
        else:
            score = 0.49 * min(evidence, 1.0) if warm else 0.0
            rank = 0
        new = BaselineState(
            level,
            var,
            count + 1,
            pos,
            neg,
            pos_sum,
            pos_n,
            neg_sum,
            neg_n,
            vstat,
            vsum,
            vn,
            vbias,
            profile,
            weight,
            t,
            x,
            repeats,
            p_eq,
            episode,
            onset,
            old_level,
            old_var,
            age if episode != CALM else 0,
            back,
            level_n,
            st.fresh + 1,
            moving_from,
            profile_days,
            reference,
            dvar,
            score if rank else 0.0,
            moved_at if episode != CALM else NAN,
            wander,
        )
        flags = (
            (self.name, (spike or held) and raised),
            ("drift_up", up),
            ("drift_down", down),
            ("variance", spread),
            ("flatline", False),
        )
        return new, (score, rank, flags)


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
    """Gross range, spike, flat line and gaps: the sensor, not the city, is wrong.
    Readings out of range or flat for ``flat_fail`` raise (blue); a jump or the start of
    a flat line is flagged as suspect with a score under 0.5: noted, not raised."""

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


Detector = Levels | Rate | Sustained | Baseline | Accumulation | NightFlow | Faults
