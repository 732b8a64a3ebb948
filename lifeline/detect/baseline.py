"""The adaptive baseline: a causal detector for series without fixed limits, one alarm
per change, composed of small parts that each keep a state of their own and say in their
docstring what they learn and when they fire.

=====================  ===============================================================
part                   holds
=====================  ===============================================================
:class:`LevelState`    the deseasonalised level, where it has stood for days
                       (reference) and how far it wanders from there by itself
:class:`SpreadState`   the spread of the errors, and the noise of successive readings
:class:`ShiftTest`     the two-sided CUSUM of the standardised error (a change of level)
:class:`WidenTest`     the CUSUM of the squared standardised error (a wider spread)
:class:`ProfileState`  the daily profile, weekdays and weekends (:class:`DailyProfile`)
:class:`StuckState`    the run of equal readings and how usual a repeat is
                       (:class:`StuckRun`)
:class:`EpisodeState`  the open episode: a shift up or down, or a wider spread
=====================  ===============================================================

:class:`Baseline` composes them in :meth:`Baseline.step`; its full specification, with the
reasons behind each limit, is ``docs/detection.md``. Every state is built by keyword
(positional arguments are refused), and a state pickled by the flat ``BaselineState`` of
earlier releases loads into the composed one (:meth:`BaselineState.__setstate__`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from math import exp, isnan, log
from typing import Any

import numpy as np

from lifeline.detect.base import INF, NAN, History, Out, Step, evidence_score, packed, rank_of
from lifeline.detect.kernels import F64
from lifeline.vocabulary import Severity

#: episode codes of :class:`EpisodeState`
CALM, UP, DOWN, SPREAD = 0, 1, -1, 2
#: readings after a (re)start that only set the level
RELEARN = 3
#: the fewest readings of a new level or spread before it can be judged settled
SETTLE_MIN = 4
SLOTS = 48  # half-hour slots
SLOT_S = 86400.0 / SLOTS
WEEKEND = 5  # Saturday, Sunday: weekday index 5 and 6 (Monday 0)


# -- the parts' states ----------------------------------------------------------------------


@packed
@dataclass(frozen=True, kw_only=True, slots=True)
class LevelState:
    """The level of the series once its daily profile is taken out.

    ``value`` follows calm readings (errors clipped at 2.5 spreads); ``fresh`` counts the
    readings since it (re)started, the first :data:`RELEARN` of which only set it.
    ``reference`` trails it over days (slow drifts are judged against it) and ``wander``
    is the mean square of its distance from the reference in calm times: how far this
    series' level moves by itself, so that demand wandering as a random walk is not a
    drift. ``n`` counts the readings of a new level's running mean since a change.
    """

    value: float = NAN
    fresh: int = 0
    n: int = 0
    reference: float = NAN
    wander: float = 0.0

    def started(self, u: float) -> LevelState:
        """The level after one of the first readings since a (re)start."""
        if isnan(self.value):
            return replace(self, value=u, fresh=1)
        fresh = self.fresh + 1
        return replace(self, value=self.value + (u - self.value) / fresh, fresh=fresh)


@packed
@dataclass(frozen=True, kw_only=True, slots=True)
class SpreadState:
    """The spread: ``var`` a robust EWMA of squared errors against the expected value;
    ``noise`` half the mean square difference of successive readings, learnt on the
    profile's learning day, which sets the spread once the profile is in use (the
    errors of the learning day carry the day's shape)."""

    var: float = NAN
    noise: float = 0.0
    #: the smallest change between successive readings seen: a quantised channel's
    #: step, under which no spread is believed (one step is within its noise)
    quantum: float = INF

    def floor(self, min_sigma: float) -> float:
        """The least spread: ``min_sigma``, or the quantum of a quantised channel."""
        return min_sigma if self.quantum == INF else max(min_sigma, self.quantum)

    def with_change(self, dx: float) -> SpreadState:
        """This state after successive readings ``dx`` apart."""
        step = abs(dx)
        if 0.0 < step < self.quantum:
            return replace(self, quantum=step)
        return self


@packed
@dataclass(frozen=True, kw_only=True, slots=True)
class ShiftTest:
    """A two-sided CUSUM of the standardised error ``z`` (a change of level): ``pos``
    and ``neg`` grow by ``z - k`` and ``-z - k``; the errors summed while each runs give
    the size of the change once one reaches its limit."""

    pos: float = 0.0
    neg: float = 0.0
    pos_sum: float = 0.0
    pos_n: int = 0
    neg_sum: float = 0.0
    neg_n: int = 0

    def step(self, zc: float, k: float, err: float) -> ShiftTest:
        pos = max(0.0, self.pos + zc - k)
        neg = max(0.0, self.neg - zc - k)
        if pos == 0.0 and neg == 0.0:
            return _NO_SHIFT
        pos_sum, pos_n = (self.pos_sum + err, self.pos_n + 1) if pos > 0.0 else (0.0, 0)
        neg_sum, neg_n = (self.neg_sum + err, self.neg_n + 1) if neg > 0.0 else (0.0, 0)
        return ShiftTest(
            pos=pos, neg=neg, pos_sum=pos_sum, pos_n=pos_n, neg_sum=neg_sum, neg_n=neg_n
        )

    def change(self, h: float) -> tuple[float, int]:
        """The mean error since the confirmed change began, and its readings."""
        if self.pos >= h:
            return self.pos_sum / self.pos_n, self.pos_n
        return self.neg_sum / self.neg_n, self.neg_n


