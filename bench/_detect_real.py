"""``cityops bench detect --real``: the platform's detection judged on public labelled
data that nobody here wrote, each data set scored by its own published metric.

A data set is a CSV of one piece of equipment: a time column, a label column and every
other numeric column a metric read at that time. The platform watches it as it would a
device of the generic kind: every metric through its own default detectors (the
adaptive baseline and the range checks) and all of them together through the joint model
(:mod:`lifeline.detect.joint`); the device alarms at a row when any of them raises. Rows
of the learning files are streamed first (the joint model learns them as known-normal);
then the test rows, one at a time, causally. A missing value skips that metric's reading
(and the joint model's row).

Beside the platform: each part alone, and the trivial references — no alarm, an alarm
always on, and a rolling z-score per metric (60 readings, five deviations, any metric).

Built in (``../shared/datasets``, or ``CITYOPS_DATASETS``; see its README for sources):

- ``batadal``: BATADAL, C-Town SCADA, hourly, 43 tags; learn ``training_1.csv``, judge
  ``test.csv`` (7 attacks); S, S_TTD, S_CM, TPR, TNR (:func:`bench._scoring.events_score`).
- ``gecco``: GECCO 2018 drinking-water quality, one minute, nine sensors, 51 events;
  row-wise F1 after the first 14 days (:func:`bench._scoring.rows_f1`).

Any other CSV of the same shape is scored by the same code (:class:`Dataset`, and the
``--csv`` options of ``cityops bench detect``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from math import isnan
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from bench._scoring import SCORERS, episodes_score
from lifeline.detect.joint import Joint
from lifeline.detect.rules import defaults_for
from lifeline.detect.series import SeriesDetector
from lifeline.kinds import EQUIPMENT, GENERIC

F64 = np.ndarray[Any, np.dtype[np.float64]]
Mask = np.ndarray[Any, np.dtype[np.bool_]]


@dataclass(frozen=True)
class Dataset:
    """A labelled CSV of one piece of equipment, and how its authors score it."""

    name: str
    test: Path
    label: str
    time: str
    scoring: Literal["events", "rows"]
    time_format: str | None = None
    learn: tuple[Path, ...] = ()
    #: rows earlier than this many days after the first test row are not scored
    judged_after_days: float = 0.0
    #: keep only the first rows of the test file (a short run)
    limit: int | None = None
    published: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    ts: F64
    values: F64  # rows by metrics, NaN where missing
    label: Mask
    metrics: tuple[str, ...]


def datasets_root() -> Path:
    """``CITYOPS_DATASETS``, or ``shared/datasets`` beside the repository."""
    env = os.environ.get("CITYOPS_DATASETS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "datasets"


def builtin(root: Path, short: bool = False) -> list[Dataset]:
    return [
        Dataset(
            "batadal",
            root / "batadal" / "test.csv",
            "ATT_FLAG",
            "DATETIME",
            "events",
            time_format="%d/%m/%y %H",
            learn=(root / "batadal" / "training_1.csv",),
            published={"s": [0.970, 0.949, 0.927, 0.894, 0.802, 0.773, 0.534]},
        ),
        Dataset(
            "gecco",
            root / "gecco2018" / "water_quality.csv.gz",
            "EVENT",
            "Time",
            "rows",
            judged_after_days=14.0,
            limit=60_000 if short else None,
        ),
    ]


def read(path: Path, ds: Dataset, metrics: tuple[str, ...] | None = None) -> Table:
    """The rows of ``path`` in time order; ``metrics`` fixes the columns (those of the
    test file for a learning file)."""
    import pandas as pd

    frame = pd.read_csv(path)
    missing = [c for c in (ds.time, ds.label) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)} (columns: {list(frame.columns)})")
    when = pd.to_datetime(frame[ds.time], format=ds.time_format, utc=True)
    frame = frame.assign(_t=when).sort_values("_t", kind="stable")
    if metrics is None:
        skip = {ds.time, ds.label, "_t"}
        metrics = tuple(
            str(c)
            for c in frame.columns
            if c not in skip
            and not str(c).startswith("Unnamed")
            and pd.api.types.is_numeric_dtype(frame[c])
        )
    label = frame[ds.label].astype(str).str.strip().str.upper().isin({"1", "1.0", "TRUE"})
    epoch = pd.Timestamp(0, tz="UTC")
    ts = (frame["_t"] - epoch).dt.total_seconds().to_numpy(dtype=np.float64)
    values = frame[list(metrics)].to_numpy(dtype=np.float64)
    return Table(ts, values, label.to_numpy(dtype=bool), metrics)


def _per_metric(learn: list[Table], test: Table, kind: str = EQUIPMENT) -> Mask:
    """Each metric through its own default detectors as a device of ``kind``; any one
    raising."""
    alarm = np.zeros(test.ts.size, bool)
    for j, metric in enumerate(test.metrics):
        det = SeriesDetector(defaults_for(kind, metric))
        state = det.init()
        for table in learn:
            ok = ~np.isnan(table.values[:, j])
            state, _ = det.run(state, table.ts[ok], table.values[ok, j])
        ok = ~np.isnan(test.values[:, j])
        state, out = det.run(state, test.ts[ok], test.values[ok, j])
        alarm[np.flatnonzero(ok)[out.rank > 0]] = True
    return alarm


def _joint(learn: list[Table], test: Table) -> Mask:
    """The joint model of all the metrics."""
    joint = Joint(test.metrics)
    state = joint.init()
    for table in learn:
        for t, x in zip(table.ts.tolist(), table.values, strict=True):
            state = joint.learn(state, t, x)
    alarm = np.zeros(test.ts.size, bool)
    for i, (t, x) in enumerate(zip(test.ts.tolist(), test.values, strict=True)):
        state, out = joint.step(state, t, x)
        alarm[i] = out.rank > 0
    return alarm


def _rolling_z(learn: list[Table], test: Table, window: int = 60, limit: float = 5.0) -> Mask:
    """A rolling z-score per metric over the last ``window`` readings; any metric."""
    alarm = np.zeros(test.ts.size, bool)
    for j in range(len(test.metrics)):
        held: deque[float] = deque(maxlen=window)
        for table in learn:
            held.extend(v for v in table.values[-window:, j].tolist() if not isnan(v))
        for i, v in enumerate(test.values[:, j].tolist()):
            if isnan(v):
                continue
            if len(held) >= window // 2:
                arr = np.fromiter(held, float)
                sd = float(arr.std())
                alarm[i] |= abs(v - float(arr.mean())) >= limit * max(sd, 1e-12)
            held.append(v)
    return alarm


Runner = Callable[[list[Table], Table], Mask]

PARTS: dict[str, Runner] = {"per_metric": _per_metric, "joint": _joint}
REFERENCES: dict[str, Runner] = {
    "baseline_per_metric": lambda learn, test: _per_metric(learn, test, GENERIC),
    "no_alarm": lambda _learn, test: np.zeros(test.ts.size, bool),
    "always": lambda _learn, test: np.ones(test.ts.size, bool),
    "rolling_z": _rolling_z,
}


def judge(ds: Dataset) -> dict[str, Any]:
    """The platform, its parts and the references on ``ds``, each scored."""
    test = read(ds.test, ds)
    if ds.limit is not None:
        test = Table(
            test.ts[: ds.limit], test.values[: ds.limit], test.label[: ds.limit], test.metrics
        )
    learn = [read(p, ds, test.metrics) for p in ds.learn]
    judged = test.ts >= test.ts[0] + ds.judged_after_days * 86400.0
    scorer = SCORERS[ds.scoring]
    runs = {**PARTS, **REFERENCES}
    alarms: dict[str, Mask] = {}
    for name, runner in tqdm(runs.items(), desc=f"bench detect --real {ds.name}", unit="run"):
        alarms[name] = runner(learn, test)
    platform = alarms["per_metric"] | alarms["joint"]
    result: dict[str, Any] = scorer(platform[judged], test.label[judged])
    result["alarm_rows"] = round(float(platform[judged].mean()), 4)
    result["episodes"] = episodes_score(platform[judged], test.label[judged])
    result["episodes_baseline_per_metric"] = episodes_score(
        alarms["baseline_per_metric"][judged], test.label[judged]
    )
    result["parts"] = {n: scorer(alarms[n][judged], test.label[judged]) for n in PARTS}
    result["references"] = {n: scorer(alarms[n][judged], test.label[judged]) for n in REFERENCES}
    result["rows"] = int(judged.sum())
    result["metrics"] = len(test.metrics)
    result["events"] = len(_events(test.label[judged]))
    if ds.published:
        result["published"] = ds.published
    return result


def _events(label: Mask) -> list[tuple[int, int]]:
    from bench._scoring import events

    return events(label)


def run(datasets: list[Dataset] | None = None, short: bool = False) -> dict[str, Any]:
    """Every data set: its scores (the platform's on top), and the references'."""
    chosen = datasets if datasets is not None else builtin(datasets_root(), short)
    absent = [str(d.test) for d in chosen if not d.test.exists()]
    if absent:
        raise FileNotFoundError(
            f"no data set at {', '.join(absent)}: lay shared/datasets beside the "
            "repository or set CITYOPS_DATASETS"
        )
    out: dict[str, Any] = {}
    references: dict[str, Any] = {}
    for ds in chosen:
        scored = judge(ds)
        references[ds.name] = scored.pop("references")
        out[ds.name] = scored
    return {**out, "references": references, "short": short}
