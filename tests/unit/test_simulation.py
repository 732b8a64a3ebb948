"""The simulator's generation and the scoring of a run against its ground truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from lifeline.vocabulary import IncidentType
from simulators.live import SimDevice, Simulation, plan
from simulators.score import score

START = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


def city() -> list[SimDevice]:
    devices = []
    for cell in range(6):
        code = f"320102001001{cell:03d}"
        devices += [
            SimDevice(f"gw-{cell}-a", "gas_well", 118.7, 32.0, code, f"GW-{cell}a"),
            SimDevice(f"gw-{cell}-b", "gas_well", 118.7, 32.0, code, f"GW-{cell}b"),
            SimDevice(f"up-{cell}", "road_ponding", 118.7, 32.0, code, f"UP-{cell}"),
            SimDevice(f"tun-{cell}", "tunnel_env", 118.7, 32.0, code, f"UT-{cell}"),
            SimDevice(f"dl-{cell}", "drain_level", 118.7, 32.0, code, None),
            SimDevice(f"3201000008132000000{cell}", "camera", 118.7, 32.0, code, None),
        ]
    return devices


def test_scenarios_use_separate_cells_and_drive_their_devices() -> None:
    devices = city()
    planned = plan(
        devices,
        ["gas_leak", "underpass_flooding", "tunnel_gas", "smoke_fire", "device_offline"],
        START,
        timedelta(hours=1),
        np.random.default_rng(1),
    )
    assert len({c for s in planned for c in s.cells}) == 5
    gas = planned[0]
    assert gas.type is IncidentType.GAS_LEAK
    assert len(gas.effects) == 2
    sim = Simulation(devices, planned, glitch_rate=0.0)
    during = dict(sim.readings_at(gas.start + timedelta(minutes=1)))
    before = dict(sim.readings_at(gas.start - timedelta(minutes=1)))
    for dev in devices:
        if dev.device_id in gas.effects:
            now_ch4 = next(v for d, v in during.items() if d.device_id == dev.device_id)["ch4"]
            was = next(v for d, v in before.items() if d.device_id == dev.device_id)["ch4"]
            assert now_ch4 > 25 > was
    offline = next(s for s in planned if s.type is IncidentType.DEVICE_OFFLINE)
    silent = next(iter(offline.effects))
    reporting = {d.device_id for d, _ in sim.readings_at(offline.start + timedelta(minutes=1))}
    assert silent not in reporting
    assert all(not d.is_camera for d, _ in sim.readings_at(START))
    fire = next(s for s in planned if s.type is IncidentType.FIRE)
    events = sim.camera_events_at(fire.start, timedelta(minutes=1))
    assert [(e[0], e[1]) for e in events] == [(fire.camera_event[0], "smoke_fire")]


def test_normal_behaviour_stays_inside_the_alarm_levels() -> None:
    sim = Simulation(city(), [], glitch_rate=0.0)
    for minute in range(0, 24 * 60, 7):
        for dev, values in sim.readings_at(START + timedelta(minutes=minute)):
            if dev.kind == "gas_well":
                assert values["ch4"] < 10
            if dev.kind == "road_ponding":
                assert values["depth"] < 15
            if dev.kind == "tunnel_env":
                assert values["o2"] > 19.5
                assert values["h2s"] < 10


def test_unknown_scenarios_and_too_few_devices_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        plan(city(), ["meteor"], START, timedelta(hours=1), np.random.default_rng(1))
    with pytest.raises(ValueError, match="bridge_deflection"):
        plan(city(), ["bridge_overload"], START, timedelta(hours=1), np.random.default_rng(1))


def truth_row(kind: str, cell: str, minute: int, severity: str = "orange") -> dict[str, object]:
    return {
        "scenario": kind,
        "type": kind,
        "severity": severity,
        "cells": [cell],
        "assets": [],
        "start": (START + timedelta(minutes=minute)).isoformat(),
        "end": (START + timedelta(minutes=minute + 15)).isoformat(),
    }


def incident(kind: str, cell: str, minute: float, severity: str = "orange") -> dict[str, object]:
    return {
        "incident_id": f"{cell}:{kind}:{minute}",
        "type": kind,
        "severity": severity,
        "grid_cells": [cell],
        "asset_ids": [],
        "started_at": (START + timedelta(minutes=minute)).isoformat(),
    }


def test_score_counts_one_incident_per_scenario() -> None:
    truth = [truth_row("gas_leak", "A", 0), truth_row("fire", "B", 20)]
    found = [
        incident("gas_leak", "A", 2),
        incident("gas_leak", "A", 3),  # the same situation twice: a false positive
        incident("fire", "C", 21),  # wrong place: neither a match nor silent
        incident("waterlogging", "D", 40, "yellow"),
    ]
    result = score(truth, found)
    assert result["matched"] == 1
    assert result["recall"] == 0.5
    assert result["precision"] == 0.25
    assert result["missed"] == ["fire"]
    assert len(result["false_positives"]) == 3
    assert result["per_type"]["gas_leak"]["median_ttd_s"] == 120.0


def test_score_reports_severity_mismatches() -> None:
    result = score([truth_row("gas_leak", "A", 0)], [incident("gas_leak", "A", 1, "red")])
    assert result["precision"] == result["recall"] == 1.0
    assert result["severity_mismatches"] == [
        {"scenario": "gas_leak", "expected": "orange", "found": "red"}
    ]
