"""Scores of alarm sequences against labelled rows, each computed exactly as the data
set's authors define it.

- :func:`events_score` — the BATtle of the Attack Detection ALgorithms (Taormina et al.,
  J. Water Resour. Plann. Manage. 144(8), 2018): ``S = ½ S_TTD + ½ S_CM`` where
  ``S_CM = (TPR + TNR) / 2`` over the judged rows and ``S_TTD = 1 - mean over events of
  (rows from an event's start to its first alarm ÷ the event's rows)``, an undetected
  event counting as its whole length. With hourly rows, rows are the authors' hours.
- :func:`rows_f1` — the row-wise F1 of the GECCO 2018 Industrial Challenge (online
  anomaly detection for drinking-water quality), with its precision and recall.
- :func:`episodes_score` — beside them, whether an alarm means something: the share of
  alarm onsets inside an event and of events reached.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


def events(label: BoolArray) -> list[tuple[int, int]]:
    """The labelled events as (first row, row after the last)."""
    padded = np.concatenate([[False], label.astype(bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def events_score(alarm: BoolArray, label: BoolArray) -> dict[str, float]:
    """S, S_TTD, S_CM, TPR and TNR of ``alarm`` against ``label`` (both per row)."""
    alarm, label = alarm.astype(bool), label.astype(bool)
    positives, negatives = int(label.sum()), int((~label).sum())
    tpr = float((alarm & label).sum() / positives) if positives else 1.0
    tnr = float((~alarm & ~label).sum() / negatives) if negatives else 1.0
    s_cm = (tpr + tnr) / 2.0
    delays = []
    for start, end in events(label):
        hit = np.flatnonzero(alarm[start:end])
        delays.append((float(hit[0]) if hit.size else float(end - start)) / (end - start))
    s_ttd = 1.0 - float(np.mean(delays)) if delays else 1.0
    return {
        "s": round(0.5 * s_ttd + 0.5 * s_cm, 4),
        "s_ttd": round(s_ttd, 4),
        "s_cm": round(s_cm, 4),
        "tpr": round(tpr, 4),
        "tnr": round(tnr, 4),
    }


def rows_f1(alarm: BoolArray, label: BoolArray) -> dict[str, float]:
    """Row-wise F1, precision and recall of ``alarm`` against ``label``."""
    alarm, label = alarm.astype(bool), label.astype(bool)
    tp = int((alarm & label).sum())
    fp = int((alarm & ~label).sum())
    fn = int((~alarm & label).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": round(f1, 4), "precision": round(precision, 4), "recall": round(recall, 4)}


def episodes_score(alarm: BoolArray, label: BoolArray) -> dict[str, float]:
    """How alarms meet events, whatever the data set's own metric: the share of alarm
    onsets inside a labelled event (``onsets_inside``; an onset is a row that raises
    after one that did not) and the share of events reached by an alarm
    (``events_reached``), with the counts."""
    alarm, label = alarm.astype(bool), label.astype(bool)
    onsets = [start for start, _end in events(alarm)]
    inside = sum(1 for i in onsets if label[i])
    labelled = events(label)
    reached = sum(1 for a, b in labelled if alarm[a:b].any())
    return {
        "onsets": len(onsets),
        "onsets_inside": round(inside / len(onsets), 4) if onsets else 1.0,
        "events_reached": round(reached / len(labelled), 4) if labelled else 1.0,
    }


SCORERS = {"events": events_score, "rows": rows_f1}
