"""Ingest on the real Mosquitto, Kafka and PostgreSQL: onboarding, every payload shape,
every bad-input class, ACL refusal, bridge restart and Kafka outage with nothing lost."""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr

from cityops.ingest import bridge_config, drain_left_sessions
from cityops.onboard import onboard
from cityops.settings import Settings
from cityops.stack import Stack
from ingest.adapters import load_vendors
from ingest.bridge import Bridge, subscriptions
from ingest.deadletter import DeadLetter
from ingest.decode import Decoder
from lifeline import codec
from lifeline.records import DeviceStatus, Reading, VideoEvent
from simulators.publisher import DevicePublisher
from store.registry import load_now
from tests.integration.helpers import TailConsumer

pytestmark = pytest.mark.integration


@dataclass
class PilotCity:
    code: str
    settings: Settings
    creds: dict[str, tuple[str, str]]  # device id -> (username, password)
    camera: str
    credentials_file: Path


@pytest.fixture(scope="module")
def city(live_stack: Settings, db_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> PilotCity:
    code = f"329{secrets.randbelow(1000):03d}"
    camera = f"{code}00081320000001"
    folder = tmp_path_factory.mktemp("onboard")
    rows = [
        ("gw-1", "gas_well", "", ""),
        ("gw-2", "gas_well", "", ""),
        ("gw-3", "gas_well", "", ""),
        ("tn-1", "tunnel_env", "o2:%vol;h2s:ppm;ch4:%LEL;temperature:°C", ""),
        ("acme-1", "gas_well", "ch4:%LEL;temperature:°C", "acme-lora"),
        (camera, "camera", "", ""),
    ]
    path = folder / "devices.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["device_id", "kind", "lon", "lat", "metrics", "vendor", "owner_dept"])
        for i, (dev, kind, metrics, vendor) in enumerate(rows):
            w.writerow([dev, kind, 118.78 + i * 0.001, 32.04, metrics, vendor, "ops"])
    settings = live_stack.model_copy(update={"db_dsn": SecretStr(db_dsn)})
    out = folder / "creds.csv"
    result = onboard(
        settings,
        path,
        code,
        crs="EPSG:4326",
        placer=None,
        credentials_out=out,
        rotate=False,
        show_progress=False,
    )
    assert result.devices == 6
    assert result.broker_accounts == 6
    with out.open() as fh:
        creds = {
            r["device_id"]: (r["mqtt_username"], r["mqtt_password"]) for r in csv.DictReader(fh)
        }
    return PilotCity(code, settings, creds, camera, out)


def bridge_for(city: PilotCity, client_id: str) -> Bridge:
    config = bridge_config(city.settings, client_id, subscriptions([city.code]))
    registry = load_now(city.settings.db_dsn.get_secret_value(), [city.code])
    return Bridge(config, Decoder(registry, load_vendors()))


@pytest_asyncio.fixture
async def running_bridge(city: PilotCity) -> AsyncIterator[Bridge]:
    bridge = bridge_for(city, f"it-ingest-{secrets.token_hex(3)}")
    await bridge.start()
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    yield bridge
    stop.set()
    await task
    await bridge.stop(keep_session=False)


@pytest.fixture
def devices(city: PilotCity) -> Iterator[dict[str, DevicePublisher]]:
    broker = city.settings.broker()
    pubs = {
        dev: DevicePublisher(broker.as_account(*cred)).connect() for dev, cred in city.creds.items()
    }
    yield pubs
    for p in pubs.values():
        p.close()


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def reading(city: PilotCity, dev: str, value: float, ts: datetime | None = None) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "city": city.code,
            "device_id": dev,
            "ts": (ts or now()).isoformat(),
            "metric": "ch4",
            "value": value,
            "unit": "%LEL",
        }
    ).encode()


