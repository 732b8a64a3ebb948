"""A worker killed between the steps of a checkpoint loses and invents nothing.

The same readings go through a worker that runs undisturbed and through workers that
end themselves (``os._exit``, as a kill -9 would) right after one step of a checkpoint —
outputs durable, state durable — of the detect or the correlate agent, and are restarted
under the same application id. Every run must end with the same anomalies (id, state,
time, severity) and the same incidents (id, type, final status) as the undisturbed
one: nothing missing, nothing extra. An incident's severity is left out: it depends on
which of its wells' anomalies reached correlation first, and those come from different
readings partitions, which a restarted worker reads again at different paces.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from cityops.settings import Settings
from lifeline import codec
from lifeline.devices import gas_well
from lifeline.records import Anomaly, Incident
from store.devices import upsert_devices
from streams.offsets import caught_up, create_topic
from tests.integration.helpers import TailConsumer, start_group_at_end
from tests.integration.test_worker import Worker

pytestmark = pytest.mark.integration

WELLS = 12
STEPS = 90
PARTITIONS = 12
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def level(well: int, step: int) -> float:
    """Methane of a well: pairs of neighbouring wells leak together, some to orange."""
    pair = well // 2
    start = 10 + 7 * pair
    if start <= step < start + 25:
        return 60.0 if pair % 2 and step >= start + 8 else 30.0
    return 1.0 + 0.1 * ((well + step) % 3)


def make_city(dsn: str) -> str:
    code = f"327{secrets.randbelow(1000):03d}"
    wells = [
        gas_well(
            code,
            f"cw-{i}",
            asset_id=f"CW-{i}",
            grid_code=f"320102001003{i // 2:03d}",
            owner_dept="gas group",
        )
        for i in range(WELLS)
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        upsert_devices(conn, wells, {w.device_id: (f"{code}.{w.device_id}", "x") for w in wells})
    return code


async def feed(settings: Settings, topic: str, city: str) -> None:
    """One step of every well a moment, as batch records of one partition each."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for step in range(STEPS):
            ts = T0 + timedelta(minutes=step)
            encoded = [
                (f"cw-{w}", codec.encode_reading(city, f"cw-{w}", ts, "ch4", level(w, step), "%"))
                for w in range(WELLS)
            ]
            for p, items in codec.group_by_partition(encoded, PARTITIONS).items():
                await producer.send_and_wait(topic, codec.batch(items), partition=p)
            await asyncio.sleep(0.05)
    finally:
        await producer.stop()


async def run(
    settings: Settings, dsn: str, tmp: Path, fault: str | None
) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]], str]:
    city = make_city(dsn)
    topic = f"it.crash.{secrets.token_hex(3)}"
    await create_topic(settings.kafka_bootstrap, topic, PARTITIONS)
    app_id = f"it-crash-{secrets.token_hex(3)}"
    # Its own readings from the start; of the anomalies, only those it raises itself.
    await start_group_at_end(settings, app_id, ["cityops.anomalies", "cityops.video"])
    log = tmp / f"{app_id}.log"
    args = ("--readings-topic", topic, "--checkpoint-s", "0.1", "--offset-reset", "earliest")
    env = {"CITYOPS_FAULT": fault} if fault else {}
    anomalies: list[Anomaly] = []
    incidents: list[Incident] = []
    mine = f'"city":"{city}"'.encode()
    async with (
        TailConsumer(settings, "cityops.anomalies") as a_tail,
        TailConsumer(settings, "cityops.incidents") as i_tail,
    ):
        worker = Worker(settings, city, app_id, log, *args, env=env)
        restarted = False
        try:
            await asyncio.to_thread(worker.wait_ready)
            feeding = asyncio.create_task(feed(settings, topic, city))
            quiet = settled = 0
            deadline = asyncio.get_running_loop().time() + 150
            # Done once nothing new has come for 6 polls with the worker's committed
            # offsets at the end of the readings, or for 12 polls whatever they say.
            while quiet < 6 and settled < 12:
                assert asyncio.get_running_loop().time() < deadline, (
                    f"{fault}: not done in time (restarted: {restarted}); worker log:\n"
                    + log.read_text()[-3000:]
                )
                found_a = await a_tail.collect(lambda v, _k: mine in v, count=10**6, within=0.5)
                found_i = await i_tail.collect(lambda v, _k: mine in v, count=10**6, within=0.5)
                anomalies += [Anomaly.from_json(v) for _k, v in found_a]
                incidents += [Incident.from_json(v) for _k, v in found_i]
                if fault and not restarted and worker.proc.poll() is not None:
                    assert worker.proc.returncode == 137, (
                        f"{fault}: the worker exited with {worker.proc.returncode}; its log:\n"
                        + log.read_text()[-2000:]
                    )
                    worker = Worker(settings, city, app_id, log, *args)
                    worker.starts = 2
                    await asyncio.to_thread(worker.wait_ready)
                    restarted = True
                busy = found_a or found_i or not feeding.done() or (fault and not restarted)
                settled = 0 if busy else settled + 1
                done = not busy and await caught_up(
                    settings.kafka_bootstrap, app_id, topic, PARTITIONS
                )
                quiet = quiet + 1 if done else 0
            await feeding
        finally:
            await asyncio.to_thread(worker.stop)
    assert not fault or restarted, f"the fault {fault} never fired"
    strip = f"{city}:"
    got_a = {
        (a.anomaly_id.replace(strip, ""), a.state, a.ts.isoformat(), a.severity.value)
        for a in anomalies
        if a.kind != "offline"
    }
    final: dict[str, Incident] = {}
    for i in incidents:
        if i.incident_id not in final or i.revision >= final[i.incident_id].revision:
            final[i.incident_id] = i
    got_i = {(i.incident_id.replace(strip, ""), i.type.value, i.status) for i in final.values()}
    return got_a, got_i, log.read_text()


@pytest.mark.asyncio
@pytest.mark.timeout(900)
async def test_a_worker_killed_between_checkpoint_steps_loses_and_invents_nothing(
    live_stack: Settings, db_dsn: str, tmp_path: Path
) -> None:
    from pydantic import SecretStr

    settings = live_stack.model_copy(update={"db_dsn": SecretStr(db_dsn)})
    base_a, base_i, _log = await run(settings, db_dsn, tmp_path, None)
    assert len(base_a) >= 3 * WELLS // 2, "the run must raise, update and clear anomalies"
    assert {state for _id, state, _ts, _sev in base_a} == {"raised", "updated", "cleared"}
    assert len(base_i) == WELLS // 2
    for fault in (
        "detect:outputs:2",
        "detect:state:2",
        "correlate:outputs:2",
        "correlate:state:2",
    ):
        got_a, got_i, log = await run(settings, db_dsn, tmp_path, fault)
        assert got_a == base_a, (fault, got_a ^ base_a, log[-2000:])
        assert got_i == base_i, (fault, got_i ^ base_i)
