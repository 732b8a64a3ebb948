"""The adaptive baseline's state: built by keyword, composed of parts, and a state pickled
in the flat layout of earlier releases (by a worker that ran them) loads into the parts
and carries on where it stopped: every later reading judged as a series that ran on the
parts from the start judges it.

``data/baseline_states_flat.pickle`` holds the flat states of the platform's default
detector for a generic metric after readings 40, 2000, 3609, 3611 and 3612 of the
``steps`` family drawn with seed 11 over 8 days (calm on the learning day, calm with a
profile, a spike, and a drift down just opened and one reading on).
"""

from __future__ import annotations

import copyreg
import dataclasses
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lifeline.detect.baseline import (
    DOWN,
    BaselineState,
    EpisodeState,
    LevelState,
    ShiftTest,
)
from lifeline.detect.rules import defaults_for
from lifeline.detect.series import SeriesDetector
from simulators.families import FAMILIES

FLAT = Path(__file__).parent / "data" / "baseline_states_flat.pickle"


def _series() -> tuple[list[float], list[float]]:
    family = FAMILIES["steps"](np.random.default_rng(11), 8.0)
    return family.ts.tolist(), family.values.tolist()


def test_states_are_built_by_keyword_only() -> None:
    with pytest.raises(TypeError):
        LevelState(1.0)  # type: ignore[misc]  # a positional field is the error under test
    with pytest.raises(TypeError):
        EpisodeState(1, 0.6)  # type: ignore[misc]  # a positional field is the error under test
    assert ShiftTest(pos=1.0).neg == 0.0


def test_a_flat_state_of_an_earlier_release_carries_on_with_the_same_alarms() -> None:
    ts, values = _series()
    det = SeriesDetector(defaults_for("generic", "value"))
    saved: dict[int, bytes] = pickle.loads(FLAT.read_bytes())  # noqa: S301  # our own fixture
    state = det.init()
    outputs, states = [], {}
    for i, (t, x) in enumerate(zip(ts, values, strict=True)):
        state, out = det.step(state, t, x)
        outputs.append(out)
        if i in saved:
            states[i] = state
    episodes = set()
    for i, raw in saved.items():
        migrated = pickle.loads(raw)  # noqa: S301  # our own fixture
        assert isinstance(migrated, BaselineState)
        fresh = states[i][0]
        # Every field of the flat layout lands in its part (NaN fields compare by text).
        for part in ("level", "shift", "widen", "profile", "episode"):
            assert repr(getattr(migrated, part)) == repr(getattr(fresh, part)), part
        assert (migrated.spread.var, migrated.spread.noise) == (
            fresh.spread.var,
            fresh.spread.noise,
        )
        assert (migrated.stuck.repeats, migrated.stuck.p_equal) == (
            fresh.stuck.repeats,
            fresh.stuck.p_equal,
        )
        assert (migrated.count, migrated.last_ts, migrated.last_x) == (
            fresh.count,
            fresh.last_ts,
            fresh.last_x,
        )
        assert migrated.values.many  # judged as analog, as the flat layout judged it
        episodes.add(migrated.episode.code)
        resumed = (migrated, *states[i][1:])
        for j in range(i + 1, len(values)):
            resumed, out = det.step(resumed, ts[j], values[j])
            # The alarms are the same (the score under 0.5 may differ: the resumed series
            # has not counted the surprises of its past).
            assert out[1:] == outputs[j][1:], f"resumed after reading {i}: reading {j} differs"
    assert DOWN in episodes  # the fixture covers an open shift


def test_a_composed_state_round_trips_through_pickle() -> None:
    ts, values = _series()
    det = SeriesDetector(defaults_for("generic", "value"))
    state = det.init()
    for t, x in zip(ts[:3000], values[:3000], strict=True):
        state, _ = det.step(state, t, x)
    again = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301
    assert repr(again) == repr(state)  # NaN fields compare by their text


class _DataclassLayout(pickle.Pickler):
    """Pickles slotted states as :mod:`dataclasses` does by itself: a list of the field
    values in field order (the layout of states checkpointed before they were packed)."""

    def reducer_override(self, obj: object) -> Any:
        cls = type(obj)
        if dataclasses.is_dataclass(obj) and hasattr(cls, "__slots__"):
            values = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
            return copyreg.__newobj__, (cls,), values  # type: ignore[attr-defined]
        return NotImplemented


def test_a_state_pickled_in_the_dataclass_layout_loads_and_carries_on() -> None:
    ts, values = _series()
    det = SeriesDetector(defaults_for("generic", "value"))
    state = det.init()
    for t, x in zip(ts[:3000], values[:3000], strict=True):
        state, _ = det.step(state, t, x)
    buf = io.BytesIO()
    _DataclassLayout(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
    old = buf.getvalue()
    loaded = pickle.loads(old)  # noqa: S301  # built above
    assert repr(loaded) == repr(state)
    for t, x in zip(ts[3000:3100], values[3000:3100], strict=True):
        state, out = det.step(state, t, x)
        loaded, again = det.step(loaded, t, x)
        assert again[1:] == out[1:]