@pytest.mark.asyncio
async def test_every_payload_shape_reaches_its_topic(
    city: PilotCity, devices: dict[str, DevicePublisher], running_bridge: Bridge
) -> None:
    c = city.code
    t = now()
    compact = {"ts": t.isoformat(), "values": {"o2": 20.9, "h2s": 1.0}}
    vendor = {
        "meta": {"sn": "acme-1"},
        "payload": {
            "frames": [
                {
                    "collectTime": int(t.timestamp() * 1000),
                    "sensors": {"methane": {"val": 0.5, "unit": "%vol"}, "temp": 19.0},
                }
            ]
        },
    }
    video = {
        "DeviceID": city.camera,
        "AlarmPriority": 2,
        "AlarmMethod": 5,
        "AlarmTime": t.isoformat(),
        "EventType": "smoke_fire",
        "Longitude": 118.78,
        "Latitude": 32.04,
        "Confidence": 0.9,
    }
    async with (
        TailConsumer(city.settings, "cityops.readings") as readings_tail,
        TailConsumer(city.settings, "cityops.video") as video_tail,
        TailConsumer(city.settings, "cityops.status") as status_tail,
    ):
        pub = devices
        assert (
            await asyncio.to_thread(
                pub["gw-1"].publish_acked,
                f"cityops/{c}/sensors/gw-1/up",
                reading(city, "gw-1", 7.5),
            )
            == 0
        )
        assert (
            await asyncio.to_thread(
                pub["tn-1"].publish_acked,
                f"cityops/{c}/sensors/tn-1/up",
                json.dumps(compact).encode(),
            )
            == 0
        )
        assert (
            await asyncio.to_thread(
                pub["acme-1"].publish_acked,
                f"cityops/{c}/sensors/acme-1/up",
                json.dumps(vendor).encode(),
            )
            == 0
        )
        assert (
            await asyncio.to_thread(
                pub[city.camera].publish_acked,
                f"cityops/{c}/cameras/{city.camera}/event",
                json.dumps(video).encode(),
            )
            == 0
        )
        assert (
            await asyncio.to_thread(
                pub["gw-2"].publish_acked, f"cityops/{c}/sensors/gw-2/status", b"online"
            )
            == 0
        )
        ours = (b"gw-1", b"tn-1", b"acme-1")
        got = await readings_tail.collect(lambda _v, k: k in ours, count=5)
        # Both readings of the compact tunnel payload travel in one batch record.
        assert any(
            v.startswith(b'{"v":2,') and v.count(b'"tn-1"') == 2 for _p, v in readings_tail.records
        )
        events = await video_tail.collect(lambda _v, k: k == city.camera.encode(), count=1)
        statuses = await status_tail.collect(lambda _v, k: k == b"gw-2", count=1)
    values = {
        (Reading.from_json(v).device_id, Reading.from_json(v).metric): Reading.from_json(v).value
        for _k, v in got
    }
    assert values == {
        ("gw-1", "ch4"): 7.5,
        ("tn-1", "o2"): 20.9,
        ("tn-1", "h2s"): 1.0,
        ("acme-1", "ch4"): 10.0,
        ("acme-1", "temperature"): 19.0,
    }
    assert VideoEvent.from_json(events[0][1]).event_type == "smoke_fire"
    assert DeviceStatus.from_json(statuses[0][1]).status == "online"


@pytest.mark.asyncio
async def test_each_bad_input_is_dead_lettered_with_its_reason(
    city: PilotCity, devices: dict[str, DevicePublisher], running_bridge: Bridge
) -> None:
    c = city.code
    topic = f"cityops/{c}/sensors/gw-1/up"
    future = now() + timedelta(hours=2)
    cases = {
        "bad_json": b"{oops",
        "unknown_metric": json.dumps({"ts": now().isoformat(), "values": {"flow": 1}}).encode(),
        "out_of_range": reading(city, "gw-1", 400.0),
        "wrong_unit": json.dumps(
            {
                "v": 1,
                "city": c,
                "device_id": "gw-1",
                "ts": now().isoformat(),
                "metric": "ch4",
                "value": 1,
                "unit": "kPa",
            }
        ).encode(),
        "bad_timestamp": reading(city, "gw-1", 1.0, ts=future),
        "oversize": b"x" * (70 * 1024),
        "topic_mismatch": reading(city, "gw-2", 1.0),
    }
    async with TailConsumer(city.settings, "cityops.deadletter") as tail:
        for payload in cases.values():
            assert await asyncio.to_thread(devices["gw-1"].publish_acked, topic, payload) == 0
        letters = await tail.collect(lambda _v, k: k == topic.encode(), count=len(cases))
    by_reason = {DeadLetter.from_json(v).reason: DeadLetter.from_json(v) for _k, v in letters}
    assert set(by_reason) == set(cases)
    for reason, payload in cases.items():
        assert by_reason[reason].raw == payload
        assert by_reason[reason].mqtt_topic == topic
        assert by_reason[reason].detail


