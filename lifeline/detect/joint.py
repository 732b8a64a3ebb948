"""Equipment-level detection: one joint model per device whose metrics are read together
(a pump station, a water-quality station, a bridge span's gauges), which raises when the
metrics stop moving together as they usually do, even while each stays inside its own
band.

The model is streaming principal component analysis (PCA) over the device's standardised
metric vector, judged by the squared prediction error (SPE, Jackson and Mudholkar's
``Q``): the part of a reading that the principal subspace of normal behaviour cannot
explain. Hotelling's ``T²`` (the distance inside that subspace) is reported beside it
but does not raise: a joint move of the working point that keeps the relationships is
learnt, not alarmed (each metric's own detectors still watch its band).

Parts, each with its own state and step:

- :class:`Moments` — the EWMA mean and second moments of the readings over ``memory``
  readings, and the smallest change each metric has shown (its quantisation step),
  which floors its scale: a channel that holds a value for hours is not standardised by
  a zero spread.
- :class:`Subspace` — fitted from the moments by an eigendecomposition of the
  standardised covariance whenever they have taken in about 5 % of new weight; the
  leading components that explain ``explained`` of the variance span normal behaviour
  (at most ``p - 1`` of them, so that a residual always remains).
- :class:`Surprise` — the mean and spread of ``Q``'s cube root in calm times (nearly
  normal for a sum of squared errors): how surprising this device usually is. A reading
  raises that many spreads above that mean as a normal reading passes once per
  ``alarm_every_s`` (a week) at the device's reporting interval; the limit adapts to
  the device, never a fixed chi-squared quantile that real equipment rarely follows.
- :class:`JointEpisode` — one alarm per change: raised once, held while ``Q`` stays
  above ``clear_sd`` spreads, cleared after ``clear_n`` readings in a row back inside.
  An episode still open after ``settle`` readings and ``settle_s`` (6 h) is a new
  normal: the model re-learns from it (the old one kept as a prior worth ``5 p``
  readings) and the alarm clears.

Nothing is learnt from a raised reading. A reading with a missing metric is skipped (the
open episode, if any, goes on). The model may alarm once it has learnt ``max(30, 5 p)``
readings and the spread of its surprise over 30 more: :meth:`Joint.history`.

Per reading the model does a few dozen multiply-adds per metric, in plain floats (a
numpy call on a vector of five costs more than the arithmetic); numpy fits the subspace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from math import inf as INF
from math import isnan, sqrt
from operator import mul, sub, truediv
from statistics import NormalDist
from typing import Any

import numpy as np

from lifeline.detect.base import NAN, History, evidence_score, packed, rank_of
from lifeline.vocabulary import Severity

F64 = np.ndarray[Any, np.dtype[np.float64]]

_NORMAL = NormalDist()

#: readings of the surprise's spread learnt before the model may alarm
SURPRISE_MIN = 30
#: readings over which the surprise's mean and spread are learnt
SURPRISE_MEMORY = 500
#: the least spread of the cube root of ``Q``, as a share of its mean (a device that has
#: never surprised is not judged by a limit of zero width)
SURPRISE_FLOOR = 0.05


def _root(q: float) -> float:
    """The cube root of ``Q``: nearly normal for a sum of squared errors (Wilson and
    Hilferty), so its mean and spread describe the upper tail, where the log would let
    the many tiny values widen it."""
    return float(max(q, 0.0) ** (1.0 / 3.0))


Vector = tuple[float, ...]
Matrix = tuple[Vector, ...]


def _dot(a: Vector, b: Vector) -> float:
    return float(sum(map(mul, a, b)))


@lru_cache(maxsize=4096)
def _quantile_limit(alarm_every_s: float, raise_min: float, interval: float) -> float:
    share = min(0.5, max(interval, 1e-3) / alarm_every_s)
    return max(raise_min, _NORMAL.inv_cdf(1.0 - share))


def _vector(reading: Sequence[float] | F64) -> Vector:
    if isinstance(reading, np.ndarray):
        return tuple(reading.tolist())
    return tuple(map(float, reading))


@packed
@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Moments:
    """Per metric: readings learnt (``n``), EWMA ``mean`` and ``var``, the smallest
    non-zero change seen (``step``: the quantisation), the last reading, and the scale
    a reading is standardised by: its spread, at least half its quantisation step and a
    millionth of its level."""

    n: int
    mean: Vector
    var: Vector
    step: Vector
    last: Vector
    scale: Vector

    @classmethod
    def empty(cls, p: int) -> Moments:
        zeros = (0.0,) * p
        return cls(n=0, mean=zeros, var=zeros, step=(INF,) * p, last=(NAN,) * p, scale=(1.0,) * p)

    def learn(self, x: Vector, memory: float) -> Moments:
        n = self.n + 1
        gain = max(1.0 / n, 1.0 / memory)
        keep = 1.0 - gain
        d = tuple(map(sub, x, self.mean))
        mean = tuple([m + gain * e for m, e in zip(self.mean, d, strict=True)])
        var = tuple([keep * (v + gain * e * e) for v, e in zip(self.var, d, strict=True)])
        step = tuple(
            [
                s if a == b or isnan(b) else min(s, abs(a - b))
                for s, a, b in zip(self.step, x, self.last, strict=True)
            ]
        )
        scale = tuple(
            [
                max(sqrt(max(v, 0.0)), 0.5 * s if s < INF else 0.0, 1e-9 + 1e-6 * abs(m))
                for v, s, m in zip(var, step, mean, strict=True)
            ]
        )
        return Moments(n=n, mean=mean, var=var, step=step, last=x, scale=scale)

    def with_n(self, n: int) -> Moments:
        return Moments(
            n=n, mean=self.mean, var=self.var, step=self.step, last=self.last, scale=self.scale
        )

    def standardised(self, x: Vector) -> Vector:
        return tuple(map(truediv, map(sub, x, self.mean), self.scale))


@packed
@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Subspace:
    """The covariance of standardised readings (``cov``), and the principal subspace
    fitted from it: the projection onto the residual space (``residual``, its rows:
    I - V Vᵀ for the leading eigenvectors V), the leading components scaled to unit
    variance (``whiten``, one row per component: V / √λ, for ``T²``); ``since_fit``
    readings learnt since the last fit."""

    cov: Matrix
    residual: Matrix
    whiten: Matrix
    since_fit: int = 0

    @property
    def fitted_yet(self) -> bool:
        return bool(self.whiten)

    @classmethod
    def empty(cls, p: int) -> Subspace:
        eye = tuple(tuple(float(i == j) for j in range(p)) for i in range(p))
        return cls(cov=((0.0,) * p,) * p, residual=eye, whiten=())

    def learn(self, z: Vector, gain: float) -> Subspace:
        keep = 1.0 - gain
        gz = [gain * v for v in z]
        cov = tuple(
            tuple([keep * a + zi * b for a, b in zip(row, gz, strict=True)])
            for zi, row in zip(z, self.cov, strict=True)
        )
        return Subspace(
            cov=cov, residual=self.residual, whiten=self.whiten, since_fit=self.since_fit + 1
        )

    def fitted(self, explained: float) -> Subspace:
        values, vectors = np.linalg.eigh(np.array(self.cov))
        order = np.argsort(values)[::-1]
        values = np.maximum(values[order], 1e-12)
        share = np.cumsum(values) / values.sum()
        p = values.size
        k = min(int(np.searchsorted(share, explained)) + 1, max(p - 1, 1))
        basis = vectors[:, order[:k]]
        return Subspace(
            cov=self.cov,
            residual=tuple(map(tuple, (np.eye(p) - basis @ basis.T).tolist())),
            whiten=tuple(map(tuple, (basis / np.sqrt(values[:k])).T.tolist())),
        )

    def statistics(self, z: Vector) -> tuple[float, float, Vector]:
        """``Q`` (the squared residual), ``T²`` and the residual per metric."""
        residual = tuple([_dot(row, z) for row in self.residual])
        t2 = sum([_dot(w, z) ** 2 for w in self.whiten])
        return _dot(residual, residual), t2, residual


@packed
@dataclass(frozen=True, kw_only=True, slots=True)
class Surprise:
    """The mean and mean absolute deviation of ``Q``'s cube root over calm readings
    (``n`` of them), over the last :data:`SURPRISE_MEMORY` or so: the model's first
    judged readings, before it has settled, are soon forgotten."""

    n: int = 0
    mean: float = 0.0
    mad: float = 0.0

    def spread(self) -> float:
        """A standard deviation's worth: 1.25 mean absolute deviations."""
        return max(1.25 * self.mad, SURPRISE_FLOOR * abs(self.mean), 1e-9)

    def learn(self, lq: float) -> Surprise:
        n = self.n + 1
        gain = max(1.0 / n, 1.0 / SURPRISE_MEMORY)
        # A reading far above the usual teaches the spread only as much as a
        # three-spread one: a few near-misses must not widen the limit for good.
        d = min(lq - self.mean, 3.0 * self.spread()) if self.n else lq - self.mean
        mean = self.mean + gain * d
        return Surprise(n=n, mean=mean, mad=self.mad + gain * (abs(lq - mean) - self.mad))


