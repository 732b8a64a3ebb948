"""The adaptive baseline as a duty officer sees it: one alarm per change, a spike is one
reading, and weeks of a normal day raise nothing; scores rank the onsets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifeline.detect.detectors import Baseline
from lifeline.detect.rules import defaults_for
from lifeline.detect.series import SeriesDetector
from simulators.families import FAMILIES, episodes

DAY = 86400.0
START = 1_780_000_000.0 // DAY * DAY - 8 * 3600  # a local midnight (UTC+8)


def day_signal(
    seed: int, interval: float, days: float, amplitude: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """A daily cycle (two harmonics) with unit noise: timestamps, values, noise."""
    rng = np.random.default_rng(seed)
    ts = START + np.arange(int(days * DAY / interval), dtype=np.float64) * interval
    phase = rng.uniform(0, 2 * np.pi)
    day = 2 * np.pi * ts / DAY
    v = 100 + amplitude * (np.sin(day + phase) + 0.3 * np.sin(2 * day + 2 * phase))
    return ts, v + rng.normal(0, 1.0, ts.size), 1.0


def generic() -> SeriesDetector:
    return SeriesDetector(defaults_for("generic", "value"))


def raised(ts: np.ndarray, v: np.ndarray) -> np.ndarray:
    det = generic()
    _, out = det.run(det.init(), ts, v)
    return np.asarray(out.rank > 0)


def _event_at(
    seed: int, interval: float, days: int, at_day: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """A normal day signal (amplitude 8) and the row ``at_day`` days in."""
    ts, v, _ = day_signal(seed, interval, days, 8.0)
    return ts, v, int(at_day * DAY / interval)


#: Seeded, reproducible examples of series at the usual reporting intervals, with an
#: event up or down 2.5-5 days in.
EXAMPLES = settings(max_examples=10, deadline=None, derandomize=True)
SEEDS = st.integers(0, 10_000)
INTERVALS = st.sampled_from([60.0, 300.0, 900.0])
SIGNS = st.sampled_from([-1.0, 1.0])
DAYS_IN = st.floats(2.5, 5.0)


@EXAMPLES
@given(SEEDS, INTERVALS, st.floats(3.0, 12.0))
def test_weeks_of_a_normal_day_raise_nothing(seed: int, interval: float, amplitude: float) -> None:
    ts, v, _ = day_signal(seed, interval, 21, amplitude)
    assert episodes(raised(ts, v)) == []


@EXAMPLES
@given(SEEDS, INTERVALS, st.floats(1.0, 3.0), SIGNS, DAYS_IN)
def test_a_step_is_one_episode_and_the_new_level_becomes_normal(
    seed: int, interval: float, size: float, sign: float, at_day: float
) -> None:
    """Steps of one to three daily amplitudes, up or down."""
    ts, v, at = _event_at(seed, interval, 8, at_day)
    v[at:] += sign * size * 8.0
    eps = episodes(raised(ts, v))
    assert len(eps) == 1, eps
    first, _last = eps[0]
    assert at <= first <= at + 2  # within two intervals


@EXAMPLES
@given(SEEDS, INTERVALS, st.floats(10.0, 30.0), SIGNS, DAYS_IN)
def test_a_spike_is_one_reading(
    seed: int, interval: float, size: float, sign: float, at_day: float
) -> None:
    ts, v, at = _event_at(seed, interval, 6, at_day)
    v[at] += sign * size
    assert episodes(raised(ts, v)) == [(at, at + 1)]


def test_a_dropout_is_one_episode_that_clears_on_return() -> None:
    ts, v, _ = day_signal(3, 300.0, 6, 8.0)
    at = int(3.3 * DAY / 300.0)
    v[at : at + 24] = 0.0
    eps = episodes(raised(ts, v))
    assert len(eps) == 1
    first, last = eps[0]
    assert first == at
    assert at + 24 <= last <= at + 24 + 8  # cleared within a few readings of the return


def test_a_slow_drift_is_caught_once_while_it_grows() -> None:
    """A level that creeps up by twelve noise deviations over a day, then stays."""
    ts, v, _ = day_signal(5, 300.0, 8, 8.0)
    at = int(3 * DAY / 300.0)
    ramp = np.clip((np.arange(v.size) - at) / (DAY / 300.0), 0.0, 1.0) * 12.0
    eps = episodes(raised(ts, v + ramp))
    assert len(eps) == 1, eps
    assert at < eps[0][0] < at + int(DAY / 300.0)


@pytest.mark.parametrize("seed", range(8))
def test_a_drift_that_pauses_is_one_alarm(seed: int) -> None:
    """Every minute: eight noise deviations up over three hours, still for forty minutes
    (longer than the thirty readings a shift needs to settle), then six more over two
    hours. One drift, one alarm."""
    ts, v, _ = day_signal(seed, 60.0, 5, 6.0)
    at = int(3 * DAY / 60.0)
    k = np.arange(v.size) - at
    ramp = np.clip(k / 180.0, 0.0, 1.0) * 8.0 + np.clip((k - 220) / 120.0, 0.0, 1.0) * 6.0
    eps = [e for e in episodes(raised(ts, v + ramp)) if e[1] > at]
    assert len(eps) == 1, eps
    assert at < eps[0][0] < at + 180


@pytest.mark.parametrize(("seed", "size", "hours"), [(2162, 12.0, 12.0), (7, 15.0, 12.0)])
def test_a_slow_drift_is_not_absorbed_by_a_settled_profile(
    seed: int, size: float, hours: float
) -> None:
    """Minute readings, six days of profile, then a level creeping up by ``size`` noise
    deviations over ``hours`` (a day 6 deviations deep): one alarm, not two."""
    ts, v, _ = day_signal(seed, 60.0, 8, 6.0)
    at = int(6 * DAY / 60.0)
    ramp = np.clip((np.arange(v.size) - at) / (hours * 60.0), 0.0, 1.0) * size
    eps = [e for e in episodes(raised(ts, v + ramp)) if e[1] > at]
    assert len(eps) == 1, eps


@pytest.mark.parametrize("seed", range(6))
def test_a_step_on_sparse_readings_clears_within_hours(seed: int) -> None:
    """Every fifteen minutes, a lasting step of two daily amplitudes: one alarm, and the
    new level is normal within hours, not a day later (thirty readings would be 7.5 h
    before the new level could even be judged)."""
    ts, v, at = _event_at(seed, 900.0, 8, 2.5)
    v[at:] += 16.0
    eps = [e for e in episodes(raised(ts, v)) if e[1] > at]
    assert len(eps) == 1, eps
    first, last = eps[0]
    assert first == at
    assert (last - first) * 900.0 < 10 * 3600.0


@pytest.mark.parametrize("seed", range(6))
def test_the_first_readings_of_a_step_are_a_shift_not_a_wider_spread(seed: int) -> None:
    """Readings far off one way are a change of level even though their squared errors
    would also add up to a wider spread within two readings."""
    ts, v, at = _event_at(seed, 300.0, 6, 2.5 + 0.1 * seed)
    v[at:] -= 12.0
    det = generic()
    _, out = det.run(det.init(), ts, v)
    first, last = next(e for e in episodes(out.rank > 0) if e[1] > at)
    flags = {f for r in range(first, last) for f in out.row_flags(r)}
    assert "drift_down" in flags
    assert "variance" not in flags


def test_demand_that_wanders_as_a_random_walk_is_not_a_drift() -> None:
    """Three weeks of a daily cycle whose level wanders as a random walk (about two
    noise deviations a day), eight series at fifteen minutes: the drift limit widens to
    the series' own wander and nothing is raised after the learning day; judged against
    the noise alone the same series raise slow drifts again and again."""

    def episodes_after_first_day(**settings: float) -> int:
        total = 0
        for seed in range(8):
            ts, v, _ = day_signal(seed, 900.0, 21, 8.0)
            walk = np.random.default_rng(seed + 100).normal(0, 0.05 * np.sqrt(15), v.size)
            det = SeriesDetector(
                [
                    replace(d, **settings) if isinstance(d, Baseline) else d
                    for d in defaults_for("generic", "value")
                ]
            )
            _, out = det.run(det.init(), ts, v + np.cumsum(walk))
            total += sum(1 for e in episodes(out.rank > 0) if e[0] > DAY / 900.0)
        return total

    assert episodes_after_first_day() == 0
    assert episodes_after_first_day(wander_k=0.0) > 8


def test_a_lasting_shift_held_until_it_returns_when_the_operator_asks() -> None:
    ts, v, _ = day_signal(9, 300.0, 6, 8.0)
    at = int(3 * DAY / 300.0)
    v[at:] += 15.0
    for hold, held_to_end in ((False, False), (True, True)):
        det = SeriesDetector((Baseline(daily=True, hold_shift=hold),))
        _, out = det.run(det.init(), ts, v)
        assert bool(out.rank[-1] > 0) is held_to_end
        assert len(episodes(out.rank > 0)) == 1


def test_the_morning_peak_after_a_silence_is_expected() -> None:
    """Six hours without readings over the night, back at the same level: the day goes
    on as the profile says, with no alarm at the morning peak."""
    ts, v, _ = day_signal(11, 300.0, 6, 12.0)
    local_h = ((ts + 8 * 3600) % DAY) / 3600
    day = (ts - ts[0]) // DAY
    keep = ~((day == 3) & (local_h >= 1) & (local_h < 7))
    assert episodes(raised(ts[keep], v[keep])) == []


def test_scores_are_above_one_half_only_while_raised_and_highest_at_onset() -> None:
    """On every family: a score of 0.5 or more exactly where the detector raises, a
    flag on every raised reading, and each episode's first reading carries its highest
    score."""
    rng = np.random.default_rng(2026)
    for make in FAMILIES.values():
        fam = make(rng, 6)
        det = generic()
        _, out = det.run(det.init(), fam.ts, fam.values)
        up = out.rank > 0
        assert ((out.score >= 0.5) == up).all(), fam.name
        flagged = np.any(np.vstack(list(out.flags.values())), axis=0)
        assert flagged[up].all(), fam.name  # a raised reading always says why
        for first, last in episodes(up):
            assert out.score[first] == out.score[first:last].max(), (fam.name, first)


def test_an_acknowledged_held_shift_clears_with_the_next_reading() -> None:
    ts, v, _ = day_signal(9, 300.0, 6, 8.0)
    at = int(3 * DAY / 300.0)
    v[at:] += 15.0
    det = SeriesDetector((Baseline(daily=True, hold_shift=True),))
    state, out = det.run(det.init(), ts[:-10], v[:-10])
    assert out.rank[-1] > 0
    assert det.release(det.init()) is None  # nothing open, nothing to release
    released = det.release(state)
    assert released is not None
    _, after = det.run(released, ts[-10:], v[-10:])
    assert not after.rank.any()  # the new level is normal


def test_an_acknowledgement_releases_only_what_was_open_before_it() -> None:
    from datetime import UTC, datetime

    from lifeline.devices import Device
    from streams.detection import DetectionFold

    meter = Device(
        city="320100",
        device_id="wf-1",
        family="sensors",
        kind="water_flow",
        metrics={"flow": "m3/h"},
        owner_dept="water group",
        lon=118.7,
        lat=32.0,
    )
    fold = DetectionFold()
    # The step after the night, and no night after it: the night-flow rule says nothing.
    ts, v, _ = day_signal(9, 300.0, 2.9, 8.0)
    at = int(2.2 * DAY / 300.0)
    v[at:] += 40.0
    state = None
    for t, x in zip(ts.tolist(), v.tolist(), strict=True):
        state, _a = fold.step(meter, "flow", datetime.fromtimestamp(t, UTC), x, "m3/h", state)
    assert state is not None
    assert state.rank > 0  # held
    assert fold.release(meter, "flow", state, state.since - 60) is None  # seen before it began
    released = fold.release(meter, "flow", state, state.since + 60)
    assert released is not None
    t = float(ts[-1]) + 300.0
    _s, cleared = fold.step(
        meter, "flow", datetime.fromtimestamp(t, UTC), float(v[-1]), "m3/h", released
    )
    assert cleared is not None
    assert cleared.state == "cleared"
