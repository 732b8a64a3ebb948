"""What every detector shares: severity ranks, the per-row output of ``run`` and the
one-row output of ``step``, and how a rank and a closeness become a score.

Severity ranks: 0 none, 1 blue (IV), 2 yellow (III), 3 orange (II), 4 red (I).
A row's score is in [0, 1]; 0.5 and above means the detector raises at that row.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from math import isnan
from operator import attrgetter
from typing import Any, Literal, TypeVar

import numpy as np

from lifeline.detect.kernels import F64, Bool
from lifeline.vocabulary import Severity

I8 = np.ndarray[Any, np.dtype[np.int8]]
Direction = Literal["above", "below"]
C = TypeVar("C", bound=type)


def packed(cls: C) -> C:
    """Pickle a slotted frozen dataclass as its field values in field order: the layout
    :mod:`dataclasses` gives it (states pickled before load the same), without its scan
    of the fields on every object, which cost as much as the rest of the pickling. A
    worker pickles a state for every series each checkpoint."""
    names = tuple(f.name for f in fields(cls))
    get = attrgetter(*names)
    setattr_ = object.__setattr__

    def __getstate__(self: Any) -> tuple[Any, ...]:
        return get(self) if len(names) > 1 else (get(self),)

    def __setstate__(self: Any, state: Any) -> None:
        for name, value in zip(names, state, strict=True):
            setattr_(self, name, value)

    setattr(cls, "__getstate__", __getstate__)  # noqa: B010  # on the class, not a field
    setattr(cls, "__setstate__", __setstate__)  # noqa: B010
    return cls


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


def scores(active_rank: I8, closeness: F64) -> F64:
    """0.5-1 where a rank is active (more for higher ranks), else below 0.5."""
    return np.where(active_rank > 0, 0.5 + 0.125 * active_rank, 0.49 * np.clip(closeness, 0.0, 1.0))


def row_score(rank: int, closeness: float) -> float:
    """``scores`` for one row."""
    if rank > 0:
        return 0.5 + 0.125 * rank
    if isnan(closeness):  # NaN stays NaN, as np.clip leaves it
        return closeness
    return 0.49 * min(max(closeness, 0.0), 1.0)


def row_run_start(flag: bool, t: float, carried: float) -> float:
    """The kernel ``run_start`` for one row: the start of the run this row belongs to, or NaN."""
    if not flag:
        return NAN
    return t if isnan(carried) else carried


#: one row's result: (score, rank, flags in the order ``run`` reports them)
Step = tuple[float, int, tuple[tuple[str, bool], ...]]
NAN = float("nan")
INF = float("inf")
MAX = float(np.finfo(np.float64).max)


@dataclass(frozen=True, kw_only=True)
class History:
    """How much history a detector needs before it may alarm: ``readings`` and, where
    it also counts time, ``seconds`` (NaN when only readings count); ``note`` says what
    the history is for."""

    readings: int
    seconds: float = NAN
    note: str = ""


def evidence_score(evidence: float) -> float:
    """0.5 at the raising limit (evidence 1), towards 1 as the evidence grows."""
    return 0.5 + 0.5 * (1.0 - 1.0 / max(evidence, 1.0))
