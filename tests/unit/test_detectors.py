"""Detectors: known answers, and the invariants a dispatcher relies on."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifeline.detect.detectors import Baseline, Faults, Level, Levels, Rate, Sustained
from lifeline.detect.kernels import cusum
from lifeline.detect.rules import DEFAULTS, RuleBook, RulesError
from lifeline.detect.series import SeriesDetector
from lifeline.kinds import PHYSICAL_RANGE
from lifeline.vocabulary import Severity

MIN = 60.0


def minutes(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) * MIN


CH4 = Levels((Level(25, Severity.YELLOW), Level(50, Severity.ORANGE)), hysteresis=5)


def test_levels_raise_after_debounce_escalate_and_clear_with_hysteresis() -> None:
    v = np.array([0, 30, 30, 30, 55, 55, 22, 19, 19, 10.0])
    _, out = CH4.run(CH4.init(), minutes(10), v)
    assert out.rank.tolist() == [0, 0, 2, 2, 2, 3, 3, 2, 0, 0]
    assert (out.score[out.rank > 0] >= 0.5).all()
    assert (out.score[out.rank == 0] < 0.5).all()


def test_a_single_sample_over_the_level_does_not_alarm() -> None:
    v = np.array([0, 0, 40, 0, 0, 0.0])
    _, out = CH4.run(CH4.init(), minutes(6), v)
    assert not out.rank.any()


def test_minimum_duration_holds_back_short_excursions() -> None:
    det = Levels((Level(10, Severity.BLUE),), k=1, n=1, min_duration_s=300)
    v = np.array([0, 12, 12, 12, 0, 12, 12, 12, 12, 12, 12.0])
    _, out = det.run(det.init(), minutes(11), v)
    assert out.rank.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(20.5, 29.9), min_size=5, max_size=200))
def test_hysteresis_never_flaps_between_the_clear_and_raise_levels(tail: list[float]) -> None:
    v = np.array([30.0, 30.0, *tail])
    _, out = CH4.run(CH4.init(), minutes(v.size), v)
    assert (out.rank[1:] == 2).all()  # raised at the second sample, never cleared


def batch_split(det: object, ts: np.ndarray, v: np.ndarray, cuts: list[int]) -> np.ndarray:
    state = det.init()  # type: ignore[attr-defined]
    ranks, scores = [], []
    bounds = [0, *sorted(set(cuts)), v.size]
    for a, b in itertools.pairwise(bounds):
        state, out = det.run(state, ts[a:b], v[a:b])  # type: ignore[attr-defined]
        ranks.append(out.rank)
        scores.append(out.score)
    return np.concatenate([np.concatenate(ranks), np.concatenate(scores)])


DETECTORS = [
    CH4,
    Levels((Level(0.14, Severity.YELLOW),), direction="below", hysteresis=0.01),
    Rate(0.1, Severity.ORANGE, "fall"),
    Sustained(25.0, 180, Severity.YELLOW),
    Baseline(warmup=5, daily=True),
    Faults(0, 100, spike=20, flat_suspect=4, flat_fail=6, max_gap_s=600),
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 80, allow_nan=False), min_size=2, max_size=120),
    st.lists(st.integers(1, 119), max_size=6),
    st.sampled_from(range(len(DETECTORS))),
)
def test_any_batching_gives_the_same_rows_as_one_batch(
    values: list[float], cuts: list[int], which: int
) -> None:
    det = DETECTORS[which]
    v = np.round(np.array(values), 1)
    ts = minutes(v.size) * 7.0
    whole = batch_split(det, ts, v, [])
    split = batch_split(det, ts, v, [c for c in cuts if c < v.size])
    np.testing.assert_allclose(whole, split, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("kind", "metric"), sorted(DEFAULTS))
def test_constant_normal_input_never_alarms(kind: str, metric: str) -> None:
    low, high = PHYSICAL_RANGE[metric]
    normal = {
        "ch4": 0.0,
        "o2": 20.9,
        "h2s": 0.0,
        "pressure": 0.1,
        "depth": 0.0,
        "tilt": 0.5,
        "temperature": 20.0,
        "level": 1.0,
        "rainfall": 0.0,
    }.get(metric, 1.0)
    if (kind, metric) == ("water_pressure", "pressure"):
        normal = 0.3  # above the 0.14 MPa network-end minimum
    assert low <= normal <= high
    det = SeriesDetector.for_metric(kind, metric)
    # Constant values with a little noise where a flat line would be a fault.
    rng = np.random.default_rng(1)
    noisy = metric in {
        "o2",
        "pressure",
        "flow",
        "strain",
        "deflection",
        "accel_rms",
        "makeup_flow",
        "sump_level",
        "humidity",
        "level",
        "supply_temp",
        "return_temp",
    }
    v = normal + (rng.normal(0, 1e-4, 3000) if noisy else np.zeros(3000))
    _, out = det.run(det.init(), minutes(3000), v)
    assert not out.rank.any(), {k: int(m.sum()) for k, m in out.flags.items()}
    assert (out.score < 0.5).all()


def test_baseline_flags_a_step_and_then_absorbs_the_new_level() -> None:
    rng = np.random.default_rng(7)
    v = np.concatenate([rng.normal(10, 0.1, 400), rng.normal(13, 0.1, 1200)])
    det = Baseline(alpha=0.05, warmup=30, daily=False)
    _, out = det.run(det.init(), minutes(v.size), v)
    assert out.rank[400:403].any()  # caught within a few samples of the step
    assert not out.rank[:400].any()
    assert not out.rank[-600:].any()  # the new level is the new normal


def test_pressure_drop_is_caught_by_the_drift_cusum_within_intervals() -> None:
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.normal(0.30, 0.002, 500), rng.normal(0.294, 0.002, 50)])
    det = Baseline(alpha=0.01, warmup=30, z_limit=8.0, daily=False)
    _, out = det.run(det.init(), minutes(v.size), v)
    assert not out.rank[:500].any()
    assert np.flatnonzero(out.flags["drift_down"][500:])[0] <= 6


def test_cusum_closed_form_matches_the_recursion() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 500)
    s, last = cusum(x, 2.0)
    ref, cur = [], 2.0
    for xi in x:
        cur = max(0.0, cur + xi)
        ref.append(cur)
    np.testing.assert_allclose(s, ref)
    assert last == pytest.approx(ref[-1])


def test_faults_range_flatline_spike_and_gap() -> None:
    det = Faults(0, 100, spike=20, flat_suspect=4, flat_fail=6, max_gap_s=600)
    ts = np.array([0, 60, 120, 180, 240, 300, 360, 1800, 1860, 1920.0])
    v = np.array([5, 5, 5, 5, 5, 5, 50, 51, 150, 52.0])
    _, out = det.run(det.init(), ts, v)
    assert out.flags["flatline"].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    assert out.flags["spike"].tolist()[6]
    assert out.flags["spike"].tolist()[8]
    assert out.flags["range"].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    assert out.flags["gap"].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert out.rank[5] > 0
    assert out.rank[8] > 0


def test_unrelated_devices_in_any_interleaving_give_the_same_result() -> None:
    rng = np.random.default_rng(11)
    series = {d: rng.uniform(0, 60, 300).round(1) for d in ("a", "b", "c")}
    alone = {}
    for d, v in series.items():
        det = SeriesDetector.for_metric("gas_well", "ch4")
        alone[d] = det.run(det.init(), minutes(300), v)[1].rank
    order = rng.permutation(np.repeat(list(series), 300))
    states = {d: SeriesDetector.for_metric("gas_well", "ch4") for d in series}
    st_ = {d: states[d].init() for d in series}
    pos = dict.fromkeys(series, 0)
    got: dict[str, list[int]] = {d: [] for d in series}
    i = 0
    while i < order.size:  # batches of consecutive readings of the same device
        d = order[i]
        j = i
        while j < order.size and order[j] == d:
            j += 1
        a, b = pos[d], pos[d] + (j - i)
        st_[d], out = states[d].run(st_[d], minutes(300)[a:b], series[d][a:b])
        got[d].extend(out.rank.tolist())
        pos[d], i = b, j
    for d in series:
        assert got[d] == alone[d].tolist()


def test_rules_file_overrides_by_city_and_device(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rule]]\nkind = "gas_well"\nmetric = "ch4"\ncity = "320100"\n'
        'levels = [[20, "yellow"], [40, "red"]]\n\n'
        '[[rule]]\nkind = "gas_well"\nmetric = "ch4"\ndevice_id = "gw-9"\n'
        'levels = [[5, "blue"]]\n'
    )
    book = RuleBook.load(path)
    city_levels = book.detectors("gas_well", "ch4", city="320100")[0]
    assert isinstance(city_levels, Levels)
    assert [lv.threshold for lv in city_levels.levels] == [20, 40]
    device_levels = book.detectors("gas_well", "ch4", city="320100", device_id="gw-9")[0]
    assert isinstance(device_levels, Levels)
    assert [lv.threshold for lv in device_levels.levels] == [5]
    other = book.detectors("gas_well", "ch4", city="110100")[0]
    assert isinstance(other, Levels)
    assert [lv.threshold for lv in other.levels] == [10, 25, 50]


def test_a_rules_file_says_whether_a_lasting_shift_stays_raised(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rule]]\nkind = "water_flow"\nmetric = "flow"\ncity = "320100"\nhold_shift = false\n'
    )
    book = RuleBook.load(path)
    held = [d.hold_shift for d in book.detectors("water_flow", "flow") if isinstance(d, Baseline)]
    assert held == [True]  # the default for a district's inflow
    city = book.detectors("water_flow", "flow", city="320100")
    assert [d.hold_shift for d in city if isinstance(d, Baseline)] == [False]
    assert len(city) == len(DEFAULTS[("water_flow", "flow")])  # nothing else replaced


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[[rule]]\nkind = "gas_well"\nmetric = "ch4"\nhold_shift = true\n',
            "no adaptive baseline",
        ),
        (
            '[[rule]]\nkind = "water_flow"\nmetric = "flow"\nhold_shift = "yes"\n',
            "true or false",
        ),
        ('[[rule]]\nkind = "volcano"\nmetric = "ch4"\nlevels = [[1, "red"]]\n', "line 1.*kind"),
        (
            '\n[[rule]]\nkind = "gas_well"\nmetric = "flow"\nlevels = [[1, "red"]]\n',
            ":2: gas_well has no metric",
        ),
        ('[[rule]]\nkind = "gas_well"\nmetric = "ch4"\nlevels = [[1, "purple"]]\n', "severity"),
        (
            '[[rule]]\nkind = "gas_well"\nmetric = "ch4"\nlevels = [[10, "red"], [20, "blue"]]\n',
            "more severe",
        ),
        ("[[rule]\n", "rules.toml"),
    ],
)
def test_bad_rules_name_the_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(body)
    with pytest.raises(RulesError, match=message.replace("line 1", ":1:")):
        RuleBook.load(path)


SERIES = [SeriesDetector((det,)) for det in DETECTORS] + [
    SeriesDetector(dets) for _, dets in sorted(DEFAULTS.items())
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(-5, 120, allow_nan=False), min_size=1, max_size=150),
    st.lists(st.sampled_from([0.0, 30.0, 60.0, 61.0, 900.0, 3600.0, 7200.0]), min_size=1),
    st.sampled_from(range(len(SERIES))),
)
def test_the_scalar_step_gives_what_a_one_row_batch_gives(
    values: list[float], gaps: list[float], which: int
) -> None:
    """The worker steps one reading at a time without numpy; a one-row ``run`` is the
    reference: same rank and raised flags in the same order, same score, same state."""
    det = SERIES[which]
    vec = scalar = det.init()
    t = 1.7e9
    for i, raw in enumerate(values):
        x = round(raw, 1) if i % 3 else round(raw)  # repeats, for the flat-line checks
        t += gaps[i % len(gaps)]
        vec, out = det.run(vec, np.array([t]), np.array([x]))
        scalar, (score, rank, flags) = det.step(scalar, t, x)
        assert rank == int(out.rank[0])
        assert [name for name, _ in flags] == out.row_flags(0)
        assert score == pytest.approx(float(out.score[0]), rel=1e-9, abs=1e-12)
    assert repr(scalar) == repr(vec) or _close(scalar, vec)


def _close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "__dataclass_fields__") and type(a) is type(b):
        return all(_close(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    return a == b


def test_rainstorm_signals_from_the_rain_accumulated_at_a_gauge() -> None:
    rain = SeriesDetector(DEFAULTS[("rain_gauge", "rainfall")])
    # A cloudburst of 4.5 mm a minute for 25 minutes, then dry for four hours.
    v = np.array([4.5] * 25 + [0.0] * 240)
    _, out = rain.run(rain.init(), minutes(v.size) + 1.7e9 // 3600 * 3600, v)
    ranks = out.rank.tolist()
    first_orange = ranks.index(3)  # 50 mm within 3 h
    assert 10 <= first_orange <= 12
    assert ranks.index(4) == 22  # 100 mm within 3 h: red
    assert out.row_flags(first_orange) == ["rainstorm"]
    # Three hours on, the 3 h window is dry again: the 6 h and 12 h signals remain.
    assert ranks[-1] == 2


def test_a_background_leak_shows_in_the_minimum_night_flow_and_stays() -> None:
    """Flow every 5 minutes with a daily cycle; a 15 m3/h leak starts at noon of day 3
    and is repaired at noon of day 6 (local time, UTC+8)."""
    step = 300.0
    t = 1_782_864_000.0 - 8 * 3600 + np.arange(0, 8 * 86400, step)  # local midnight
    local_h = ((t + 8 * 3600) % 86400) / 3600
    rng = np.random.default_rng(5)
    flow = 120 + 40 * np.sin(2 * np.pi * (local_h - 9) / 24) + rng.normal(0, 3, t.size)
    day = (t - t[0]) // 86400
    leaking = (
        ((day == 3) & (local_h >= 12)) | ((day > 3) & (day < 6)) | ((day == 6) & (local_h < 12))
    )
    flow = flow + np.where(leaking, 15.0, 0.0)
    det = SeriesDetector(DEFAULTS[("water_flow", "flow")][1:2])  # the night-flow rule
    _, out = det.run(det.init(), t, flow)
    raised = out.rank > 0
    first = int(np.argmax(raised))
    assert day[first] == 4
    assert 4 <= local_h[first] < 4.2
    assert raised[(day == 5) & (local_h == 12)].all()  # stays raised through the day
    assert not raised[day < 4].any()
    assert not raised[(day == 7) & (local_h > 5)].any()  # the first normal night clears it


def test_the_baseline_learns_afresh_after_hours_of_silence() -> None:
    """An outage of three hours, and the series comes back at another level (the daily
    cycle moved on): no alarm, in one batch or reading by reading; the same jump without
    the gap alarms."""
    det = Baseline(alpha=0.05, z_limit=6.0, severity=Severity.ORANGE)
    rng = np.random.default_rng(2)
    before, after = 0.32 + rng.normal(0, 0.002, 60), 0.36 + rng.normal(0, 0.002, 60)
    t = np.concatenate([minutes(60), minutes(60) + 60 * MIN + 3 * 3600])
    v = np.concatenate([before, after])
    _, out = det.run(det.init(), t, v)
    assert not out.rank.any()
    state, ranks = det.init(), []
    for ts, x in zip(t.tolist(), v.tolist(), strict=True):
        state, (_s, r, _f) = det.step(state, ts, x)
        ranks.append(r)
    assert not any(ranks)
    _, jumped = det.run(det.init(), minutes(120), v)
    assert jumped.rank.any()
