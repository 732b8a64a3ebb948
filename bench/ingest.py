"""``cityops bench ingest``: MQTT → bridge → Kafka throughput and latency, against the raw
paho publish → subscribe rate through the same Mosquitto, same QoS, same messages.

Publishers run in separate processes, each a lean MQTT 5 client (``bench._mqtt_load``:
QoS-1 PUBLISH and PUBACK, a bounded in-flight window) so that load generation, which on
a city's network runs on the devices, takes little of this machine's CPU; every phase
uses the same publishers and messages. Phases: (1) raw rate to one plain paho subscriber
(no processing, acknowledged by paho); (2) one bridge process; (3) bridges scaled out in
one MQTT 5 shared-subscription group; (4) latency, with the scaled-out bridges, at a
steady ``latency_rate`` well inside their capacity (under saturation a latency measures
only the broker's queue). A phase's rate is messages / (first publish → last record in
Kafka), the readings of each record counted, not parsed.
Latency is the Kafka record's create time (set by the bridge's producer) minus the
reading's publish time. Phases (1)-(3) run with the publishers on loopback plaintext and
on the devices' TLS listener (the bridges always on loopback plaintext, as deployed), and
again with 100,000 more device accounts on the broker, each with a role of its own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, NamedTuple

import numpy as np
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import sql
from tqdm import tqdm

from bench._mqtt_load import publisher, raw_subscriber
from cityops.onboard import delete_device_accounts, put_device_accounts
from cityops.settings import Settings, get_settings
from ingest.broker_accounts import DeviceAccount, device_username, password_hash
from lifeline import codec
from lifeline.devices import gas_well
from lifeline.topics import READINGS
from simulators.publisher import Broker, DevicePublisher, end_session
from store.devices import upsert_devices
from store.migrate import migrate

CITY = "329990"
#: City of the extra device accounts that make the broker hold a city's worth.
ACCOUNTS_CITY = "329991"
BENCH_DB = "cityops_bench"


class Tls(NamedTuple):
    host: str
    port: int
    ca_file: str


def run(
    runs: int | None = None,
    messages: int = 200_000,
    publishers: int = 2,
    bridges: int = 3,
    devices: int = 200,
    qos: int = 1,
    latency_rate: float = 10_000.0,
    latency_s: float = 6.0,
    accounts: int = 100_000,
) -> dict[str, Any]:
    """Each throughput figure over loopback plaintext and over the devices' TLS listener,
    first with the broker holding only the bench's accounts, then with ``accounts`` more
    device accounts (a city's worth) onboarded, which are removed afterwards."""
    settings = get_settings()
    dsn = _bench_db(settings)
    bench_settings = settings.model_copy(update={"db_dsn": type(settings.db_dsn)(dsn)})
    names = [f"bench-{i:04d}" for i in range(devices)]
    _onboard(bench_settings, names)
    ctx = multiprocessing.get_context("spawn")
    tls = _tls_endpoint(settings)
    transports: list[tuple[str, Tls | None]] = [("plain", None)]
    if tls is not None:
        transports.append(("tls", tls))
    bar = tqdm(total=1 + 3 * len(transports) * (2 if accounts else 1), desc="bench ingest")

    def throughput(tls: Tls | None) -> dict[str, float]:
        raw = _raw_phase(ctx, settings, names, messages, publishers, qos, tls)
        bar.update()
        single = _bridge_phase(
            ctx, bench_settings, names, messages, publishers, qos, 1, "single", tls=tls
        )
        bar.update()
        scaled = _bridge_phase(
            ctx, bench_settings, names, messages, publishers, qos, bridges, "scaled", tls=tls
        )
        bar.update()
        return {
            "readings_per_s": round(scaled["rate"]),
            "single_bridge_per_s": round(single["rate"]),
            "raw_mqtt_per_s": round(raw),
            "ratio": round(single["rate"] / raw, 3) if raw else 0.0,
            "lost": scaled["lost"] + single["lost"],
        }

    empty = {label: throughput(t) for label, t in transports}
    paced = _bridge_phase(
        ctx,
        bench_settings,
        names,
        int(latency_rate * latency_s),
        publishers,
        qos,
        bridges,
        "paced",
        rate=latency_rate,
    )
    bar.update()
    crowded: dict[str, dict[str, float]] = {}
    onboard_s = remove_s = 0.0
    if accounts:
        extra = [
            (DeviceAccount(ACCOUNTS_CITY, f"acct-{i:06d}", "sensors"), os.urandom(9).hex())
            for i in range(accounts)
        ]
        t0 = time.monotonic()
        put_device_accounts(settings, extra)
        onboard_s = time.monotonic() - t0
        try:
            crowded = {label: throughput(t) for label, t in transports}
        finally:
            t0 = time.monotonic()
            delete_device_accounts(settings, [a for a, _pw in extra])
            remove_s = time.monotonic() - t0
    bar.close()
    plain = empty["plain"]
    return {
        "readings_per_s": plain["readings_per_s"],
        "single_bridge_per_s": plain["single_bridge_per_s"],
        "raw_mqtt_per_s": plain["raw_mqtt_per_s"],
        "ratio": plain["ratio"],
        "tls": empty.get("tls"),
        "accounts": accounts,
        "with_accounts": crowded or None,
        "accounts_onboard_s": round(onboard_s, 1),
        "accounts_remove_s": round(remove_s, 1),
        "p50_ms": round(paced["p50_ms"], 1),
        "p99_ms": round(paced["p99_ms"], 1),
        "latency_rate_per_s": latency_rate,
        "paced_readings_per_s": round(paced["rate"]),
        "broker_flush_period_s": settings.mqtt_flush_period_s,
        "qos": qos,
        "bridges": bridges,
        "messages": messages,
        "publishers": publishers,
        "lost": int(
            paced["lost"]
            + sum(r["lost"] for r in empty.values())
            + sum(r["lost"] for r in crowded.values())
        ),
    }


def _tls_endpoint(settings: Settings) -> Tls | None:
    """Where devices reach the broker over TLS (host, port, CA file), if it listens so."""
    if not settings.mqtt_tls_listen:
        return None
    host, port = settings.mqtt_tls_listen.rsplit(":", 1)
    if _is_ip(host) and ipaddress.ip_address(host).is_unspecified:
        host = "127.0.0.1"
    return Tls(host, int(port), str(settings.tls_dir / "ca.crt"))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _bench_db(settings: Settings) -> str:
    base = settings.db_dsn.get_secret_value()
    with psycopg.connect(base, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,))
        if not exists.fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    dsn = base.rsplit("/", 1)[0] + "/" + BENCH_DB
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, settings.timescale)
    return dsn


