"""A reading travels MQTT → bridge → Kafka → consumer → PostgreSQL on the real services."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from cityops.ingest import bridge_config as platform_bridge_config
from cityops.settings import Settings
from ingest.bridge import Bridge, BridgeConfig
from ingest.deadletter import DeadLetter
from ingest.decode import Decoder
from lifeline.devices import gas_well
from lifeline.records import Reading
from lifeline.registry import Registry
from store.readings import read_readings, write_readings
from tests.conftest import unique_id
from tests.integration.helpers import TailConsumer, mqtt_publish

pytestmark = pytest.mark.integration

CITY = "320100"


def registry_for(device_id: str) -> Registry:
    return Registry([gas_well(CITY, device_id, owner_dept="gas group", lon=118.8, lat=32.0)])


def bridge_config(settings: Settings) -> BridgeConfig:
    return platform_bridge_config(
        settings, unique_id("it-bridge"), [f"cityops/{CITY}/sensors/+/up"]
    )


@contextlib.asynccontextmanager
async def running_bridge(settings: Settings, device: str) -> AsyncIterator[Bridge]:
    """A bridge of its own for ``device``, running until the block ends."""
    bridge = Bridge(bridge_config(settings), Decoder(registry_for(device)))
    await bridge.start()
    stop = asyncio.Event()
    runner = asyncio.create_task(bridge.run(stop))
    try:
        yield bridge
    finally:
        stop.set()
        await runner
        await bridge.stop(keep_session=False)


@pytest.mark.asyncio
async def test_reading_published_over_mqtt_is_stored_in_postgres(
    live_stack: Settings, db_dsn: str
) -> None:
    device = unique_id("gw")
    ts = datetime.now(UTC).replace(microsecond=0)
    sent = Reading(city=CITY, device_id=device, ts=ts, metric="ch4", value=27.5, unit="%LEL")
    async with (
        running_bridge(live_stack, device),
        TailConsumer(live_stack, "cityops.readings") as tail,
    ):
        await asyncio.to_thread(
            mqtt_publish, live_stack, [(f"cityops/{CITY}/sensors/{device}/up", sent.to_json())]
        )
        found = await tail.collect(lambda _v, k: k == device.encode(), count=1)
    assert len(found) == 1
    _key, value = found[0]
    received = Reading.from_json(value)
    assert received == sent

    with psycopg.connect(db_dsn) as conn:
        assert write_readings(conn, [received]) == 1
        assert write_readings(conn, [received]) == 0  # the same batch again adds nothing
        stored = read_readings(
            conn, CITY, device, "ch4", ts - timedelta(seconds=1), ts + timedelta(1)
        )
    assert list(stored) == [sent]


@pytest.mark.asyncio
async def test_bad_payload_is_dead_lettered_with_raw_bytes_and_reason(
    live_stack: Settings,
) -> None:
    device = unique_id("gw")
    topic = f"cityops/{CITY}/sensors/{device}/up"
    raw = b'{"city": "320100", "device_id": oops'
    async with (
        running_bridge(live_stack, device),
        TailConsumer(live_stack, "cityops.deadletter") as tail,
    ):
        await asyncio.to_thread(mqtt_publish, live_stack, [(topic, raw)])
        found = await tail.collect(lambda _v, k: k == topic.encode(), count=1)
    assert len(found) == 1
    letter = DeadLetter.from_json(found[0][1])
    assert letter.raw == raw
    assert letter.mqtt_topic == topic
    assert letter.reason == "bad_json"
    assert "not valid JSON" in letter.detail