@pytest.mark.asyncio
async def test_unknown_device_is_dead_lettered(city: PilotCity, running_bridge: Bridge) -> None:
    from tests.integration.helpers import mqtt_publish

    topic = f"cityops/{city.code}/sensors/ghost-1/up"
    async with TailConsumer(city.settings, "cityops.deadletter") as tail:
        await asyncio.to_thread(mqtt_publish, city.settings, [(topic, reading(city, "ghost-1", 1))])
        [(_k, value)] = await tail.collect(lambda _v, k: k == topic.encode(), count=1)
    assert DeadLetter.from_json(value).reason == "unknown_device"


@pytest.mark.asyncio
async def test_devices_cannot_publish_on_other_devices_or_cities_topics(
    city: PilotCity, devices: dict[str, DevicePublisher], running_bridge: Bridge
) -> None:
    not_authorized = 135
    gw1 = devices["gw-1"]
    async with TailConsumer(city.settings, "cityops.readings") as tail:
        other_device = f"cityops/{city.code}/sensors/gw-2/up"
        other_city = "cityops/320100/sensors/gw-1/up"
        assert (
            await asyncio.to_thread(gw1.publish_acked, other_device, reading(city, "gw-2", 3.0))
            == not_authorized
        )
        assert (
            await asyncio.to_thread(gw1.publish_acked, other_city, reading(city, "gw-1", 3.0))
            == not_authorized
        )
        assert (
            await asyncio.to_thread(
                gw1.publish_acked,
                f"cityops/{city.code}/sensors/gw-1/up",
                reading(city, "gw-1", 4.0),
            )
            == 0
        )
        got = await tail.collect(lambda _v, k: k in (b"gw-1", b"gw-2"), count=2, within=5)
    assert [Reading.from_json(v).value for _k, v in got] == [4.0]


@pytest.mark.asyncio
async def test_messages_published_while_the_bridge_is_down_arrive_after_restart(
    city: PilotCity, devices: dict[str, DevicePublisher]
) -> None:
    client_id = f"it-restart-{secrets.token_hex(3)}"
    first = bridge_for(city, client_id)
    await first.start()  # creates the persistent session and its subscriptions
    await first.stop()
    values = [float(i % 90) + 0.5 for i in range(200)]
    base = now() - timedelta(minutes=5)
    async with TailConsumer(city.settings, "cityops.readings") as tail:
        for i, v in enumerate(values):
            payload = reading(city, "gw-2", v, ts=base + timedelta(seconds=i))
            assert (
                await asyncio.to_thread(
                    devices["gw-2"].publish_acked, f"cityops/{city.code}/sensors/gw-2/up", payload
                )
                == 0
            )
        second = bridge_for(city, client_id)
        await second.start()
        stop = asyncio.Event()
        task = asyncio.create_task(second.run(stop))
        got = await tail.collect(lambda _v, k: k == b"gw-2", count=len(values))
        stop.set()
        await task
        await second.stop(keep_session=False)
    assert _values(got) == sorted(values)


@pytest.mark.asyncio
async def test_forwarded_messages_are_acknowledged_and_never_delivered_again(
    city: PilotCity, devices: dict[str, DevicePublisher]
) -> None:
    client_id = f"it-acked-{secrets.token_hex(3)}"
    values = [float(i % 90) + 0.75 for i in range(3000)]
    base = now() - timedelta(minutes=10)
    async with TailConsumer(city.settings, "cityops.readings") as tail:
        first = bridge_for(city, client_id)
        await first.start()
        stop = asyncio.Event()
        task = asyncio.create_task(first.run(stop))
        await _publish_readings(city, devices["gw-3"], "gw-3", values, base)
        got = await tail.collect(lambda _v, k: k == b"gw-3", count=len(values))
        stop.set()
        await task
        await first.stop()  # the session stays; anything unacknowledged would come again
        second = bridge_for(city, client_id)
        await second.start()
        stop = asyncio.Event()
        task = asyncio.create_task(second.run(stop))
        again = await tail.collect(lambda _v, k: k == b"gw-3", count=1, within=3.0)
        stop.set()
        await task
        await second.stop(keep_session=False)
    assert _values(got) == sorted(values)
    assert again == []
    assert second.forwarded == 0


def _values(records: list[tuple[bytes | None, bytes]]) -> list[float]:
    return sorted(Reading.from_json(v).value for _k, v in records)


async def _publish_readings(
    city: PilotCity, device: DevicePublisher, device_id: str, values: list[float], base: datetime
) -> None:
    for i, v in enumerate(values):
        payload = reading(city, device_id, v, ts=base + timedelta(milliseconds=100 * i))
        topic = f"cityops/{city.code}/sensors/{device_id}/up"
        assert await asyncio.to_thread(device.publish_acked, topic, payload) == 0


