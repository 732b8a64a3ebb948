"""The worker's joint fold (``streams.detection.JointFold``): a heating substation's five
metrics, reported one reading each per minute, gathered into rows and judged together;
one anomaly raised and cleared when its return temperature leaves its usual relation to
the others, naming that metric first; the state survives a pickle round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from lifeline.devices import Device
from streams.detection import JointFold, SeriesState

T0 = datetime(2026, 1, 5, tzinfo=UTC)
STATION = Device(
    city="320100",
    device_id="hn-1",
    family="sensors",
    kind="heat_network",
    metrics={
        "supply_temp": "°C",
        "return_temp": "°C",
        "pressure": "MPa",
        "flow": "m3/h",
        "makeup_flow": "m3/h",
    },
    owner_dept="heating",
    lon=118.78,
    lat=32.04,
    grid_code="320102001001001",
)
ROWS = 3600
BREAK = (3000, 3120)


def _rows(seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    minutes = np.arange(ROWS)
    load = np.sin(2 * np.pi * minutes / 1440) + np.cumsum(rng.normal(0, 0.002, ROWS))
    rows = []
    for i in range(ROWS):
        d = float(load[i])
        ret = 55.0 + 1.6 * d + rng.normal(0, 0.05)
        if BREAK[0] <= i < BREAK[1]:
            ret += 0.8  # the return runs warm for its load: heat is not taken up
        rows.append(
            {
                "supply_temp": 85.0 + 2.0 * d + rng.normal(0, 0.05),
                "return_temp": ret,
                "pressure": 0.6 + 0.01 * d + rng.normal(0, 0.0005),
                "flow": 300.0 + 30.0 * d + rng.normal(0, 0.8),
                "makeup_flow": 1.0 + rng.normal(0, 0.02),
            }
        )
    return rows


def test_a_broken_relation_is_one_anomaly_naming_its_metric_and_the_state_pickles() -> None:
    fold = JointFold()
    state: SeriesState | None = None
    found = []
    for i, row in enumerate(_rows(3)):
        ts = T0 + timedelta(minutes=i)
        for metric, value in row.items():  # one reading each, in the device's order
            new, anomaly = fold.step(STATION, metric, ts, value, STATION.metrics[metric], state)
            assert new is not None
            state = new
            if anomaly is not None:
                found.append((i, anomaly))
        if i == 2000:
            assert state is not None
            again = SeriesState.loads(state.dumps())
            assert again.rank == state.rank
            assert repr(again.detectors[1]) == repr(state.detectors[1])
    # One anomaly: raised, re-reported while it lasts (as every open anomaly is, every
    # five minutes of event time), cleared.
    states = [a.state for _i, a in found]
    assert states[0] == "raised"
    assert states[-1] == "cleared"
    assert set(states[1:-1]) <= {"updated"}
    assert len({a.anomaly_id for _i, a in found}) == 1
    (raised_at, raised), (cleared_at, cleared) = found[0], found[-1]
    assert BREAK[0] <= raised_at <= BREAK[0] + 10
    assert BREAK[1] <= cleared_at <= BREAK[1] + 30
    assert raised.detector == "joint"
    assert raised.evidence[0].metric == "return_temp"
    assert raised.evidence[0].unit == "°C"
    assert raised.anomaly_id == cleared.anomaly_id
    assert raised.kind == "return_temp_joint"


def test_a_row_missing_a_metric_is_judged_when_the_next_row_begins() -> None:
    fold = JointFold()
    state = None
    rows = _rows(4)[:200]
    judged = []
    for i, row in enumerate(rows):
        ts = T0 + timedelta(minutes=i)
        for metric, value in row.items():
            if i % 2 and metric == "makeup_flow":
                continue  # every other minute the make-up meter is not read
            state, _ = fold.step(STATION, metric, ts, value, "", state)
            assert state is not None
        judged.append(state.detectors[0].count)
    # Every row judged, the incomplete ones one row late (its metric held).
    assert judged[-1] == len(rows) - 1


def test_a_late_reading_and_a_kind_without_a_joint_model_change_nothing() -> None:
    fold = JointFold()
    state = None
    for i, row in enumerate(_rows(5)[:3]):
        for metric, value in row.items():
            state, _ = fold.step(STATION, metric, T0 + timedelta(minutes=i), value, "", state)
    again, anomaly = fold.step(STATION, "flow", T0, 300.0, "m3/h", state)
    assert again is state
    assert anomaly is None
    well = STATION.model_copy(update={"kind": "gas_well", "metrics": {"ch4": "%LEL"}})
    assert fold.step(well, "ch4", T0, 1.0, "%LEL", None) == (None, None)
