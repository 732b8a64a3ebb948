"""The detect agent in-process (Faust test context): readings in, anomalies out, state in
the table."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lifeline import codec
from lifeline.devices import gas_well
from lifeline.records import Anomaly
from lifeline.registry import Registry
from streams.app import create_app
from streams.checkpoint import Out
from streams.detection import DetectionFold, SeriesState
from streams.offsets import MemoryOffsets

T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
WELL = gas_well(
    "320100", "gw-1", asset_id="GW-0001", grid_code="320102001001001", owner_dept="gas group"
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


def _test_app(registry: Registry, app_id: str, publish: Any) -> Any:
    """The stream app on an in-memory store, ready for ``agent.test_context()``: every
    record it would send is handed to ``publish``."""
    app, agents = create_app(
        "127.0.0.1:1",
        registry,
        app_id=app_id,
        publish=publish,
        offsets=MemoryOffsets(),
        loop=asyncio.get_running_loop(),
        checkpoint_events=1,
    )
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    return app, agents


@pytest.mark.asyncio
async def test_agent_turns_readings_into_anomalies_with_stable_ids() -> None:
    sent: list[tuple[bytes, bytes]] = []
    changelog: list[Out] = []

    async def publish(records: list[Out]) -> None:
        for r in records:
            if r.topic == "cityops.anomalies":
                sent.append((r.key, r.value))
            else:
                changelog.append(r)

    app, agents = _test_app(Registry([WELL]), "test-detect", publish)
    values = [0, 30, 30, 30, 2, 2, 2]
    async with agents.detect.test_context() as agent:
        for i, v in enumerate(values[:3]):
            await agent.put(reading(i, v))  # v1 records, one reading each
        # A batch record (v2) of the rest, with a reading of an unknown device inside.
        rest = [reading(i, v) for i, v in enumerate(values) if i >= 3]
        await agent.put(codec.batch([*rest, reading(0, 40, device="unknown")]))
        # Redelivered after a restart (offsets committed behind the table's changelog):
        # already applied, so neither raised nor cleared again.
        await agent.put(codec.batch([reading(i, v) for i, v in enumerate(values) if i]))
    # Iterating a stream makes Faust create its consumer thread's own event loop even in
    # test mode, where that thread never starts; close it so nothing leaks.
    thread = getattr(app._consumer, "_thread", None)
    if thread is not None and not thread.thread_loop.is_closed():
        thread.thread_loop.close()
    anomalies = [Anomaly.from_json(v) for _k, v in sent]
    assert [a.state for a in anomalies] == ["raised", "cleared"]
    assert {k for k, _v in sent} == {b"320100:320102001001001"}  # city and cell
    assert anomalies[0].anomaly_id == anomalies[1].anomaly_id
    assert anomalies[0].grid_cell == "320102001001001"
    # The series' state went to the table's changelog, on the reading's partition.
    assert {(r.topic, r.key) for r in changelog} == {
        ("test-detect-detect-state-changelog", b'"320100|gw-1|ch4"')
    }


@pytest.mark.asyncio
async def test_correlate_agent_turns_anomalies_of_two_wells_into_one_incident() -> None:
    from lifeline.records import Evidence, Incident
    from lifeline.vocabulary import Severity

    sent: list[tuple[str, bytes, bytes]] = []

    async def publish(records: list[Out]) -> None:
        sent.extend((r.topic, r.key, r.value) for r in records)

    other = WELL.model_copy(update={"device_id": "gw-2", "asset_id": "GW-0002"})
    app, agents = _test_app(Registry([WELL, other]), "test-correlate", publish)

    def anomaly(device: str, minute: int) -> bytes:
        ts = T0 + timedelta(minutes=minute)
        return Anomaly(
            anomaly_id=f"320100:{device}:ch4:1",
            city="320100",
            kind="ch4_level_yellow",
            device_id=device,
            grid_cell=WELL.grid_code,
            ts=ts,
            detector="level_yellow",
            severity=Severity.YELLOW,
            evidence=(Evidence(device_id=device, metric="ch4", value=30, unit="%LEL", ts=ts),),
        ).to_json()

    async with agents.correlate.test_context() as agent:
        await agent.put(anomaly("gw-1", 0), key=WELL.grid_code.encode())
        await agent.put(anomaly("gw-2", 1), key=WELL.grid_code.encode())
    thread = getattr(app._consumer, "_thread", None)
    if thread is not None and not thread.thread_loop.is_closed():
        thread.thread_loop.close()
    incidents = [Incident.from_json(v) for t, _k, v in sent if t == "cityops.incidents"]
    assert [(i.type.value, i.severity.value, i.revision) for i in incidents] == [
        ("gas_leak", "orange", 1)
    ]


def test_a_step_with_its_arrival_is_the_step_then_the_arrival() -> None:
    fold = DetectionFold()
    joined = parted = None
    for i, v in enumerate([0, 30, 30, 30, 60, 2, 2, 2, 2]):
        ts = T0 + timedelta(minutes=i)
        wall = 1_000.0 + 7 * i
        joined, a1 = fold.step(WELL, "ch4", ts, v, "%LEL", joined, (wall, 5))
        parted, a2 = fold.step(WELL, "ch4", ts, v, "%LEL", parted)
        parted = parted.arrived(wall, ts.timestamp(), 5)
        assert joined == parted
        assert a1 == a2
