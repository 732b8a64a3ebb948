"""Liveness bookkeeping, offline anomalies and per-device rules in the detection fold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from lifeline.detect.rules import RuleBook
from lifeline.devices import Device, gas_well
from lifeline.incidents import candidate_type
from lifeline.vocabulary import IncidentType
from streams.detection import DetectionFold, SeriesState, offline_anomaly


def well(device_id: str, city: str = "320100") -> Device:
    return gas_well(
        city, device_id, asset_id=f"A-{device_id}", grid_code="320102001001001", owner_dept="gas"
    )


def test_arrivals_learn_the_reporting_gap_and_the_offline_timeout() -> None:
    st = SeriesState(())
    assert st.timeout_s(60, 900) == 900  # gap unknown yet
    for i in range(20):
        st = st.arrived(1000.0 + 30 * i, 500.0 + 30 * i, partition=4)
    assert abs(st.gap_s - 30) < 1e-9
    assert st.timeout_s(60, 900) == 150  # five gaps
    assert st.timeout_s(300, 900) == 300  # never below the minimum
    assert st.partition == 4
    assert st.last_ts == 500.0 + 30 * 19
    assert st.silent_for(st.seen + 200) == 200


def test_offline_anomaly_is_deterministic_and_becomes_a_device_offline_incident() -> None:
    now = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)
    raised = offline_anomaly(well("gw-1"), 1_780_000_000.0, 600, "raised", now)
    cleared = offline_anomaly(well("gw-1"), 1_780_000_000.0, 900, "cleared", now)
    assert raised.anomaly_id == cleared.anomaly_id == "320100:gw-1:offline:1780000000"
    assert raised.severity == "blue"
    assert raised.detector == "heartbeat"
    assert "10.0 min" in raised.message
    assert candidate_type(raised, "gas_well") is IncidentType.DEVICE_OFFLINE


def test_a_rules_file_overrides_thresholds_for_one_device_only(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nkind = "gas_well"\nmetric = "ch4"\ndevice_id = "gw-sensitive"\n'
        'levels = [[3, "yellow"], [10, "orange"]]\n'
    )
    fold = DetectionFold(RuleBook.load(rules))
    start = datetime(2026, 7, 1, tzinfo=UTC)
    raised = {}
    for name in ("gw-sensitive", "gw-default"):
        st = None
        found = []
        for i, v in enumerate([0.0, 0.0, 5.0, 5.0, 5.0, 5.0, 5.0]):
            st, anomaly = fold.step(well(name), "ch4", start + timedelta(minutes=i), v, "%LEL", st)
            if anomaly is not None:
                found.append(anomaly)
        raised[name] = found
    assert raised["gw-default"] == []
    assert [a.state for a in raised["gw-sensitive"]] == ["raised"]
