"""The sensor-kind catalogue: each entry complete and consistent, and each kind's normal
behaviour (as the simulator plays it) quiet under the kind's own default rules."""

from __future__ import annotations

import numpy as np
import pytest

from lifeline.detect.detectors import Levels
from lifeline.detect.series import SeriesDetector
from lifeline.kinds import KIND_METRICS, KINDS, METRIC_UNITS, PHYSICAL_RANGE, QUANTITIES
from lifeline.units import to_canonical
from lifeline.vocabulary import LIFELINES

PAIRS = sorted((kind, m.name) for kind, spec in KINDS.items() for m in spec.metrics)


def test_every_kind_is_named_placed_and_on_a_lifeline() -> None:
    for name, spec in KINDS.items():
        assert spec.name == name
        assert all(spec.label), name
        assert spec.lifeline in LIFELINES, name
        assert spec.metrics, name
        assert KIND_METRICS[name] == tuple(m.name for m in spec.metrics)
    for q in QUANTITIES.values():
        assert all(q.label), q.name
        assert q.low < q.high, q.name
        assert METRIC_UNITS[q.name] == q.unit
        assert PHYSICAL_RANGE[q.name] == (q.low, q.high)
        assert to_canonical(q.name, 1.0, q.unit) == (1.0, q.unit)


@pytest.mark.parametrize(("kind", "metric"), PAIRS)
def test_a_kind_s_normal_behaviour_raises_nothing_over_three_days(kind: str, metric: str) -> None:
    spec = KINDS[kind].metric(metric)
    assert spec is not None
    normal, q = spec.normal, spec.quantity
    minutes = np.arange(3 * 24 * 60, dtype=float)
    rng = np.random.default_rng(7)
    day = minutes / (24 * 60)
    v = normal.mean + normal.amplitude * np.sin(2 * np.pi * (day - 0.25))
    v = np.maximum(normal.floor, v + rng.normal(0, normal.sd, v.size) if normal.sd else v)
    v = np.round(v, 4)
    assert q.low <= v.min(), "normal leaves the physical range"
    assert v.max() <= q.high, "normal leaves the physical range"
    for det in spec.detectors():
        if isinstance(det, Levels):  # the normal band stays clear of every level
            for lv in det.levels:
                assert (
                    (v < lv.threshold).all()
                    if det.direction == "above"
                    else (v > lv.threshold).all()
                ), (lv, det.direction)
    det = SeriesDetector(spec.detectors())
    _, out = det.run(det.init(), 1.7e9 + minutes * 60, v)
    assert not out.rank.any(), {k: int(m.sum()) for k, m in out.flags.items() if m.any()}
    assert (out.score < 0.5).all()