@pytest.mark.asyncio
async def test_scaling_down_empties_and_ends_the_sessions_left_behind(
    city: PilotCity, devices: dict[str, DevicePublisher]
) -> None:
    prefix = f"it-scale-{secrets.token_hex(3)}"
    settings = city.settings.model_copy(update={"cities": (city.code,)})
    # An earlier run had two bridges; both stopped, their sessions stay in the group.
    for number in (1, 2):
        earlier = bridge_for(city, f"{prefix}-{number}")
        await earlier.start()
        await earlier.stop()
    first = [float(i % 90) + 0.125 for i in range(400)]
    then = [float(i % 90) + 0.375 for i in range(100)]
    base = now() - timedelta(minutes=8)
    async with TailConsumer(city.settings, "cityops.readings") as tail:
        await _publish_readings(city, devices["gw-1"], "gw-1", first, base)
        # Now one bridge: it runs as -1 and empties the session of -2.
        bridge = bridge_for(city, f"{prefix}-1")
        await bridge.start()
        stop = asyncio.Event()
        task = asyncio.create_task(bridge.run(stop))
        drained = await drain_left_sessions(settings, prefix, 2, bridge.decode)
        got = await tail.collect(lambda _v, k: k == b"gw-1", count=len(first))
        # The session of -2 is gone: everything devices publish now reaches -1.
        await _publish_readings(city, devices["gw-1"], "gw-1", then, base + timedelta(minutes=1))
        got_then = await tail.collect(lambda _v, k: k == b"gw-1", count=len(then))
        stop.set()
        await task
        await bridge.stop(keep_session=False)
    assert drained == [f"{prefix}-2"]
    assert _values(got) == sorted(first)
    assert _values(got_then) == sorted(then)


@pytest.mark.asyncio
async def test_a_bridge_leaving_for_good_hands_its_share_over_without_loss(
    city: PilotCity, devices: dict[str, DevicePublisher]
) -> None:
    prefix = f"it-leave-{secrets.token_hex(3)}"
    bridges = [bridge_for(city, f"{prefix}-{n}") for n in (1, 2)]
    stops = [asyncio.Event(), asyncio.Event()]
    for bridge in bridges:
        await bridge.start()
    tasks = [asyncio.create_task(b.run(s)) for b, s in zip(bridges, stops, strict=True)]
    values = [float(i % 90) + 0.625 for i in range(1500)]
    base = now() - timedelta(minutes=6)
    async with TailConsumer(city.settings, "cityops.readings") as tail:
        publishing = asyncio.create_task(
            _publish_readings(city, devices["gw-2"], "gw-2", values, base)
        )
        for _ in range(3000):
            if bridges[1].handled >= 100:
                break
            await asyncio.sleep(0.01)
        # The second bridge leaves while devices go on publishing.
        stops[1].set()
        await tasks[1]
        await bridges[1].leave()
        await publishing
        got = await tail.collect(lambda _v, k: k == b"gw-2", count=len(values))
        stops[0].set()
        await tasks[0]
        await bridges[0].stop(keep_session=False)
    assert _values(got) == sorted(values)
    assert 100 <= bridges[1].handled < len(values)


@pytest.mark.asyncio
async def test_kafka_outage_holds_messages_until_it_returns(
    city: PilotCity, devices: dict[str, DevicePublisher], running_bridge: Bridge
) -> None:
    kafka = Stack.from_settings(city.settings).kafka
    values = [float(i) + 0.25 for i in range(50)]
    base = now() - timedelta(minutes=3)
    async with TailConsumer(city.settings, "cityops.readings") as tail:
        positions = {tp: await tail.consumer.position(tp) for tp in tail.consumer.assignment()}
    await asyncio.to_thread(kafka.down)
    try:
        for i, v in enumerate(values):
            payload = reading(city, "gw-1", v, ts=base + timedelta(seconds=i))
            assert (
                await asyncio.to_thread(
                    devices["gw-1"].publish_acked, f"cityops/{city.code}/sensors/gw-1/up", payload
                )
                == 0
            )
        await asyncio.sleep(2)
        held = running_bridge.forwarded
    finally:
        await asyncio.to_thread(kafka.up, lambda _m: None)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=city.settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    seen: set[float] = set()
    try:
        consumer.assign(list(positions))
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        deadline = asyncio.get_running_loop().time() + 60
        while len(seen) < len(values) and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for rec in records:
                    if rec.value is None:
                        continue
                    for r in codec.decode(rec.value):
                        if r.device_id == "gw-1" and base <= r.ts < base + timedelta(
                            seconds=len(values)
                        ):
                            seen.add(r.value)
    finally:
        await consumer.stop()
    assert held == 0  # nothing was acknowledged as forwarded while Kafka was down
    assert seen == set(values)


