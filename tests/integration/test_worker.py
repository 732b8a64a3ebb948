"""The stream worker on the real broker: readings become anomalies, and a worker killed
mid-stream recovers its state from the changelog without raising the same anomaly anew."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from cityops.settings import Settings
from lifeline.devices import Device, gas_well
from lifeline.records import Anomaly
from store.devices import upsert_devices
from tests.integration.helpers import TailConsumer

pytestmark = pytest.mark.integration


@pytest.fixture
def city(live_stack: Settings, db_dsn: str) -> tuple[Settings, str]:
    code = f"328{secrets.randbelow(1000):03d}"
    wells = [
        gas_well(
            code, f"gw-{i}", asset_id=f"GW-{i}", grid_code="320102001001001", owner_dept="gas group"
        )
        for i in range(2)
    ]
    wells.append(
        gas_well(
            code,
            "probe",
            asset_id="GW-P",
            grid_code="320102001001999",
            owner_dept="gas group",
            lon=118.79,
            lat=32.05,
        )
    )
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        upsert_devices(conn, wells, {w.device_id: (f"{code}.{w.device_id}", "x") for w in wells})
    return live_stack.model_copy(update={"db_dsn": SecretStr(db_dsn)}), code


class Worker:
    def __init__(
        self,
        settings: Settings,
        city: str,
        app_id: str,
        log: Path,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        env = {
            **os.environ,
            "CITYOPS_DB_DSN": settings.db_dsn.get_secret_value(),
            "CITYOPS_CITIES": city,
            "CITYOPS_LOG_LEVEL": "INFO",
            **(env or {}),
        }
        self.log = log
        with log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cityops.cli",
                    "worker",
                    "--app-id",
                    app_id,
                    # Only what the test sends: the topic's history is not the test's.
                    "--offset-reset",
                    "latest",
                    *extra,
                ],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited: {self.log.read_text()[-2000:]}")
            if self.log.read_text(errors="replace").count("Worker ready") >= self.starts:
                return
            time.sleep(0.3)
        raise AssertionError(f"worker not ready: {self.log.read_text()[-2000:]}")

    starts = 1

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def worker_log(tmp_path: Path) -> Path:
    return tmp_path / "worker.log"


async def send(
    settings: Settings, city: str, device: str, values: list[float], start: datetime
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for i, v in enumerate(values):
            body = {
                "v": 1,
                "city": city,
                "device_id": device,
                "metric": "ch4",
                "value": v,
                "unit": "%LEL",
                "ts": (start + timedelta(minutes=i)).isoformat(),
            }
            await producer.send_and_wait(
                "cityops.readings", json.dumps(body).encode(), key=device.encode()
            )
    finally:
        await producer.stop()


async def wait_processing(settings: Settings, city: str) -> None:
    """Until the worker has caught up with the topics' history and is consuming: a probe
    well's reading raises an anomaly."""
    async with TailConsumer(settings, "cityops.anomalies") as tail:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
        for attempt in range(30):
            await send(
                settings,
                city,
                "probe",
                [0, 40, 40, 0, 0, 0],
                start + timedelta(minutes=10 * attempt),
            )
            if await tail.collect(lambda v, _k: b'"probe"' in v, count=1, within=2):
                return
    raise AssertionError("the worker never processed a probe reading")


def anomalies_of(found: list[tuple[bytes | None, bytes]], device: str) -> list[Anomaly]:
    out = [Anomaly.from_json(v) for _k, v in found]
    return [a for a in out if a.device_id == device]


@pytest.mark.asyncio
async def test_worker_turns_readings_into_anomalies_and_recovers_after_kill(
    city: tuple[Settings, str], worker_log: Path
) -> None:
    settings, code = city
    app_id = f"it-worker-{secrets.token_hex(3)}"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    worker = Worker(settings, code, app_id, worker_log)
    try:
        await asyncio.to_thread(worker.wait_ready)
        await wait_processing(settings, code)
        async with TailConsumer(settings, "cityops.anomalies") as tail:
            await send(settings, code, "gw-0", [0, 0, 30, 30, 30, 30], start)
            first = await tail.collect(lambda v, _k: b'"gw-0"' in v, count=1, within=60)
            raised = anomalies_of(first, "gw-0")
            assert [a.state for a in raised] == ["raised"]
            assert raised[0].severity == "yellow"
            assert raised[0].asset_id == "GW-0"

            await asyncio.sleep(4)  # past Faust's commit interval: the state is in the changelog
            await asyncio.to_thread(worker.kill)
            worker = Worker(settings, code, app_id, worker_log)
            worker.starts = 2
            await asyncio.to_thread(worker.wait_ready)
            # Still above the level: a worker that lost its state would raise anew.
            await send(settings, code, "gw-0", [31, 31, 2, 2, 2], start + timedelta(minutes=6))
            rest = await tail.collect(
                lambda v, _k: b'"gw-0"' in v and b'"cleared"' in v, count=1, within=60
            )
            later = anomalies_of(rest, "gw-0")
    finally:
        await asyncio.to_thread(worker.stop)
    assert [a.state for a in later][-1] == "cleared"
    assert {a.anomaly_id for a in raised + later} == {raised[0].anomaly_id}


