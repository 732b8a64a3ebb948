"""Compare the incidents a run produced with its ground truth.

An incident matches an injected scenario when it has the scenario's type, shares a grid
cell or an asset with it, and started between ``before`` ahead of the scenario's start
and ``after`` past its end. Each scenario takes at most one incident and each incident
at most one scenario; a second incident for the same scenario counts as a false
positive (one situation must be one incident).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any


def _when(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def score(
    truth: Sequence[Mapping[str, Any]],
    incidents: Iterable[Mapping[str, Any]],
    before: timedelta = timedelta(minutes=5),
    after: timedelta = timedelta(minutes=15),
) -> dict[str, Any]:
    found = sorted(incidents, key=lambda i: _when(i["started_at"]))
    taken: set[int] = set()
    matches: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    missed: list[Mapping[str, Any]] = []
    for t in sorted(truth, key=lambda t: _when(t["start"])):
        start, end = _when(t["start"]), _when(t["end"])
        places = set(t.get("cells", ())) | set(t.get("assets", ()))
        hit = None
        for j, inc in enumerate(found):
            if j in taken or inc["type"] != t["type"]:
                continue
            where = set(inc.get("grid_cells", ())) | set(inc.get("asset_ids", ()))
            if places and not places & where:
                continue
            if start - before <= _when(inc["started_at"]) <= end + after:
                hit = j
                break
        if hit is None:
            missed.append(t)
        else:
            taken.add(hit)
            matches.append((t, found[hit]))
    extra = [inc for j, inc in enumerate(found) if j not in taken]
    per_type: dict[str, dict[str, Any]] = {}
    for t, inc in matches:
        entry = per_type.setdefault(t["type"], {"injected": 0, "found": 0, "ttd_s": []})
        entry["found"] += 1
        entry["ttd_s"].append(
            max(0.0, (_when(inc["started_at"]) - _when(t["start"])).total_seconds())
        )
    for t in truth:
        per_type.setdefault(t["type"], {"injected": 0, "found": 0, "ttd_s": []})["injected"] += 1
    for inc in extra:
        per_type.setdefault(inc["type"], {"injected": 0, "found": 0, "ttd_s": []})
        per_type[inc["type"]]["false_positives"] = (
            per_type[inc["type"]].get("false_positives", 0) + 1
        )
    for entry in per_type.values():
        ttd = entry.pop("ttd_s")
        entry["median_ttd_s"] = statistics.median(ttd) if ttd else None
        entry.setdefault("false_positives", 0)
    n_found = len(found)
    return {
        "precision": round(len(matches) / n_found, 4) if n_found else None,
        "recall": round(len(matches) / len(truth), 4) if truth else None,
        "injected": len(truth),
        "incidents": n_found,
        "matched": len(matches),
        "missed": [t.get("scenario", t["type"]) for t in missed],
        "false_positives": [
            {"incident_id": i.get("incident_id"), "type": i["type"]} for i in extra
        ],
        "severity_mismatches": [
            {
                "scenario": t.get("scenario", t["type"]),
                "expected": t.get("severity"),
                "found": inc.get("severity"),
            }
            for t, inc in matches
            if t.get("severity") and inc.get("severity") != t["severity"]
        ],
        "per_type": per_type,
    }