_NO_SHIFT = ShiftTest()


@packed
@dataclass(frozen=True, kw_only=True, slots=True)
class WidenTest:
    """A CUSUM of the squared standardised error (a wider spread): ``stat`` grows by
    ``z² - k`` (one reading's share capped by the caller); while it runs, the squared
    errors (``sum_sq``, ``n``) give the new spread and ``bias`` the errors' sum, which
    tells a wider spread (errors both ways) from a change of level (one way)."""

    stat: float = 0.0
    sum_sq: float = 0.0
    n: int = 0
    bias: float = 0.0

    def step(self, q: float, k: float, err: float) -> WidenTest:
        stat = max(0.0, self.stat + q - k)
        if stat <= 0.0:
            return _NO_WIDEN
        return WidenTest(
            stat=stat, sum_sq=self.sum_sq + err * err, n=self.n + 1, bias=self.bias + err
        )

    def two_sided(self) -> bool:
        """Whether the errors of the run went both ways (not one shift)."""
        return bool(abs(self.bias) < 0.5 * (self.sum_sq * self.n) ** 0.5)


_NO_WIDEN = WidenTest()


@packed
@dataclass(frozen=True, kw_only=True, slots=True)
class ProfileState:
    """The daily profile: half-hour slots for weekdays then for weekends, as deviations
    from the level (``slots``), the days of readings each slot has learnt from
    (``weight``), and the days of readings learnt in all (``days``)."""

    slots: tuple[float, ...] = ()
    weight: tuple[float, ...] = ()
    days: float = 0.0


@packed
@dataclass(frozen=True, kw_only=True, slots=True)
class StuckState:
    """Equal readings in a row (``repeats``), how often a reading usually equals the
    one before (``p_equal``), the runs of equal readings that have ended (``runs``,
    counted up to a few hundred) and the longest of them that ended without being
    judged stuck (``longest``, in repeats), and the values it rests at."""

    repeats: int = 0
    p_equal: float = 0.0
    runs: int = 0
    longest: int = 0
    #: values the series has rested at (held ``min_run`` readings or more), with how
    #: often: a pump's flow at 0 while it is off, a valve's status
    rests: tuple[tuple[float, int], ...] = ()


@packed
@dataclass(frozen=True, kw_only=True, slots=True)
class ValuesState:
    """The first two distinct values a series has shown, and whether it has shown a
    third (``many``): a series of two values at most is a status or an on/off channel,
    judged by its runs, never by its level or spread."""

    first: float = NAN
    second: float = NAN
    many: bool = False

    def seen(self, x: float) -> ValuesState:
        if self.many or x in (self.first, self.second) or isnan(x):
            return self
        if isnan(self.first):
            return ValuesState(first=x)
        if isnan(self.second):
            return ValuesState(first=self.first, second=x)
        return ValuesState(first=self.first, second=self.second, many=True)


@packed
@dataclass(frozen=True, kw_only=True, slots=True)
class ToleranceState:
    """How often the series has surprised: the alarms it opened, each decaying with
    time (``surprises``, as of ``at``); a series that surprises more often than its
    budget has its limits widened (:meth:`Baseline.tolerance`). And the changes of
    level it has made lately (``changes``: time and size in spreads, newest last): a
    change no bigger than those it makes routinely is its normal behaviour
    (:meth:`Baseline.routine`)."""

    surprises: float = 0.0
    at: float = NAN
    changes: tuple[tuple[float, float], ...] = ()


@packed
@dataclass(frozen=True, kw_only=True, slots=True)
class EpisodeState:
    """The open episode (``code``: :data:`CALM`, :data:`UP`, :data:`DOWN` or
    :data:`SPREAD`); its onset score; the level and spread before it; readings since it
    was last re-based (``age``) and in a row back at the old level (``back``); the level
    when a shift was last re-based or found still moving (``moving_from``) and when
    (``moved_at``)."""

    code: int = CALM
    onset: float = 0.0
    old_level: float = NAN
    old_var: float = NAN
    age: int = 0
    back: int = 0
    moving_from: float = NAN
    moved_at: float = NAN


_CALM = EpisodeState()

