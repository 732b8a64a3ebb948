"""The published scores of ``cityops bench detect --real`` against hand-computed
examples, and the same code scoring a CSV that nobody declared in advance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench._scoring import episodes_score, events, events_score, rows_f1
from cityops.cli import main

LABEL = np.array([0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0], bool)
ALARM = np.array([0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1], bool)


def test_events_are_the_labelled_runs() -> None:
    assert events(LABEL) == [(2, 6), (8, 10)]


def test_batadal_score_by_hand() -> None:
    # TPR 2/6, TNR 4/6, S_CM 1/2; the first attack is found one row into its four, the
    # second never: S_TTD = 1 - (1/4 + 1) / 2 = 0.375; S = (0.375 + 0.5) / 2.
    got = events_score(ALARM, LABEL)
    assert got == pytest.approx(
        {"s": 0.4375, "s_ttd": 0.375, "s_cm": 0.5, "tpr": 0.3333, "tnr": 0.6667}, abs=1e-4
    )


def test_an_alarm_always_on_scores_three_quarters_as_the_battle_says() -> None:
    got = events_score(np.ones(LABEL.size, bool), LABEL)
    assert got["s"] == 0.75
    assert (got["s_ttd"], got["s_cm"]) == (1.0, 0.5)
    assert events_score(np.zeros(LABEL.size, bool), LABEL)["s"] == 0.25


def test_row_f1_by_hand() -> None:
    # 2 true, 2 false alarms, 4 missed rows: precision 1/2, recall 1/3, F1 0.4.
    assert rows_f1(ALARM, LABEL) == pytest.approx(
        {"f1": 0.4, "precision": 0.5, "recall": 0.3333}, abs=1e-4
    )
    assert rows_f1(np.zeros(LABEL.size, bool), LABEL)["f1"] == 0.0


def test_onsets_inside_events_and_events_reached_by_hand() -> None:
    # Alarms start at rows 1, 3 and 11: one inside an event; one event of two reached.
    assert episodes_score(ALARM, LABEL) == {
        "onsets": 3,
        "onsets_inside": 0.3333,
        "events_reached": 0.5,
    }


def _station_csv(path: Path) -> None:
    """Four days of a pump station at one minute; on the fourth day its head runs
    under what its inflow always gave for three hours (labelled)."""
    rng = np.random.default_rng(7)
    n = 4 * 1440
    minutes = np.arange(n)
    drive = 5.0 + 2.0 * np.sin(2 * np.pi * minutes / 1440)
    flow = drive + rng.normal(0, 0.05, n)
    pressure = 2.0 * drive + 1.0 + rng.normal(0, 0.08, n)
    label = np.zeros(n, bool)
    label[3 * 1440 + 200 : 3 * 1440 + 380] = True
    pressure[label] -= 0.6
    lines = ["time,inflow,head,label"]
    for i in range(n):
        stamp = f"2026-05-{1 + i // 1440:02d} {i % 1440 // 60:02d}:{i % 60:02d}:00"
        lines.append(f"{stamp},{flow[i]:.3f},{pressure[i]:.3f},{int(label[i])}")
    path.write_text("\n".join(lines) + "\n")


def test_any_csv_of_one_piece_of_equipment_is_scored_by_the_same_code(tmp_path: Path) -> None:
    data = tmp_path / "station.csv"
    _station_csv(data)
    result = CliRunner().invoke(
        main,
        ["bench", "detect", "--csv", str(data), "--judged-after-days", "1"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["name"] == "detect-real"
    station = report["station"]
    assert station["metrics"] == 2
    assert station["events"] == 1
    assert station["f1"] > 0.5
    assert station["f1"] > report["references"]["station"]["always"]["f1"]
    assert set(report["references"]["station"]) == {
        "baseline_per_metric",
        "no_alarm",
        "always",
        "rolling_z",
    }


def test_a_csv_without_its_label_column_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "station.csv"
    data.write_text("time,flow\n2026-05-01 00:00:00,1.0\n")
    result = CliRunner().invoke(main, ["bench", "detect", "--csv", str(data)])
    assert result.exit_code == 2
    assert "no column label" in result.output
