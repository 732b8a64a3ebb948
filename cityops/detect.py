"""``cityops detect``: the streaming detectors, run causally over a recorded series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from cityops.errors import CityOpsError
from lifeline.detect.series import SeriesDetector


def detect_csv(path: Path, metric: str, kind: str, out: Path) -> dict[str, int]:
    """Score every row of ``path`` and write ``out``; return counts for the summary.

    Rows may come unsorted, with duplicate or unparseable times and missing or
    non-numeric values: each input row gets one output row in its own place; rows
    without a usable time or value are scored 0 and flagged ``missing``.
    """
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise CityOpsError(f"cannot read {path} as CSV: {exc}") from exc
    if "timestamp" not in frame.columns or metric not in frame.columns:
        raise CityOpsError(
            f"{path} needs a 'timestamp' column and a {metric!r} column; it has "
            f"{', '.join(frame.columns) or 'none'}"
        )
    ts = _parse_times(frame["timestamp"])
    values = pd.to_numeric(frame[metric].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    usable = ~np.isnan(ts) & np.isfinite(values)
    order = np.flatnonzero(usable)
    order = order[np.argsort(ts[order], kind="stable")]
    detector = SeriesDetector.for_metric(kind, metric)
    _, result = detector.run(detector.init(), ts[order], values[order])
    score = np.zeros(len(frame))
    score[order] = result.score
    flags = [["missing"] for _ in range(len(frame))]
    severities = [""] * len(frame)
    for pos, row in enumerate(order):
        flags[row] = result.row_flags(pos)
        sev = result.severity(pos)
        severities[row] = sev.value if sev else ""
    pd.DataFrame(
        {
            "timestamp": frame["timestamp"],
            "value": frame[metric],
            "anomaly_score": np.round(score, 4),
            "flags": [";".join(f) for f in flags],
            "severity": severities,
        }
    ).to_csv(out, index=False)
    return {"rows": len(frame), "scored": int(order.size), "anomalous": int(np.sum(score >= 0.5))}


def _parse_times(column: pd.Series) -> npt.NDArray[np.float64]:
    text = column.str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().mean() > 0.9:
        # Epoch seconds, or milliseconds when the numbers are that large.
        secs: npt.NDArray[np.float64] = numeric.to_numpy(dtype=np.float64)
        return np.where(secs > 1e11, secs / 1000.0, secs)
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    # Seconds since the epoch whatever unit pandas keeps the times in (NaT stays NaN).
    since = (parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    out: npt.NDArray[np.float64] = since.to_numpy(dtype=np.float64, na_value=np.nan)
    return out
