"""The detect agent in-process (Faust test context): readings in, anomalies out, state in
the table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ingest.registry import Registry
from lifeline.devices import Device
from lifeline.records import Anomaly
from streams.app import create_app
from streams.detection import DetectionFold, SeriesState

T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
WELL = Device(
    city="320100",
    device_id="gw-1",
    family="sensors",
    kind="gas_well",
    metrics={"ch4": "%LEL"},
    asset_id="GW-0001",
    grid_code="320102001001001",
    owner_dept="gas group",
    lon=118.78,
    lat=32.04,
)


def reading(i: int, value: float, device: str = "gw-1") -> bytes:
    return json.dumps(
        {
            "v": 1,
            "city": "320100",
            "device_id": device,
            "ts": (T0 + timedelta(minutes=i)).isoformat(),
            "metric": "ch4",
            "value": value,
            "unit": "%LEL",
        }
    ).encode()


def test_fold_raises_escalates_and_clears_once_each() -> None:
    fold = DetectionFold()
    state = None
    out = []
    for i, v in enumerate([0, 0, 30, 30, 30, 60, 60, 60, 1, 1, 1]):
        state, anomaly = fold.step(WELL, "ch4", T0 + timedelta(minutes=i), v, "%LEL", state)
        if anomaly:
            out.append((i, anomaly.state, anomaly.severity.value))
    assert out == [(3, "raised", "yellow"), (6, "updated", "orange"), (9, "cleared", "orange")]


def test_state_survives_a_pickle_round_trip() -> None:
    fold = DetectionFold()
    state, _ = fold.step(WELL, "ch4", T0, 30.0, "%LEL", None)
    again = SeriesState.loads(state.dumps())
    assert again.rank == state.rank
    _, a1 = fold.step(WELL, "ch4", T0 + timedelta(minutes=1), 30.0, "%LEL", state)
    _, a2 = fold.step(WELL, "ch4", T0 + timedelta(minutes=1), 30.0, "%LEL", again)
    assert a1 == a2


@pytest.mark.asyncio
async def test_agent_turns_readings_into_anomalies_with_stable_ids() -> None:
    sent: list[tuple[bytes, bytes]] = []

    async def emit(key: bytes, value: bytes) -> None:
        sent.append((key, value))

    app, detect = create_app("127.0.0.1:1", Registry([WELL]), app_id="test-detect", emit=emit)
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    async with detect.test_context() as agent:
        for i, v in enumerate([0, 30, 30, 30, 2, 2, 2]):
            await agent.put(reading(i, v))
        await agent.put(reading(0, 40, device="unknown"))
    # Iterating a stream makes Faust create its consumer thread's own event loop even in
    # test mode, where that thread never starts; close it so nothing leaks.
    thread = getattr(app._consumer, "_thread", None)
    if thread is not None and not thread.thread_loop.is_closed():
        thread.thread_loop.close()
    anomalies = [Anomaly.from_json(v) for _k, v in sent]
    assert [a.state for a in anomalies] == ["raised", "cleared"]
    assert {k for k, _v in sent} == {b"GW-0001"}  # keyed by asset for correlation
    assert anomalies[0].anomaly_id == anomalies[1].anomaly_id
    assert anomalies[0].grid_cell == "320102001001001"