def test_onboarding_rejects_a_bad_file_and_stores_nothing(city: PilotCity, tmp_path: Path) -> None:
    import psycopg

    from ingest.onboarding import OnboardingError

    path = tmp_path / "bad.csv"
    path.write_text(
        "device_id,kind,lon,lat,owner_dept\nok-1,gas_well,118.7,32.0,ops\n"
        "bad/1,gas_well,118.7,32.0,ops\n"
    )
    with pytest.raises(OnboardingError, match="row 2"):
        onboard(
            city.settings,
            path,
            city.code,
            crs="EPSG:4326",
            placer=None,
            credentials_out=tmp_path / "c.csv",
            rotate=False,
            show_progress=False,
        )
    with psycopg.connect(city.settings.db_dsn.get_secret_value()) as conn:
        row = conn.execute("SELECT count(*) FROM devices WHERE device_id = 'ok-1'").fetchone()
    assert row == (0,)
    assert not (tmp_path / "c.csv").exists()


@pytest.mark.asyncio
async def test_replay_plays_a_recording_in_time_order_moved_to_now(
    city: PilotCity, running_bridge: Bridge, tmp_path: Path
) -> None:
    from simulators.replay import replay

    recording = tmp_path / "recording.csv"
    old = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    with recording.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["device_id", "ts", "metric", "value", "unit"])
        for i in range(20):
            for dev in ("gw-2", "gw-1"):
                w.writerow([dev, (old + timedelta(minutes=i)).isoformat(), "ch4", i + 0.5, "%LEL"])
    async with TailConsumer(city.settings, "cityops.readings") as tail:
        result = await asyncio.to_thread(
            replay,
            city.settings.broker(),
            city.code,
            recording,
            city.credentials_file,
            600.0,
            show_progress=False,
        )
        found = await tail.collect(
            lambda v, _k: f'"{city.code}"'.encode() in v, count=40, within=30
        )
    assert result["messages"] == 40
    got = [json.loads(v) for _k, v in found]
    for dev in ("gw-1", "gw-2"):
        mine = [r for r in got if r["device_id"] == dev]
        assert [r["value"] for r in mine] == [i + 0.5 for i in range(20)]
        times = [datetime.fromisoformat(r["ts"]) for r in mine]
        assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(times))
        assert now() - timedelta(minutes=2) < times[-1] <= datetime.now(UTC)


def test_a_device_moved_to_a_push_source_loses_its_mqtt_account(
    live_stack: Settings, db_dsn: str, tmp_path: Path
) -> None:
    import psycopg

    from cityops.onboard import broker_admin
    from store.push_sources import create_source

    code = f"328{secrets.randbelow(1000):03d}"
    settings = live_stack.model_copy(update={"db_dsn": SecretStr(db_dsn)})
    path = tmp_path / "devices.csv"

    def onboard_as(transport: str, source: str) -> None:
        path.write_text(
            "device_id,kind,lon,lat,owner_dept,transport,source\n"
            f"nb-1,gas_well,118.78,32.04,gas,{transport},{source}\n"
            "mq-1,gas_well,118.79,32.04,gas,mqtt,\n"
        )
        onboard(
            settings,
            path,
            code,
            crs="EPSG:4326",
            placer=None,
            credentials_out=tmp_path / "creds.csv",
            rotate=False,
            show_progress=False,
        )

    def accounts() -> set[str]:
        with broker_admin(settings) as admin:
            return admin.usernames(f"{code}.")

    onboard_as("mqtt", "")
    assert accounts() == {f"{code}.nb-1", f"{code}.mq-1"}
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        create_source(conn, code, "ctwing")
    onboard_as("http", "ctwing")
    assert accounts() == {f"{code}.mq-1"}
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT device_id, transport, source FROM devices WHERE city = %s ORDER BY 1",
            (code,),
        ).fetchall()
        conn.execute("DELETE FROM devices WHERE city = %s", (code,))
    assert rows == [("mq-1", "mqtt", None), ("nb-1", "http", "ctwing")]
    with broker_admin(settings) as admin:
        from ingest.broker_accounts import DeviceAccount

        admin.delete_devices([DeviceAccount(code, "mq-1", "sensors")])
