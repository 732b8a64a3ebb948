"""All detectors of one series together: one score, one severity and the flags per row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import isnan
from typing import Any

import numpy as np

from lifeline.detect.base import History
from lifeline.detect.detectors import I8, Baseline, Detector, Levels, Step, severity_of
from lifeline.detect.kernels import F64, Bool
from lifeline.detect.rules import defaults_for
from lifeline.vocabulary import Severity

_RANKS = (1, 2, 3, 4)
_LEVEL_FLAG = {r: f"level_{Severity.from_level(5 - r).value}" for r in _RANKS}


@dataclass(frozen=True)
class SeriesOut:
    score: F64
    rank: I8
    flags: dict[str, Bool]

    def row_flags(self, i: int) -> list[str]:
        return [name for name, mask in self.flags.items() if mask[i]]

    def severity(self, i: int) -> Severity | None:
        r = int(self.rank[i])
        return severity_of(r)


class SeriesDetector:
    """Runs a series' detectors over each batch; the state is a tuple of theirs."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = tuple(detectors)

    @classmethod
    def for_metric(cls, kind: str, metric: str) -> SeriesDetector:
        return cls(defaults_for(kind, metric))

    def init(self) -> tuple[Any, ...]:
        return tuple(d.init() for d in self.detectors)

    def history(self) -> tuple[tuple[str, History], ...]:
        """How much history each detector of the series needs before it may alarm
        (each judges as soon as its own is in)."""
        return tuple((type(d).__name__, d.history()) for d in self.detectors)

    def run(self, state: tuple[Any, ...], ts: F64, v: F64) -> tuple[tuple[Any, ...], SeriesOut]:
        n = v.size
        score = np.zeros(n)
        rank = np.zeros(n, np.int8)
        flags: dict[str, Bool] = {}
        new_state = []
        for det, st in zip(self.detectors, state, strict=True):
            st2, out = det.run(st, ts, v)
            new_state.append(st2)
            np.maximum(score, out.score, out=score)
            np.maximum(rank, out.rank, out=rank)
            if isinstance(det, Levels):
                for r in _RANKS:
                    name = Severity.from_level(5 - r).value
                    hit = out.rank == r
                    if hit.any() or f"level_{name}" in flags:
                        flags[f"level_{name}"] = flags.get(f"level_{name}", np.zeros(n, bool)) | hit
            else:
                for name, mask in out.flags.items():
                    flags[name] = flags.get(name, np.zeros(n, bool)) | mask
        return tuple(new_state), SeriesOut(score, rank, flags)

    def release(self, state: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The state with the lasting shifts of its adaptive baselines accepted as the
        new normal (an operator acknowledged them); None when none was open."""
        out, released = list(state), False
        for i, (det, st) in enumerate(zip(self.detectors, state, strict=True)):
            if isinstance(det, Baseline):
                new = det.release(st)
                if new is not None:
                    out[i], released = new, True
        return tuple(out) if released else None

    def step(self, state: tuple[Any, ...], t: float, x: float) -> tuple[tuple[Any, ...], Step]:
        """One reading: what :meth:`run` gives for a one-row batch, without numpy.

        The flags are those raised, in the order ``run`` lists them.
        """
        score, rank = 0.0, 0
        order: dict[str, bool] = {}
        new_state = []
        for det, st in zip(self.detectors, state, strict=True):
            st2, (s, r, flags) = det.step(st, t, x)
            new_state.append(st2)
            if s > score or isnan(s):
                score = s
            rank = max(rank, r)
            if isinstance(det, Levels):
                if r:
                    order[_LEVEL_FLAG[r]] = True
            else:
                for name, hit in flags:
                    order[name] = order.get(name, False) or hit
        raised = tuple((name, True) for name, hit in order.items() if hit)
        return tuple(new_state), (score, rank, raised)