@packed
@dataclass(frozen=True, kw_only=True, slots=True)
class JointEpisode:
    """The open episode: whether one is open, its onset score, readings since it
    opened (``age``) and in a row back inside the usual surprise (``back``), the
    metrics that contributed most at its onset (most first), and when it opened."""

    open: bool = False
    onset: float = 0.0
    age: int = 0
    back: int = 0
    top: tuple[int, ...] = ()
    #: when it opened
    since: float = NAN


_CALM = JointEpisode()


@packed
@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class JointState:
    """A device's joint model: its parts, the readings judged or learnt (``count``),
    the time of the last complete reading and the usual interval between them."""

    moments: Moments
    subspace: Subspace
    surprise: Surprise = Surprise()
    episode: JointEpisode = _CALM
    count: int = 0
    last_ts: float = NAN
    #: the usual time between readings (EWMA)
    interval: float = NAN


@packed
@dataclass(frozen=True, slots=True)
class JointStep:
    """One reading's result: score (0.5 and above raises), severity rank, the SPE
    ``q`` and ``t2``, how many spreads of its usual surprise ``q`` stands
    (``surprise``), each metric's share of ``q`` while an episode is open, and the
    metrics named by the open episode (most contributing first)."""

    score: float
    rank: int
    q: float
    t2: float
    surprise: float
    shares: tuple[float, ...]
    top: tuple[str, ...]


