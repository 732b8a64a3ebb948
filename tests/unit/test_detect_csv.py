"""``cityops detect`` over a recorded series: times written as ISO 8601 or as epoch
seconds are the same moments, and a pressure drop days into the series is found."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from cityops.detect import detect_csv


def write(path: Path, stamps: list[str], values: list[float]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "pressure"])
        w.writerows(zip(stamps, values, strict=True))


def test_iso_times_and_epoch_seconds_score_alike(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    n = 3 * 288  # three days every five minutes
    times = [start + timedelta(minutes=5 * i) for i in range(n)]
    v = 0.3 + 0.02 * np.sin(2 * np.pi * np.arange(n) / 288) + rng.normal(0, 0.002, n)
    v[2 * 288 + 100 :] -= 0.03  # the district's pressure drops on the third day
    values = np.round(v, 4).tolist()
    iso, epoch = tmp_path / "iso.csv", tmp_path / "epoch.csv"
    write(iso, [t.isoformat() for t in times], values)
    write(epoch, [str(int(t.timestamp())) for t in times], values)
    a = detect_csv(iso, "pressure", "water_pressure", tmp_path / "a.csv")
    b = detect_csv(epoch, "pressure", "water_pressure", tmp_path / "b.csv")
    assert a == b
    assert a["anomalous"] > 0
    with (tmp_path / "a.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    first = next(i for i, r in enumerate(rows) if float(r["anomaly_score"]) >= 0.5)
    assert 2 * 288 + 100 <= first <= 2 * 288 + 103
    assert "drift_down" in {f for r in rows for f in r["flags"].split(";")}
