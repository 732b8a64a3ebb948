"""Vectorised, causal building blocks for detectors, with state carried across batches.

Each function takes a batch of one series plus the state left by the previous batch and
returns its per-row result and the new state, so a series cut into batches anywhere
gives exactly what the whole series gives in one batch.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]


def hold(events: npt.NDArray[np.int8], initial: int) -> tuple[npt.NDArray[np.int8], int]:
    """Forward-fill: each row takes the last event (0 or 1) at or before it; -1 = none.

    Rows before the batch's first event take ``initial``.
    """
    n = events.size
    idx = np.where(events >= 0, np.arange(n), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, events[np.maximum(idx, 0)], initial).astype(np.int8)
    return out, int(out[-1]) if n else initial


def rolling_count(flags: Bool, window: int, tail: Bool) -> tuple[I64, Bool]:
    """How many of the last ``window`` rows (this one included) are true."""
    joined = np.concatenate([tail, flags]).astype(np.int64)
    csum = np.concatenate([[0], np.cumsum(joined)])
    ends = np.arange(tail.size + 1, joined.size + 1)
    starts = np.maximum(ends - window, 0)
    counts = csum[ends] - csum[starts]
    return counts, joined[-(window - 1) :].astype(bool) if window > 1 else np.zeros(0, bool)


def run_start(flags: Bool, ts: F64, carried: float) -> tuple[F64, float]:
    """Time at which the current run of true rows began (NaN where the row is false).

    ``carried`` is the start of a run still going at the end of the previous batch.
    """
    n = flags.size
    prev = np.concatenate([[not np.isnan(carried)], flags[:-1]]) if n else flags
    starts = flags & ~prev
    idx = np.where(starts, np.arange(n), -1)
    np.maximum.accumulate(idx, out=idx)
    began = np.where(idx >= 0, ts[np.maximum(idx, 0)], carried)
    began = np.where(flags, began, np.nan)
    return began, float(began[-1]) if n and flags[-1] else float("nan")


def equal_run_length(values: F64, last_value: float, last_run: int) -> tuple[I64, float, int]:
    """Length of the run of equal values ending at each row."""
    n = values.size
    if n == 0:
        return np.zeros(0, np.int64), last_value, last_run
    prev = np.concatenate([[last_value], values[:-1]])
    same = values == prev
    idx = np.where(~same, np.arange(n), -1)
    np.maximum.accumulate(idx, out=idx)
    run = np.where(idx >= 0, np.arange(n) - idx + 1, np.arange(n) + 1 + last_run)
    return run.astype(np.int64), float(values[-1]), int(run[-1])


def cusum(x: F64, initial: float) -> tuple[F64, float]:
    """One-sided CUSUM ``S_t = max(0, S_{t-1} + x_t)`` in closed form."""
    if x.size == 0:
        return x, initial
    c = initial + np.cumsum(x)
    floor = np.minimum(np.minimum.accumulate(c), 0.0)
    s = c - floor
    return s, float(s[-1])


def ewma(x: F64, alpha: float, initial: float) -> F64:
    """``y_t = (1-alpha) y_{t-1} + alpha x_t`` with ``y_{-1} = initial``."""
    if x.size == 0:
        return x
    # Imported here: scipy.signal costs ~60 MB and 0.6 s, and the processes that only
    # read the sensor-kind catalogue (bridges, the API) never filter a series.
    from scipy.signal import lfilter

    zi = np.array([(1 - alpha) * initial])
    y, _ = lfilter([alpha], [1.0, -(1.0 - alpha)], x, zi=zi)
    return np.asarray(y, dtype=np.float64)


def previous(values: F64, last: float) -> F64:
    """Each row's previous value (``last`` for the first row)."""
    return np.concatenate([[last], values[:-1]]) if values.size else values
