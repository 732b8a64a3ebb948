"""The sensor-kind catalogue as the cockpit shows it: names, units, ranges and default
levels of every kind and metric."""

from __future__ import annotations

from math import isnan
from typing import Any

from fastapi import APIRouter

from cockpit_api import present
from cockpit_api.deps import Who
from cockpit_api.models import Catalogue
from lifeline.detect.detectors import Baseline
from lifeline.detect.series import SeriesDetector
from lifeline.kinds import KINDS

router = APIRouter(prefix="/v1", tags=["kinds"])


def _catalogue() -> dict[str, Any]:
    return {
        "kinds": [
            {
                "kind": spec.name,
                "label": {"zh": spec.label[0], "en": spec.label[1]},
                "lifeline": spec.lifeline,
                "assets": list(spec.assets),
                "metrics": [
                    {
                        "metric": m.name,
                        "unit": m.quantity.unit,
                        "low": m.quantity.low,
                        "high": m.quantity.high,
                        "label": {"zh": m.quantity.label[0], "en": m.quantity.label[1]},
                        "levels": present.levels(spec.name, m.name),
                        "adaptive": any(isinstance(d, Baseline) for d in m.detectors()),
                        "history": [
                            {
                                "detector": name,
                                "readings": h.readings,
                                "seconds": None if isnan(h.seconds) else h.seconds,
                                "note": h.note,
                            }
                            for name, h in SeriesDetector(m.detectors()).history()
                        ],
                    }
                    for m in spec.metrics
                ],
                "sources": spec.sources,
                "joint": spec.joint,
            }
            for spec in KINDS.values()
        ]
    }


CATALOGUE = _catalogue()


@router.get("/kinds", response_model=Catalogue)
def kinds(_who: Who) -> dict[str, Any]:
    """Every sensor kind: its lifeline, names, metrics with units, ranges, default
    levels and how much history each detector needs before it may alarm, whether its
    metrics are also judged together, and the sources of its rules."""
    return CATALOGUE