#: the flat fields of the baseline state before it was composed of parts
_FLAT_FIELDS: dict[str, tuple[str, str]] = {
    "level": ("level", "value"),
    "fresh": ("level", "fresh"),
    "new_n": ("level", "n"),
    "reference": ("level", "reference"),
    "wander": ("level", "wander"),
    "var": ("spread", "var"),
    "dvar": ("spread", "noise"),
    "pos": ("shift", "pos"),
    "neg": ("shift", "neg"),
    "pos_sum": ("shift", "pos_sum"),
    "pos_n": ("shift", "pos_n"),
    "neg_sum": ("shift", "neg_sum"),
    "neg_n": ("shift", "neg_n"),
    "vstat": ("widen", "stat"),
    "vsum": ("widen", "sum_sq"),
    "vn": ("widen", "n"),
    "vbias": ("widen", "bias"),
    "profile": ("profile", "slots"),
    "weight": ("profile", "weight"),
    "profile_days": ("profile", "days"),
    "repeats": ("stuck", "repeats"),
    "p_eq": ("stuck", "p_equal"),
    "episode": ("episode", "code"),
    "onset": ("episode", "onset"),
    "old_level": ("episode", "old_level"),
    "old_var": ("episode", "old_var"),
    "age": ("episode", "age"),
    "back": ("episode", "back"),
    "moving_from": ("episode", "moving_from"),
    "moved_at": ("episode", "moved_at"),
}
_PARTS: dict[str, type] = {
    "level": LevelState,
    "spread": SpreadState,
    "shift": ShiftTest,
    "widen": WidenTest,
    "profile": ProfileState,
    "stuck": StuckState,
    "episode": EpisodeState,
}
_NO_VALUES = ValuesState()
_NO_SURPRISE = ToleranceState()
#: changes of level remembered for :meth:`Baseline.routine`
_CHANGES = 8