def _onboard(settings: Settings, names: list[str]) -> None:
    devices = [gas_well(CITY, n, owner_dept="bench") for n in names]
    password = os.urandom(16).hex()
    pw = password_hash(password)
    creds = {n: (device_username(CITY, n), pw) for n in names}
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        upsert_devices(conn, devices, creds)
    put_device_accounts(settings, [(DeviceAccount(CITY, n, "sensors"), password) for n in names])


def _publish(
    ctx: Any,
    settings: Settings,
    names: list[str],
    messages: int,
    publishers: int,
    qos: int,
    rate: float = 0.0,
    tls: Tls | None = None,
) -> tuple[float, float]:
    go = ctx.Event()
    results = ctx.Queue()
    share = messages // publishers
    broker = settings.broker()
    if tls:
        broker = Broker(tls.host, tls.port, broker.username, broker.password)
    procs = [
        ctx.Process(
            target=publisher,
            args=(
                broker,
                CITY,
                names[i::publishers],
                share,
                qos,
                go,
                results,
                rate / publishers,
                tls.ca_file if tls else None,
            ),
        )
        for i in range(publishers)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)
    go.set()
    starts, ends = [], []
    for _ in procs:
        _kind, t0, t1, _n = results.get(timeout=600)
        starts.append(t0)
        ends.append(t1)
    for p in procs:
        p.join()
    return min(starts), max(ends)


