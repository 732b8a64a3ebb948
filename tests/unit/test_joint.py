"""The joint model of a device's metrics (``lifeline.detect.joint``) on generated data:
a relationship that breaks while every metric stays in its range is caught, a joint move
of the working point that keeps the relationships is learnt, and a stuck metric in a
group is one alarm naming it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lifeline.detect.detectors import Stuck
from lifeline.detect.joint import Joint
from simulators.families import episodes

F64 = np.ndarray[Any, np.dtype[np.float64]]
STEP_S = 60.0


def _group(seed: int, n: int) -> tuple[F64, F64]:
    """Three metrics of one pump station: a driver (demand with a daily cycle and a slow
    wander) and two metrics that follow it, each with its own noise."""
    rng = np.random.default_rng(seed)
    ts = 1_780_000_000.0 + STEP_S * np.arange(n)
    day = np.sin(2 * np.pi * ts / 86400.0)
    drive = 5.0 + 2.0 * day + np.cumsum(rng.normal(0, 0.002, n))
    x = np.column_stack(
        [
            drive + rng.normal(0, 0.05, n),
            2.0 * drive + 1.0 + rng.normal(0, 0.08, n),
            0.5 * drive + rng.normal(0, 0.03, n),
        ]
    )
    return ts, x


def _run(joint: Joint, ts: F64, x: F64) -> tuple[np.ndarray[Any, Any], list[tuple[str, ...]]]:
    state = joint.init()
    raised = np.zeros(ts.size, bool)
    named = []
    for i in range(ts.size):
        state, out = joint.step(state, float(ts[i]), x[i])
        raised[i] = out.rank > 0
        named.append(out.top)
    return raised, named


METRICS = ("flow", "pressure", "current")
LEARNT = 3000  # rows before anything is changed


BROKEN = 180  # rows of a broken relationship


def _leak(x: F64) -> F64:
    """For three hours the pressure runs 0.6 under what the flow always gave (ten of
    its noise deviations, a fifth of its daily swing), then recovers."""
    broken = x.copy()
    broken[LEARNT : LEARNT + BROKEN, 1] -= 0.6
    return broken


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_relationship_that_breaks_within_every_range_is_one_alarm(seed: int) -> None:
    ts, x = _group(seed, LEARNT + 600)
    broken = _leak(x)
    # The pressure stays inside the range it has shown while it is off its relation.
    window = broken[LEARNT : LEARNT + BROKEN, 1]
    assert x[:LEARNT, 1].min() < window.min()
    assert window.max() < x[:LEARNT, 1].max()
    raised, named = _run(Joint(METRICS), ts, broken)
    assert not raised[:LEARNT].any(), "nothing raised while the relationship held"
    found = episodes(raised[LEARNT:])
    assert len(found) == 1, found
    start, end = (LEARNT + a for a in found[0])
    assert start - LEARNT <= 10, "raised within ten minute readings"
    assert LEARNT + BROKEN <= end <= LEARNT + BROKEN + 30, "cleared once it recovered"
    assert named[start][0] == "pressure"


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_joint_move_of_the_working_point_is_learnt_not_alarmed(seed: int) -> None:
    ts, x = _group(seed, LEARNT + 600)
    moved = x.copy()
    # Demand steps up by a third: every metric follows it as it always has.
    moved[LEARNT:, 0] += 1.5
    moved[LEARNT:, 1] += 3.0
    moved[LEARNT:, 2] += 0.75
    raised, _named = _run(Joint(METRICS), ts, moved)
    assert not raised.any()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_stuck_metric_in_a_group_is_one_alarm_that_names_it(seed: int) -> None:
    ts, x = _group(seed, LEARNT + 500)
    stuck = x.copy()
    stuck[LEARNT : LEARNT + 200, 2] = x[LEARNT - 1, 2]
    raised, named = _run(Joint(METRICS), ts, stuck)
    assert not raised[:LEARNT].any()
    found = episodes(raised[LEARNT:])
    assert len(found) == 1, found
    assert named[LEARNT + found[0][0]][0] == "current"
    # The metric's own stuck-sensor check raises it once as well.
    det = Stuck()
    state = det.init()
    flat = np.zeros(ts.size, bool)
    for i in range(ts.size):
        state, (_score, rank, _flags) = det.step(state, float(ts[i]), float(stuck[i, 2]))
        flat[i] = rank > 0
    assert len(episodes(flat)) == 1
    assert LEARNT <= episodes(flat)[0][0] < LEARNT + 20


def test_a_missing_metric_skips_the_row_and_keeps_an_open_alarm() -> None:
    ts, x = _group(5, LEARNT + 100)
    x = _leak(x)
    x[LEARNT + 50, 0] = np.nan
    joint = Joint(METRICS)
    state = joint.init()
    outs = []
    for i in range(ts.size):
        state, out = joint.step(state, float(ts[i]), x[i])
        outs.append(out)
    assert outs[LEARNT + 49].rank > 0
    assert outs[LEARNT + 50].rank > 0  # the row with a gap: the alarm goes on
    assert np.isnan(outs[LEARNT + 50].q)


def test_the_history_it_needs_is_stated_in_readings_and_time() -> None:
    needs = Joint(METRICS).history(interval_s=1.0)
    assert needs.readings == 60  # max(30, 5 p) readings for the model, 30 for its surprise
    assert needs.seconds == 60.0  # a device at one reading a second: judged after a minute
    assert Joint(tuple(f"m{i}" for i in range(43))).history().readings == 5 * 43 + 30