@pytest.mark.asyncio
async def test_two_wells_of_one_cell_make_one_gas_leak_incident(
    city: tuple[Settings, str], worker_log: Path
) -> None:
    from lifeline.records import Incident

    settings, code = city
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    worker = Worker(settings, code, f"it-worker-{secrets.token_hex(3)}", worker_log)
    try:
        await asyncio.to_thread(worker.wait_ready)
        await wait_processing(settings, code)
        async with TailConsumer(settings, "cityops.incidents") as tail:
            await send(settings, code, "gw-1", [0, 28, 28, 28], start)
            await send(settings, code, "gw-0", [0, 29, 29, 29], start + timedelta(minutes=1))
            found = await tail.collect(
                lambda v, _k: f"{code}:gw-".encode() in v, count=1, within=90
            )
    finally:
        await asyncio.to_thread(worker.stop)
    log_text = await asyncio.to_thread(worker_log.read_text)
    assert found, f"no incident; worker log: {log_text[-3000:]}"
    incidents = [Incident.from_json(v) for _k, v in found]
    assert [(i.type.value, i.severity.value) for i in incidents] == [("gas_leak", "orange")]
    assert incidents[0].grid_cells == ("320102001001001",)


@pytest.mark.asyncio
async def test_a_silent_device_goes_offline_and_comes_back(
    city: tuple[Settings, str], worker_log: Path
) -> None:
    settings, code = city
    app_id = f"it-worker-{secrets.token_hex(3)}"
    worker = Worker(
        settings, code, app_id, worker_log, "--offline-min-s", "3", "--liveness-every-s", "1"
    )
    try:
        await asyncio.to_thread(worker.wait_ready)
        await wait_processing(settings, code)
        async with TailConsumer(settings, "cityops.anomalies") as tail:
            start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
            for i in range(4):  # one reading a second: the device's usual gap
                await send(settings, code, "gw-1", [1.0], start + timedelta(minutes=i))
                await asyncio.sleep(1)
            gone = await tail.collect(
                lambda v, _k: b'"gw-1"' in v and b'"offline"' in v, count=1, within=30
            )
            assert gone, "no offline anomaly for a silent device"
            await send(settings, code, "gw-1", [1.0], start + timedelta(minutes=5))
            back = await tail.collect(
                lambda v, _k: b'"gw-1"' in v and b'"cleared"' in v, count=1, within=30
            )
    finally:
        await asyncio.to_thread(worker.stop)
    raised, cleared = anomalies_of(gone, "gw-1")[0], anomalies_of(back, "gw-1")[0]
    assert (raised.kind, raised.state, raised.detector) == ("offline", "raised", "heartbeat")
    assert cleared.state == "cleared"
    assert cleared.anomaly_id == raised.anomaly_id
    assert raised.anomaly_id.endswith(f":{int((start + timedelta(minutes=3)).timestamp())}")