def _raw_phase(
    ctx: Any,
    settings: Settings,
    names: list[str],
    messages: int,
    publishers: int,
    qos: int,
    tls: Tls | None = None,
) -> float:
    ready = ctx.Event()
    results = ctx.Queue()
    expect = (messages // publishers) * publishers
    sub = ctx.Process(
        target=raw_subscriber,
        args=(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.mqtt_username,
            settings.mqtt_password.get_secret_value(),
            f"cityops/{CITY}/sensors/+/up",
            expect,
            qos,
            ready,
            results,
        ),
    )
    sub.start()
    ready.wait(timeout=30)
    t_start, _ = _publish(ctx, settings, names, messages, publishers, qos, tls=tls)
    _kind, _first, last, n = results.get(timeout=600)
    sub.join()
    return float(n / (last - t_start)) if last > t_start else 0.0


def _bridge_phase(
    ctx: Any,
    settings: Settings,
    names: list[str],
    messages: int,
    publishers: int,
    qos: int,
    bridges: int,
    label: str,
    rate: float = 0.0,
    tls: Tls | None = None,
) -> dict[str, float]:
    client_prefix = f"bench-{label}-{os.getpid()}"
    env = {
        **os.environ,
        "CITYOPS_CITIES": CITY,
        "CITYOPS_DB_DSN": settings.db_dsn.get_secret_value(),
        "CITYOPS_LOG_LEVEL": "WARNING",
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115  # closed below, after the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cityops.cli",
            "ingest",
            "--bridges",
            str(bridges),
            "--client-id",
            client_prefix,
            "--metrics-port",
            "0",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        start_offsets = asyncio.run(_wait_bridge_ready(settings, names[0]))
        expect = (messages // publishers) * publishers
        t_start, _ = _publish(ctx, settings, names, messages, publishers, qos, rate, tls)
        landed, t_done = asyncio.run(_wait_landed(settings, start_offsets, expect))
        latencies = asyncio.run(_latencies(settings, start_offsets))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        _end_sessions(settings, [f"{client_prefix}-{i + 1}" for i in range(bridges)])
    return {
        "rate": landed / (t_done - t_start),
        "p50_ms": float(np.percentile(latencies, 50)) if latencies.size else float("nan"),
        "p99_ms": float(np.percentile(latencies, 99)) if latencies.size else float("nan"),
        "lost": float(expect - landed),
    }


async def _end_offsets(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    parts = consumer.partitions_for_topic(READINGS.name) or set()
    tps = [TopicPartition(READINGS.name, p) for p in parts]
    return dict(await consumer.end_offsets(tps))


async def _wait_bridge_ready(settings: Settings, device: str) -> dict[TopicPartition, int]:
    """Publish probes until one lands in Kafka; return the offsets after the probes."""
    consumer = AIOKafkaConsumer(READINGS.name, bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        before = await _end_offsets(consumer)
        client = DevicePublisher(settings.broker()).connect()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            probe = {
                "v": 1,
                "city": CITY,
                "device_id": device,
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                "metric": "ch4",
                "value": 0.0,
                "unit": "%LEL",
            }
            client.publish(f"cityops/{CITY}/sensors/{device}/up", json.dumps(probe))
            await asyncio.sleep(0.5)
            now = await _end_offsets(consumer)
            if sum(now.values()) > sum(before.values()):
                break
        else:
            raise RuntimeError("the bridge did not forward a probe within 60 s")
        client.close()
        await asyncio.sleep(1.0)
        return await _end_offsets(consumer)
    finally:
        await consumer.stop()


async def _wait_landed(
    settings: Settings, start: dict[TopicPartition, int], expect: int
) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
    )
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        landed, last_change, t_last = 0, time.monotonic(), time.time()
        while time.monotonic() - last_change < 20 and landed < expect:
            batches = await consumer.getmany(timeout_ms=100, max_records=10000)
            # Readings in the records (a batch record holds many): counted, not parsed.
            now = landed + sum(
                rec.value.count(b'"device_id":')
                for records in batches.values()
                for rec in records
                if rec.value is not None
            )
            if now != landed:
                landed, last_change, t_last = now, time.monotonic(), time.time()
        return landed, t_last
    finally:
        await consumer.stop()


async def _latencies(settings: Settings, start: dict[TopicPartition, int]) -> np.ndarray:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
    )
    await consumer.start()
    out: list[float] = []
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        ends = dict(await consumer.end_offsets(list(start)))
        remaining = {tp for tp in start if ends[tp] > start[tp]}
        while remaining:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10000)
            if not batches:
                break
            for tp, records in batches.items():
                for rec in records:
                    if rec.value is None:
                        continue
                    for r in codec.decode(rec.value):
                        if r.device_id.startswith("bench-"):
                            out.append(rec.timestamp - r.ts.timestamp() * 1000.0)
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return np.array(out)
    finally:
        await consumer.stop()


def _end_sessions(settings: Settings, client_ids: list[str]) -> None:
    """Drop the bridges' persistent sessions so later phases get every message."""
    for cid in client_ids:
        end_session(settings.broker(), cid)