@dataclass(frozen=True, kw_only=True)
class BaselineState:
    """What the baseline has learnt of a series, and the episode it has open: its parts,
    the readings seen (``count``; a restart after a silence keeps counting), the last
    reading, and the score of the previous reading if it raised (an episode it opens
    continues its alarm)."""

    level: LevelState = LevelState()
    spread: SpreadState = SpreadState()
    shift: ShiftTest = _NO_SHIFT
    widen: WidenTest = _NO_WIDEN
    profile: ProfileState = ProfileState()
    stuck: StuckState = StuckState()
    episode: EpisodeState = _CALM
    values: ValuesState = _NO_VALUES
    tolerance: ToleranceState = _NO_SURPRISE
    count: int = 0
    last_ts: float = NAN
    last_x: float = NAN
    prev_score: float = 0.0

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Load a pickled state; one of the flat layout of earlier releases is
        migrated into the parts (a field the old layout lacked takes its default, but
        the series stays judged as analog, and its runs as judged)."""
        if "shift" not in state:
            parts: dict[str, dict[str, Any]] = {name: {} for name in _PARTS}
            top = {}
            for key, value in state.items():
                where = _FLAT_FIELDS.get(key)
                if where is None:
                    top[key] = value
                else:
                    parts[where[0]][where[1]] = value
            if parts["episode"].get("code", CALM) == CALM:
                parts["episode"] = {}
            # The flat layout judged every series as analog, and had judged its runs.
            if top.get("count", 0) >= StuckRun.min_runs:
                parts["stuck"]["runs"] = StuckRun.min_runs
            top["values"] = ValuesState(many=True)
            state = {**top, **{name: _PARTS[name](**kw) for name, kw in parts.items()}}
        for key, value in state.items():
            object.__setattr__(self, key, value)


# -- the parts' steps ------------------------------------------------------------------------


@dataclass(frozen=True)
class StuckRun:
    """A stuck sensor: a run of equal readings that the series' own history makes less
    likely than ``p`` (and at least ``min_run`` long), and ``longer`` times longer than
    any run the series has ended by itself. How often a reading equals the one before is
    learnt from runs shorter than ``min_run``, so a quantised series that often repeats
    needs a longer run, and an analog one is stuck after ``min_run``; a channel that
    legitimately holds a value for hours (a temperature in 0.1 steps, a pump's status)
    sets its own bar by the runs it has shown. Until ``min_runs`` runs have ended (a
    channel that has held one value since it started), no run is judged stuck; nor is a
    run at a value the series has rested at ``rest_n`` times before (a flow of 0 while
    its pump is off: a sensor stuck there cannot be told from it)."""

    min_run: int
    p: float
    longer: float = 2.0
    min_runs: int = 10
    rest_n: int = 2

    def observe(self, st: StuckState, x: float, last: float, count: int) -> StuckState:
        """The runs after reading ``x`` (the one before was ``last``)."""
        rests = st.rests
        if x == last:
            repeats, runs, longest = st.repeats + 1, st.runs, st.longest
        else:
            repeats, runs, longest = 0, min(st.runs + 1, 1000), st.longest
            if st.repeats > longest and st.repeats + 1 < self.needed(st, last):
                longest = st.repeats  # a run that ended by itself, never judged stuck
            if st.repeats + 1 >= self.min_run:
                rests = _rested(rests, last)
        p_eq = st.p_equal
        if repeats < self.min_run:
            gain = max(0.01, 1.0 / count)
            p_eq += gain * ((1.0 if repeats else 0.0) - p_eq)
        return StuckState(repeats=repeats, p_equal=p_eq, runs=runs, longest=longest, rests=rests)

    def needed(self, st: StuckState, value: float) -> float:
        """The run of equal readings (in repeats plus one) at ``value`` judged stuck."""
        if st.runs < self.min_runs:
            return INF
        if any(v == value and n >= self.rest_n for v, n in st.rests):
            return INF  # a value the series rests at: off, closed, idle
        p_equal = st.p_equal
        if p_equal <= 0.0:
            rare = float(self.min_run)
        elif p_equal >= 1.0:
            return INF
        else:
            rare = max(float(self.min_run), log(self.p) / log(p_equal))
        return max(rare, self.longer * (st.longest + 1))

    def stuck(self, st: StuckState, value: float) -> bool:
        return st.repeats + 1 >= self.needed(st, value)


def _rested(rests: tuple[tuple[float, int], ...], value: float) -> tuple[tuple[float, int], ...]:
    """``rests`` with one more long run at ``value`` (the four most frequent kept)."""
    counts = dict(rests)
    counts[value] = counts.get(value, 0) + 1
    return tuple(sorted(counts.items(), key=lambda kv: -kv[1])[:4])


@dataclass(frozen=True)
class DailyProfile:
    """The expected deviation from the level at a local time of day: half-hour slots,
    interpolated between the two around a reading; weekends learn their own slots once
    they have data and borrow the weekdays' until then. A slot learns as a plain mean
    over its first days of readings, then as an EWMA of ``gamma`` per day."""

    utc_offset_h: float
    gamma: float

    def slots(self, t: float) -> tuple[int, int, float, int]:
        """The two slots around ``t`` (local time), the second one's weight, and the
        offset of the day type's slots (0 weekdays, :data:`SLOTS` weekends)."""
        local = t + self.utc_offset_h * 3600.0
        days = local // 86400.0
        slot = (local - days * 86400.0) / SLOT_S - 0.5
        below = slot // 1.0
        frac = slot - below
        h0 = int(below) % SLOTS
        base = SLOTS if (int(days) + 3) % 7 >= WEEKEND else 0
        return h0, (h0 + 1) % SLOTS, frac, base

    def expected(self, ps: ProfileState, t: float) -> float:
        if not ps.slots:
            return 0.0
        h0, h1, frac, base = self.slots(t)
        p, w = ps.slots, ps.weight
        other = SLOTS - base
        a = p[base + h0] if w[base + h0] > 0 else p[other + h0]
        b = p[base + h1] if w[base + h1] > 0 else p[other + h1]
        return (1.0 - frac) * a + frac * b

    def slot_days(self, ps: ProfileState, t: float) -> float:
        """Days of readings the slot of ``t`` (its day type) has learnt from."""
        if not ps.weight:
            return 0.0
        h0, _h1, _frac, base = self.slots(t)
        return ps.weight[base + h0]

    def learn(
        self, ps: ProfileState, t: float, resid: float, dt: float
    ) -> tuple[ProfileState, float]:
        """Move the two slots around ``t`` towards the reading's deviation from the
        level. Also what the level must take over from the profile: its mean, once the
        first whole day is in (learnt against a level held still)."""
        p = list(ps.slots) if ps.slots else [0.0] * (2 * SLOTS)
        w = list(ps.weight) if ps.weight else [0.0] * (2 * SLOTS)
        h0, h1, frac, base = self.slots(t)
        other = SLOTS - base
        days = min(max(dt, 0.0), SLOT_S) / SLOT_S if not isnan(dt) else 0.1
        total = ps.days
        for slot, share in ((h0, 1.0 - frac), (h1, frac)):
            i = base + slot
            learnt = share * days
            if learnt <= 0.0:
                continue
            if w[i] == 0.0:
                p[i] = p[other + slot]  # a day type starts from the other one's
            gain = max(learnt / (w[i] + learnt), 1.0 - (1.0 - self.gamma) ** learnt)
            p[i] += gain * (resid - p[i])
            w[i] += learnt
            total += learnt / SLOTS
        if ps.days < 1.0 <= total:
            learnt_slots = [v for v, n in zip(p, w, strict=True) if n > 0]
            mean = sum(learnt_slots) / len(learnt_slots)
            return ProfileState(slots=tuple(v - mean for v in p), weight=tuple(w), days=total), mean
        return ProfileState(slots=tuple(p), weight=tuple(w), days=total), 0.0


_QUIET: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True)
class Baseline:
    """Adaptive baseline for series without fixed limits, causal, one alarm per change.

    The expected value of a reading is the series' level plus, with ``daily``, its
    :class:`DailyProfile` at that local time. A reading is scored by its standardised
    error ``z`` against what was expected before it: a spike (``|z| >= z_limit``), a
    change of level (:class:`ShiftTest` reaching ``cusum_h``, or with ``daily`` the
    level ``drift_limit`` spreads — or ``wander_k`` times its usual wander — from its
    ``reference_hours`` reference), a wider spread (:class:`WidenTest` reaching
    ``spread_h``), a stuck sensor (:class:`StuckRun`). A change is one episode: raised
    once, re-based, cleared when the series returns or the new level or spread has
    settled (``settle`` readings or ``settle_max_s``, and ``settle_s``); with
    ``hold_shift`` a lasting shift stays raised until an operator acknowledges it.
    ``docs/detection.md`` gives the whole specification.
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
    budget_per_day: float = 1.0
    tolerance_days: float = 7.0
    max_tolerance: float = 4.0
    tolerance_power: float = 1.0
    routine_n: int = 3
    routine_share: float = 0.67
    utc_offset_h: float = 8.0
    name: str = "baseline"

    FLAGS = ("drift_up", "drift_down", "variance", "flatline")

    @cached_property
    def _profile(self) -> DailyProfile:
        return DailyProfile(self.utc_offset_h, self.profile_gamma)

    @cached_property
    def _stuck(self) -> StuckRun:
        return StuckRun(self.stuck_min, self.stuck_p)

    @cached_property
    def _quiet(self) -> tuple[tuple[str, bool], ...]:
        return ((self.name, False), *((f, False) for f in self.FLAGS))

    @cached_property
    def _stuck_flags(self) -> tuple[tuple[str, bool], ...]:
        return ((self.name, False), *((f, f == "flatline") for f in self.FLAGS))

    def history(self) -> History:
        """Spikes, steps and wider spreads are judged after ``warmup`` readings (at one
        a second, half a minute); with ``daily``, slow drifts once the profile's
        learning day is in, while on that day only changes well beyond the day's
        shape are raised."""
        if self.daily:
            return History(
                readings=self.warmup + RELEARN,
                seconds=86400.0,
                note="spikes, steps and spreads after the readings; drifts after a day",
            )
        return History(readings=self.warmup + RELEARN, note="spikes, steps and spreads")

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

    @staticmethod
    def release(st: BaselineState) -> BaselineState | None:
        """The state after an operator acknowledged a lasting shift: its new level is
        normal from here on. None when no shift is open."""
        if st.episode.code not in (UP, DOWN):
            return None
        return replace(
            st,
            episode=_CALM,
            level=replace(st.level, reference=st.level.value),
            shift=_NO_SHIFT,
            prev_score=0.0,
        )

    # -- helpers of one step

    @staticmethod
    def _onset(st: BaselineState, evidence: float) -> float:
        """The onset score of an episode: by its evidence, and no higher than the
        raised reading just before it (a spike that turned out to begin it)."""
        score = evidence_score(evidence)
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
        return age >= self.settle or (age >= SETTLE_MIN and t - since >= self.settle_max_s)

    @staticmethod
    def _restart(st: BaselineState) -> BaselineState:
        """New, or back after a silence: the level starts afresh; the spread, the
        daily profile, the habits of the sensor and the level's wander carry over."""
        return BaselineState(
            level=LevelState(wander=st.level.wander),
            spread=SpreadState(var=st.spread.var, quantum=st.spread.quantum),
            profile=st.profile,
            stuck=replace(st.stuck, repeats=0),
            values=st.values,
            tolerance=st.tolerance,
            count=st.count,
        )

    def tolerance(self, st: BaselineState, t: float) -> float:
        """How much wider than set the limits are for this series at ``t``: 1 while it
        surprises (opens alarms) no more often than ``budget_per_day``, growing with the
        square root of how much more often it does, at most ``max_tolerance``."""
        tol = st.tolerance
        if tol.surprises <= 0.0:
            return 1.0
        memory = self.tolerance_days * 86400.0
        surprises = tol.surprises * exp(-max(t - tol.at, 0.0) / memory)
        ratio = surprises / (self.budget_per_day * self.tolerance_days)
        return 1.0 if ratio <= 1.0 else min(ratio**self.tolerance_power, self.max_tolerance)

    def routine(self, tol: ToleranceState, t: float, size: float) -> bool:
        """Whether a change of ``size`` spreads is routine for this series: it made at
        least ``routine_n`` changes of ``routine_share`` of that size or more within
        ``tolerance_days`` (a flow that steps with its pumps several times a day)."""
        since = t - self.tolerance_days * 86400.0
        bar = self.routine_share * size
        return sum(1 for at, z in tol.changes if at >= since and z >= bar) >= self.routine_n

    def _changed(self, tol: ToleranceState, t: float, size: float) -> ToleranceState:
        """The tolerance state after a change of level of ``size`` spreads at ``t``."""
        return replace(tol, changes=(*tol.changes[-(_CHANGES - 1) :], (t, size)))

    def _surprised(self, tol: ToleranceState, t: float) -> ToleranceState:
        """The tolerance state after an alarm opened at ``t``."""
        if isnan(tol.at):
            return replace(tol, surprises=1.0, at=t)
        kept = tol.surprises * exp(-max(t - tol.at, 0.0) / (self.tolerance_days * 86400.0))
        return replace(tol, surprises=kept + 1.0, at=t)

    # -- one reading

    def step(self, state: BaselineState, t: float, x: float) -> tuple[BaselineState, Step]:
        st = state
        if t - st.last_ts > self.max_gap_s or isnan(st.level.value):
            st = self._restart(st)
        values = st.values.seen(x)
        if values.many and not st.values.many and st.count >= self.warmup:
            # A channel of two values turned analog: its level and spread start now.
            st = replace(self._restart(st), spread=SpreadState(quantum=st.spread.quantum))
        spread = st.spread.with_change(x - st.last_x)
        seasonal = self._profile.expected(st.profile, t) if self.daily else 0.0
        u = x - seasonal
        if isnan(st.level.value) or st.level.fresh < RELEARN:
            # The first readings after a (re)start set the level; nothing is judged.
            level = st.level.started(u)
            new = replace(
                st,
                level=level,
                spread=spread,
                values=values,
                count=st.count + 1,
                last_ts=t,
                last_x=x,
            )
            return new, (0.0, 0, self._quiet)

        count = st.count
        warm = count >= self.warmup
        var = st.spread.var if not isnan(st.spread.var) else 0.0
        floor = spread.floor(self.min_sigma)
        sigma = max(var, floor * floor) ** 0.5
        err = u - st.level.value
        z = err / sigma if warm else 0.0

        stuck = self._stuck.observe(st.stuck, x, st.last_x, count)
        if warm and self._stuck.stuck(stuck, x):
            # Nothing is learnt from a stuck sensor, not even how often it repeats.
            kept = replace(stuck, p_equal=st.stuck.p_equal)
            new = replace(st, count=count + 1, last_ts=t, last_x=x, stuck=kept, values=values)
            return new, (0.625, rank_of(Severity.BLUE), self._stuck_flags)
        if warm and not values.many:
            # Two values at most (a status, an on/off channel): judged by its runs only.
            new = replace(st, count=count + 1, last_ts=t, last_x=x, stuck=stuck, values=values)
            return new, (0.0, 0, self._quiet)

        m = self.tolerance(st, t)
        z_limit = self.z_limit * m
        h, k, spread_h = self.cusum_h * m, self.cusum_k * m, self.spread_h * m
        learning_day = self.daily and st.profile.days < 1.0
        if learning_day:
            # The learning day: the errors carry the day's shape, not yet learnt; only
            # changes well beyond it are judged.
            k, h, spread_h = 2.0 * k, 2.0 * h, 2.0 * spread_h
        reach = 0.5 * h if self.daily else h  # with a profile, no one reading is a change
        shift = st.shift.step(min(max(z, -reach), reach), k, err)
        spike = warm and abs(z) >= z_limit
        # One reading's evidence of a wider spread is capped; a spike, raised on its
        # own, counts for less (a lone spike is not a wider spread).
        cap = self.spike_cap if spike else self.spread_cap
        widen = st.widen.step(min(z * z, cap), self.spread_k, err)
        evidence = max(abs(z) / z_limit, shift.pos / h, shift.neg / h, widen.stat / spread_h)

        w = _Work(st, var)
        dx = x - st.last_x
        if learning_day and not isnan(dx):
            gain = max(self.spread_alpha, 1.0 / count)
            w.noise += gain * (min(dx * dx / 2.0, 9.0 * var) - w.noise)
        # Slow drifts are judged where the profile carries the day (elsewhere the
        # level's own wander would be taken for one).
        drift = 0.0
        if warm and self.daily and st.profile.days >= 1.0:
            limit = m * max(sigma * self.drift_limit, self.wander_k * st.level.wander**0.5)
            drift = (w.level - w.reference) / limit
        evidence = max(evidence, abs(drift))
        changed = warm and (shift.pos >= h or shift.neg >= h)
        # A wider spread: errors both ways (one-sided ones are a change of level).
        widened = (
            warm
            and not changed
            and widen.stat >= spread_h
            and max(shift.pos, shift.neg) < 0.5 * h
            and widen.two_sided()
        )

        ep = st.episode
        tolerance = st.tolerance
        if changed and ep.code == CALM:
            size = abs(shift.change(h)[0]) / sigma
            if self.routine(tolerance, t, size):
                # A change like those the series makes routinely: re-based, not raised.
                w.level += shift.change(h)[0]
                shift, widen, changed = _NO_SHIFT, _NO_WIDEN, False
            tolerance = self._changed(tolerance, t, size)
        if changed:
            ep = self._shift_confirmed(st, w, shift, evidence, t, h)
            shift, widen = _NO_SHIFT, _NO_WIDEN
        elif widened:
            ep = self._spread_confirmed(st, w, widen, evidence, t)
            widen = _NO_WIDEN
        elif ep.code == CALM and abs(drift) >= 1.0:
            # The level has wandered from where it has stood for days: a slow drift,
            # too slow for the CUSUM against the level that trails it.
            ep = EpisodeState(
                code=UP if drift > 0 else DOWN,
                onset=self._onset(st, evidence),
                old_level=w.reference,
                old_var=var,
                moving_from=w.level,
                moved_at=t,
            )
            w.level_n, w.age = int(1.0 / self.alpha), 0
        elif ep.code == CALM:
            self._learn_calm(st, w, err, sigma, warm, spike, seasonal, t)
        else:
            ep = self._in_episode(st, w, shift, err, sigma * m, floor, spike, seasonal, u, t, h)
            if ep.code == CALM:
                shift = _NO_SHIFT

        # A raised reading stays raised while the evidence of a wider spread is past
        # half its limit: the spikes that announce a wider spread are its episode.
        held = ep.code == CALM and st.prev_score >= 0.5 and widen.stat >= 0.5 * spread_h
        if ep.code != CALM or spike or held:
            score = self._raised_score(st, ep, evidence, u, z_limit, floor)
            rank = rank_of(self.severity)
        else:
            score, rank = (0.49 * min(evidence, 1.0) if warm else 0.0), 0
        if ep.code != CALM and ep.age != w.age:
            ep = replace(ep, age=w.age)
        new = BaselineState(
            level=LevelState(
                value=w.level,
                fresh=st.level.fresh + 1,
                n=w.level_n,
                reference=w.reference,
                wander=w.wander,
            ),
            spread=SpreadState(var=w.var, noise=w.noise, quantum=spread.quantum),
            shift=shift,
            widen=widen,
            profile=w.profile,
            stuck=stuck,
            episode=ep,
            values=values,
            tolerance=self._surprised(tolerance, t) if rank and st.prev_score < 0.5 else tolerance,
            count=count + 1,
            last_ts=t,
            last_x=x,
            prev_score=score if rank else 0.0,
        )
        code = ep.code
        flags = (
            (self.name, (spike or held) and rank > 0),
            ("drift_up", code == UP),
            ("drift_down", code == DOWN),
            ("variance", code == SPREAD),
            ("flatline", False),
        )
        return new, (score, rank, flags)

    def _raised_score(
        self,
        st: BaselineState,
        ep: EpisodeState,
        evidence: float,
        u: float,
        z_limit: float,
        floor: float,
    ) -> float:
        """The score of a raised reading: by its evidence (for a shift, also by its
        distance from the old level); a spike is its own onset, an episode never scores
        above its onset, and an alarm that goes on never above its start."""
        current = evidence
        if ep.code in (UP, DOWN):
            old_sigma = max(ep.old_var, floor * floor) ** 0.5
            current = max(current, abs(u - ep.old_level) / (old_sigma * z_limit))
        now = evidence_score(current)
        score = now if ep.code == CALM else max(0.5, min(ep.onset, now))
        if st.prev_score >= 0.5:
            score = min(score, st.prev_score)
        return score

    def _shift_confirmed(
        self, st: BaselineState, w: _Work, shift: ShiftTest, evidence: float, t: float, h: float
    ) -> EpisodeState:
        """A change of level confirmed: re-based on the mean of the readings since it
        began; the level before it (or before the spread it interrupts) is kept."""
        ep = st.episode
        old_level, old_var, onset = ep.old_level, ep.old_var, ep.onset
        if ep.code == CALM:
            old_level, old_var, onset = w.level, w.var, self._onset(st, evidence)
        elif ep.code == SPREAD:
            old_level = w.level
        size, w.level_n = shift.change(h)
        w.level += size
        w.age = 0
        return EpisodeState(
            code=UP if w.level > old_level else DOWN,
            onset=onset,
            old_level=old_level,
            old_var=old_var,
            moving_from=w.level,
            moved_at=t,
        )

    def _spread_confirmed(
        self, st: BaselineState, w: _Work, widen: WidenTest, evidence: float, t: float
    ) -> EpisodeState:
        """A wider spread confirmed: the spread re-based on the run's squared errors
        (within a shift, the shift goes on with the new spread)."""
        ep = st.episode
        if ep.code == CALM:
            ep = EpisodeState(
                code=SPREAD,
                onset=self._onset(st, evidence),
                old_level=w.level,
                old_var=w.var,
                moved_at=t,
            )
        elif ep.code == SPREAD:
            ep = replace(ep, back=0, moved_at=t)
        else:
            ep = replace(ep, back=0)
        w.var = widen.sum_sq / widen.n
        w.age = 0
        return ep

    def _learn_calm(
        self,
        st: BaselineState,
        w: _Work,
        err: float,
        sigma: float,
        warm: bool,
        spike: bool,
        seasonal: float,
        t: float,
    ) -> None:
        """Calm: the level, the spread, the profile, the reference and the wander learn.

        Errors are clipped at 2.5 spreads, so that a step in the making or a near-spike
        moves nothing much (a series without a profile learns every error: its level and
        spread must follow its day); a spike teaches nothing."""
        if spike:
            return
        dt = t - st.last_ts
        clip = 2.5 * sigma if warm and self.daily else INF
        e = min(max(err, -clip), clip)
        if not self.daily or st.profile.days >= 1.0:
            w.level += max(self._level_gain(dt), 1.0 / (st.level.fresh + 1)) * e
        gain = self.spread_alpha if self.daily else self.alpha
        w.var += max(gain, 1.0 / st.count) * (min(err * err, clip * clip) - w.var)
        moved = 0.0
        if self.daily:
            w.profile, moved = self._profile.learn(st.profile, t, seasonal + e, dt)
            w.level += moved
        if moved and w.noise > 0.0:
            # The learning day is over: the spread of its errors held the day's shape;
            # the noise is what the differences of readings say. Errors against a
            # one-day profile also carry the profile's own error: a slot learnt from
            # few readings (coarse intervals) is uncertain by about their share of the
            # noise, counted twice for the two slots a reading is read between.
            share = min(max(dt, 0.0) / SLOT_S, 1.0)
            w.var = w.noise * (1.0 + 2.0 * share)
        if self.daily and (w.profile.days < 1.0 or moved):
            w.reference = w.level
            return
        gain = 1.0 - exp(-max(dt, 0.0) / (self.reference_hours * 3600.0))
        w.reference += gain * (w.level - w.reference)
        if w.profile.days >= 1.0:
            # A reading teaches the wander at most ``wander_cap`` of today's drift limit:
            # one drift cannot teach it much, a level that keeps wandering widens it
            # day by day.
            limit = max(self.drift_limit * sigma, self.wander_k * w.wander**0.5)
            cap = (self.wander_cap * limit) ** 2
            d2 = min((w.level - w.reference) ** 2, cap)
            wgain = 1.0 - exp(-max(dt, 0.0) / (self.wander_hours * 3600.0))
            w.wander += wgain * (d2 - w.wander)

    def _in_episode(
        self,
        st: BaselineState,
        w: _Work,
        shift: ShiftTest,
        err: float,
        sigma: float,
        floor: float,
        spike: bool,
        seasonal: float,
        u: float,
        t: float,
        h: float,
    ) -> EpisodeState:
        """An open episode goes on: the new level or spread is learnt, and the episode
        clears when the series is back where it was, or when the new level or spread
        has settled (a shift with ``hold_shift`` stays until acknowledged)."""
        ep = st.episode
        dt = t - st.last_ts
        old_level, old_var = ep.old_level, ep.old_var
        old_sigma = max(old_var, floor * floor) ** 0.5
        moving_from, moved_at = ep.moving_from, ep.moved_at
        cleared = False
        if ep.code == SPREAD:
            back = ep.back + 1 if err * err < 4.0 * old_var else 0
            w.var += max(self.alpha, 1.0 / (w.age + 1)) * (min(err * err, 25.0 * w.var) - w.var)
            if self.daily and not spike:
                clip = 2.5 * sigma
                e = min(max(err, -clip), clip)
                w.profile, moved = self._profile.learn(st.profile, t, seasonal + e, dt)
                w.level += moved
                old_level += moved
            if back >= 10:
                w.var, cleared = old_var, True
            elif self._settled(w.age, t, moved_at):
                cleared = True
        else:
            near = abs(u - old_level) < min(abs(u - w.level), 3.0 * old_sigma)
            back = ep.back + 1 if near else 0
            if not spike:
                e = min(max(err, -2.5 * sigma), 2.5 * sigma)
                w.level_n += 1
                w.level += max(self.alpha, 1.0 / w.level_n) * e
            # A reading still plausible against the old level teaches the profile (a
            # weekend's later morning is learnt, not alarmed at every weekend); a
            # dropout or a step does not.
            e_old = u - old_level
            if (
                self.daily
                and abs(e_old) < 3.0 * old_sigma
                and self._profile.slot_days(st.profile, t) < self.episode_learn_days
            ):
                clip = 2.5 * old_sigma
                e_old = min(max(e_old, -clip), clip)
                w.profile, moved = self._profile.learn(st.profile, t, seasonal + e_old, dt)
                w.level += moved
                old_level += moved
            if back >= self.back:
                w.level, w.var, cleared = old_level, old_var, True
            elif self._settled(w.age, t, moved_at):
                moving = (w.level - moving_from) * ep.code > self.still_moving * sigma
                if moving or max(shift.pos, shift.neg) >= 0.5 * h:
                    moving_from, w.age, moved_at = w.level, 0, t  # a drift still under way
                elif t - moved_at < self.settle_s:
                    pass  # still for too short a time yet: a slow drift may go on
                elif not self.hold_shift:
                    cleared = True
        if cleared:
            w.reference = w.level
            return _CALM
        return replace(
            ep, old_level=old_level, back=back, moving_from=moving_from, moved_at=moved_at
        )


class _Work:
    """The values one step of :class:`Baseline` may change, taken from the state before
    it and written into the state after it."""

    __slots__ = (
        "age",
        "level",
        "level_n",
        "noise",
        "profile",
        "reference",
        "var",
        "wander",
    )

    def __init__(self, st: BaselineState, var: float) -> None:
        lv = st.level
        self.level = lv.value
        self.level_n = lv.n
        self.var = var
        self.noise = st.spread.noise
        self.reference = lv.reference if not isnan(lv.reference) else lv.value
        self.wander = lv.wander
        self.profile = st.profile
        self.age = st.episode.age + 1