async def readings_assignment(settings: Settings, group: str) -> list[set[int]]:
    """The readings partitions of each member of a consumer group."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        response = (await admin.describe_consumer_groups([group]))[0]
    finally:
        await admin.close()
    members = []
    for g in response.groups:
        if g[2] != "Stable":
            return []
        for member in g[5]:
            assignment = ConsumerProtocolMemberAssignment.decode(member[4])
            members.append(
                {
                    p
                    for topic, parts in assignment.assignment
                    for p in parts
                    if topic == "cityops.readings"
                }
            )
    return members


async def until_assignment(settings: Settings, group: str, members: int) -> list[set[int]]:
    for _ in range(120):
        found = await readings_assignment(settings, group)
        if len(found) == members and set().union(*found) == set(range(12)) and all(found):
            return found
        await asyncio.sleep(1)
    raise AssertionError(f"group {group} never had {members} members with all partitions")


@pytest.mark.asyncio
async def test_two_workers_split_the_partitions_and_one_takes_over_with_state(
    city: tuple[Settings, str], db_dsn: str, tmp_path: Path
) -> None:
    settings, code = city
    names = [f"tw-{i}" for i in range(24)]
    fleet = [
        gas_well(
            code, n, asset_id=f"TW-{i}", grid_code=f"320102001002{i:03d}", owner_dept="gas group"
        )
        for i, n in enumerate(names)
    ]
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        upsert_devices(conn, fleet, {d.device_id: (f"{code}.{d.device_id}", "x") for d in fleet})
    app_id = f"it-worker-{secrets.token_hex(3)}"
    first = Worker(settings, code, app_id, tmp_path / "w1.log")
    second = Worker(settings, code, app_id, tmp_path / "w2.log")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    try:
        await asyncio.gather(
            asyncio.to_thread(first.wait_ready), asyncio.to_thread(second.wait_ready)
        )
        split = await until_assignment(settings, app_id, 2)
        await wait_processing(settings, code)
        async with TailConsumer(settings, "cityops.anomalies") as tail:
            await asyncio.gather(
                *(send(settings, code, n, [0, 0, 30, 30, 30, 30], start) for n in names)
            )
            raised = await tail.collect(
                lambda v, _k: b'"tw-' in v and b'"raised"' in v, count=len(names), within=90
            )
            await asyncio.sleep(4)  # past the commit interval: state is in the changelog
            await asyncio.to_thread(first.kill)
            taken = await until_assignment(settings, app_id, 1)
            later = start + timedelta(minutes=6)
            await asyncio.gather(
                *(send(settings, code, n, [31, 31, 2, 2, 2], later) for n in names)
            )
            cleared = await tail.collect(
                lambda v, _k: b'"tw-' in v and b'"cleared"' in v, count=len(names), within=90
            )
    finally:
        await asyncio.to_thread(first.stop)
        await asyncio.to_thread(second.stop)
    assert len(split) == 2
    assert all(len(parts) >= 3 for parts in split), split
    assert taken == [set(range(12))]
    raised_ids = {Anomaly.from_json(v).anomaly_id for _k, v in raised}
    cleared_ids = {Anomaly.from_json(v).anomaly_id for _k, v in cleared}
    assert len(raised_ids) == len(names)
    # The survivor cleared every anomaly, its own and those of the killed worker: the
    # state came over through the changelog, and nothing was raised anew.
    assert cleared_ids == raised_ids


@pytest.mark.asyncio
async def test_an_acknowledged_lasting_shift_becomes_the_new_normal(
    city: tuple[Settings, str], worker_log: Path, db_dsn: str
) -> None:
    """A district meter's inflow steps up and stays up: the shift is raised and held
    (a leak candidate); once the duty officer acknowledges its alert, the new level is
    normal and the anomaly clears with the next reading."""
    from lifeline.records import Incident
    from lifeline.vocabulary import IncidentType
    from store.alerts import transition
    from store.events import upsert_anomalies, upsert_incidents

    settings, code = city
    meter = Device(
        city=code,
        device_id="wf-1",
        family="sensors",
        kind="water_flow",
        metrics={"flow": "m3/h"},
        asset_id="WA-1",
        grid_code="320102001001002",
        owner_dept="water group",
        lon=118.78,
        lat=32.04,
    )
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        upsert_devices(conn, [meter], {"wf-1": (f"{code}.wf-1", "x")})
    rng = np.random.default_rng(4)
    step_s = 300.0
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    t = np.arange(int(1.5 * 86400 / step_s)) * step_s
    flow = 120 + 35 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 3, t.size)
    flow[int(1.3 * 86400 / step_s) :] += 60.0  # the inflow steps up, and stays up

    async def send_flow(values: np.ndarray, first: int) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            for i, v in enumerate(values.tolist(), start=first):
                body = {
                    "v": 1,
                    "city": code,
                    "device_id": "wf-1",
                    "metric": "flow",
                    "value": v,
                    "unit": "m3/h",
                    "ts": (start + timedelta(seconds=i * step_s)).isoformat(),
                }
                await producer.send("cityops.readings", json.dumps(body).encode(), key=b"wf-1")
            await producer.flush()
        finally:
            await producer.stop()

    worker = Worker(settings, code, f"it-worker-{secrets.token_hex(3)}", worker_log)
    try:
        await asyncio.to_thread(worker.wait_ready)
        await wait_processing(settings, code)
        async with TailConsumer(settings, "cityops.anomalies") as tail:
            await send_flow(flow, 0)
            found = await tail.collect(
                lambda v, _k: b'"wf-1"' in v and b"drift_up" in v, count=1, within=90
            )
            raised = anomalies_of(found, "wf-1")
            assert raised, "no shift raised"
            shift = raised[0]
            early = await tail.collect(
                lambda v, _k: b'"wf-1"' in v and b'"cleared"' in v, count=1, within=5
            )
            assert not early  # held through the rest of the readings at the new level

            incident = Incident(
                incident_id=f"{code}:320102001001002:water_leak:{int(shift.ts.timestamp())}",
                city=code,
                type=IncidentType.WATER_LEAK,
                severity=shift.severity,
                anomaly_ids=(shift.anomaly_id,),
                grid_cells=("320102001001002",),
                started_at=shift.ts,
                updated_at=shift.ts,
            )
            with psycopg.connect(db_dsn) as conn:
                upsert_anomalies(conn, [shift])
                upsert_incidents(conn, [incident])
                conn.commit()
                transition(conn, incident.incident_id, None, "acknowledge", "duty", "seen")
            await asyncio.sleep(12)  # the worker polls acknowledgements every 10 s
            more = flow[-6:] + rng.normal(0, 1, 6)
            await send_flow(more, t.size)
            cleared = await tail.collect(
                lambda v, _k: b'"wf-1"' in v and b'"cleared"' in v, count=1, within=60
            )
    finally:
        await asyncio.to_thread(worker.stop)
    log_text = await asyncio.to_thread(worker_log.read_text)
    assert cleared, f"not cleared after the acknowledgement: {log_text[-3000:]}"
    assert anomalies_of(cleared, "wf-1")[0].anomaly_id == shift.anomaly_id
    assert "held shift released by its acknowledgement" in log_text


@pytest.mark.asyncio
async def test_a_heating_station_judged_as_a_whole_raises_one_joint_alarm_across_a_restart(
    city: tuple[Settings, str], worker_log: Path, db_dsn: str
) -> None:
    """Its five metrics, each reported once a minute, learnt together for two days; its
    return temperature then runs warm for its load, inside its own range: one joint
    anomaly naming it, which a worker killed and restarted clears, never raises anew."""
    from lifeline import codec
    from tests.unit.test_joint_fold import BREAK, STATION, _rows

    settings, code = city
    station = STATION.model_copy(update={"city": code})
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        upsert_devices(conn, [station], {station.device_id: (f"{code}.hn-1", "x")})
    rows = _rows(3)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=len(rows) + 60)

    async def send_rows(first: int, last: int) -> None:
        encoded = [
            codec.encode_reading(
                code, "hn-1", start + timedelta(minutes=i), m, v, station.metrics[m]
            )
            for i in range(first, last)
            for m, v in rows[i].items()
        ]
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            for record in codec.batches(encoded):
                await producer.send_and_wait("cityops.readings", record, key=b"hn-1")
        finally:
            await producer.stop()

    def joint(found: list[tuple[bytes | None, bytes]]) -> list[Anomaly]:
        return [a for a in anomalies_of(found, "hn-1") if a.detector == "joint"]

    app_id = f"it-worker-{secrets.token_hex(3)}"
    worker = Worker(settings, code, app_id, worker_log)
    try:
        await asyncio.to_thread(worker.wait_ready)
        await wait_processing(settings, code)
        async with TailConsumer(settings, "cityops.anomalies") as tail:
            await send_rows(0, BREAK[0] + 20)
            first = await tail.collect(
                lambda v, _k: b'"hn-1"' in v and b'"joint"' in v, count=1, within=120
            )
            raised = joint(first)
            assert raised[0].state == "raised", raised
            assert {a.state for a in raised[1:]} <= {"updated"}  # re-reported while open
            assert raised[0].evidence[0].metric == "return_temp"
            await asyncio.sleep(4)  # past a checkpoint: the joint model is in the changelog
            await asyncio.to_thread(worker.kill)
            worker = Worker(settings, code, app_id, worker_log)
            worker.starts = 2
            await asyncio.to_thread(worker.wait_ready)
            await send_rows(BREAK[0] + 20, BREAK[1] + 60)
            rest = await tail.collect(
                lambda v, _k: b'"hn-1"' in v and b'"joint"' in v and b'"cleared"' in v,
                count=1,
                within=120,
            )
            later = joint(rest)
    finally:
        await asyncio.to_thread(worker.stop)
    assert later[-1].state == "cleared"
    assert {a.anomaly_id for a in raised + later} == {raised[0].anomaly_id}
    assert "raised" not in [a.state for a in later]