@dataclass(frozen=True)
class Joint:
    """The joint model of a device's ``metrics`` (see the module docstring)."""

    metrics: tuple[str, ...]
    explained: float = 0.99
    memory: float = 2000.0
    refit: int = 0
    #: on normal behaviour, a false alarm no more often than this: the raising limit is
    #: the normal quantile of one reading's share of it (a device read every minute is
    #: held to a stricter limit per reading than one read every hour)
    alarm_every_s: float = 7 * 86400.0
    raise_min: float = 2.5
    clear_sd: float = 2.0
    clear_n: int = 12
    settle: int = 100
    settle_s: float = 6 * 3600.0
    top_n: int = 3
    severity: Severity = Severity.YELLOW
    name: str = "joint"

    @property
    def p(self) -> int:
        return len(self.metrics)

    def _memory(self) -> float:
        return max(self.memory, 50.0 * self.p)

    def _refit(self) -> int:
        return self.refit or max(10, self.p)

    def _learning(self) -> int:
        return max(30, 5 * self.p)

    def history(self, interval_s: float | None = None) -> History:
        """How much history the model needs before it may alarm."""
        readings = self._learning() + SURPRISE_MIN
        seconds = readings * interval_s if interval_s else NAN
        return History(readings=readings, seconds=seconds, note="joint model and its surprise")

    def init(self) -> JointState:
        return JointState(moments=Moments.empty(self.p), subspace=Subspace.empty(self.p))

    def fits(self, state: JointState) -> bool:
        """Whether ``state`` is a state of a model of this many metrics."""
        return isinstance(state.moments, Moments) and len(state.moments.last) == self.p

    def _learn(self, st: JointState, x: Vector, lq: float | None, t: float) -> JointState:
        moments = st.moments.learn(x, self._memory())
        z = moments.standardised(x)
        subspace = st.subspace.learn(z, max(1.0 / moments.n, 1.0 / self._memory()))
        if not subspace.fitted_yet or subspace.since_fit >= self._refit():
            subspace = subspace.fitted(self.explained)
        dt = t - st.last_ts
        interval = st.interval
        if dt > 0.0:
            interval = dt if isnan(interval) else interval + 0.05 * (dt - interval)
        return JointState(
            moments=moments,
            subspace=subspace,
            surprise=st.surprise if lq is None else st.surprise.learn(lq),
            episode=st.episode,
            count=st.count + 1,
            last_ts=t,
            interval=interval,
        )

    def _limit(self, interval: float) -> float:
        """:meth:`raise_limit` at the interval rounded to three significant digits: the
        normal quantile is worked out once per device rate, not per reading."""
        return self.raise_limit(interval if isnan(interval) else float(f"{interval:.3g}"))

    def raise_limit(self, interval: float) -> float:
        """How many spreads above its usual surprise a reading raises, for readings
        ``interval`` seconds apart: the quantile that a normal reading passes once per
        ``alarm_every_s``, at least ``raise_min``."""
        if isnan(interval):
            return max(self.raise_min, _NORMAL.inv_cdf(1.0 - 1e-3))
        return _quantile_limit(self.alarm_every_s, self.raise_min, interval)

    def step(
        self, state: JointState, t: float, reading: Sequence[float] | F64
    ) -> tuple[JointState, JointStep]:
        """The state after one complete reading (a value per metric, in the order of
        ``metrics``; NaN where one is missing), and what it shows."""
        st = state
        x = _vector(reading)
        if isnan(sum(x)):
            ep = st.episode
            score = ep.onset if ep.open else 0.0
            rank = rank_of(self.severity) if ep.open else 0
            return st, JointStep(score, rank, NAN, NAN, NAN, (), self._names(ep.top))
        if not self._ready(st):
            return self._learn(st, x, None, t), JointStep(0.0, 0, NAN, NAN, NAN, (), ())
        q, t2, residual = st.subspace.statistics(st.moments.standardised(x))
        lq = _root(q)
        sur = st.surprise
        judged = sur.n >= SURPRISE_MIN
        level = (lq - sur.mean) / sur.spread() if judged else 0.0
        ep = st.episode
        limit = self._limit(st.interval)
        evidence = level / limit
        if not ep.open:
            if judged and level > limit:
                top = tuple(sorted(range(self.p), key=lambda i: -abs(residual[i])))
                top = top[: self.top_n]
                ep = JointEpisode(open=True, onset=evidence_score(evidence), top=top, since=t)
        else:
            back = ep.back + 1 if level < self.clear_sd else 0
            ep = JointEpisode(
                open=True, onset=ep.onset, age=ep.age + 1, back=back, top=ep.top, since=ep.since
            )
            if back >= self.clear_n:
                ep = _CALM
            elif ep.age >= self.settle and t - ep.since >= self.settle_s:
                # Open for ``settle`` readings and ``settle_s``: a new normal. Re-learn
                # from it, the old model kept as a prior worth a few readings.
                prior = st.moments.with_n(min(st.moments.n, 5 * self.p))
                st = replace(st, moments=prior, surprise=Surprise(), episode=_CALM)
                ep = _CALM
        if ep.open:
            score = max(0.5, min(ep.onset, evidence_score(evidence)))
            rank = rank_of(self.severity)
            new = replace(st, episode=ep, count=st.count + 1, last_ts=t)
        else:
            score = 0.49 * min(max(evidence, 0.0), 1.0)
            rank = 0
            new = self._learn(st, x, lq, t)
            if new.episode is not ep:
                new = replace(new, episode=ep)
        out = JointStep(
            score,
            rank,
            q,
            t2,
            level,
            self._shares(residual, q) if ep.open else (),
            self._names(ep.top),
        )
        return new, out

    @staticmethod
    def _shares(residual: Vector, q: float) -> tuple[float, ...]:
        return tuple([r * r / q for r in residual]) if q > 0.0 else ()

    def _names(self, top: tuple[int, ...]) -> tuple[str, ...]:
        return tuple(self.metrics[i] for i in top)

    def _ready(self, st: JointState) -> bool:
        """Whether the model has learnt enough to judge a reading."""
        return st.subspace.fitted_yet and st.moments.n >= self._learning()

    def learn(self, state: JointState, t: float, reading: Sequence[float] | F64) -> JointState:
        """Learn from a reading known to be normal (a period an operator vouches for),
        without judging it."""
        x = _vector(reading)
        if isnan(sum(x)):
            return state
        lq = None
        if self._ready(state):
            lq = _root(state.subspace.statistics(state.moments.standardised(x))[0])
        return self._learn(state, x, lq, t)
