"""``cityops bench detect``: detection quality on labelled series, and kernel speed.

Quality is counted per incident: a detection is a run of alarmed rows; it is a true
positive when it overlaps an injected incident (or starts within ``GRACE`` intervals of
its end), a false positive otherwise. Time to detect is in reporting intervals from the
incident's first sample to its first alarmed row.

The kernel figure is the default detectors of every kind run over batches of one
series, on one core, timed alone.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from lifeline.detect.series import SeriesDetector
from simulators.scenarios import KINDS, generate

GRACE = 5


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def run(
    runs: int = 3, series_per_kind: int = 60, length: int = 2000, kernel_batch: int = 1000
) -> dict[str, Any]:
    rng = np.random.default_rng(2026)
    tp = fp = fn = 0
    ttd: list[int] = []
    per_kind: dict[str, dict[str, int]] = {}
    bar = tqdm(total=len(KINDS) * series_per_kind, desc="bench detect", unit="series")
    for kind in KINDS:
        stats = {"tp": 0, "fp": 0, "fn": 0}
        for i in range(series_per_kind):
            series = generate(kind, length, rng, inject=i % 2 == 0)
            det = SeriesDetector.for_metric(series.kind, series.metric)
            _, out = det.run(det.init(), series.ts, series.values)
            alarms = _runs(out.rank > 0)
            found = set()
            for a0, a1 in alarms:
                hit = [j for j, (s, e) in enumerate(series.truth) if a0 < e + GRACE and a1 > s]
                if hit:
                    found.update(hit)
                else:
                    stats["fp"] += 1
            for j, (s, _e) in enumerate(series.truth):
                if j in found:
                    stats["tp"] += 1
                    first = min(a0 for a0, a1 in alarms if a1 > s)
                    ttd.append(max(0, first - s))
                else:
                    stats["fn"] += 1
            bar.update()
        per_kind[kind] = stats
        tp, fp, fn = tp + stats["tp"], fp + stats["fp"], fn + stats["fn"]
    bar.close()

    rates = []
    batches = [generate(k, kernel_batch * 4, rng, inject=True) for k in KINDS]
    for _ in range(runs):
        count, elapsed = 0, 0.0
        for series in batches:
            det = SeriesDetector.for_metric(series.kind, series.metric)
            state = det.init()
            t0 = time.perf_counter()
            for a in range(0, series.values.size, kernel_batch):
                state, _ = det.run(
                    state, series.ts[a : a + kernel_batch], series.values[a : a + kernel_batch]
                )
            elapsed += time.perf_counter() - t0
            count += series.values.size
        rates.append(count / elapsed)
    return {
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "median_ttd_intervals": float(statistics.median(ttd)) if ttd else None,
        "kernel_readings_per_s": round(statistics.median(rates)),
        "kernel_batch": kernel_batch,
        "incidents": tp + fn,
        "false_positives": fp,
        "per_kind": per_kind,
        "series": len(KINDS) * series_per_kind,
        "runs": runs,
    }
