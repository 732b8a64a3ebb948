"""``cityops bench e2e``: the whole platform on this machine, every service its own process.

* ``readings_per_s`` — ``messages`` readings published over MQTT (QoS 1, two publisher
  processes) as fast as they go; timed from the first publish until every reading is in
  the store and the worker has consumed them all (its committed offsets at the topic's
  end). Every generated reading has a key of its own (device, metric, time to the
  microsecond), so the store keeps each; ``lost`` counts readings that never reached
  it. The wait ends when all are in, or when the store has gained nothing for
  ``STALL_S`` seconds (what is missing then is lost, not late).
* ``latency`` — ``SETTLE_S`` after the throughput phase, for each background rate of
  ``rates`` (readings a second, paced), a gas
  leak (two wells of one cell) is published every few seconds; latency runs from the
  last of its readings being acknowledged by MQTT to its incident arriving on the cockpit
  WebSocket: ``p50_ms`` / ``p99_ms`` at the first rate, and per rate under ``latency``.
* ``bridges`` bridge processes and ``sinks`` sink processes, one worker, one API.
* ``cpu_pct`` / ``rss_mb`` per process (ingest, sink, worker, api, each Kafka node,
  mosquitto) over the throughput phase, from /proc.
* ``--kafka-brokers 3``: on two empty Kafkas started for the run, one node and three
  (``replicated``), and ``replication_cost_pct``, the throughput replication costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from tqdm import tqdm

from bench._mqtt_load import publisher
from bench._support import free_port, scratch_database
from cityops.onboard import put_device_accounts
from cityops.settings import Settings, get_settings
from cityops.stack import Stack, scratch_kafka
from cityops.stack.common import read_pid
from ingest.broker_accounts import DeviceAccount, device_username, password_hash
from lifeline.devices import Device, gas_well
from simulators.publisher import DevicePublisher
from store.devices import upsert_devices
from store.keys import create_key
from store.migrate import migrate

CITY = "329900"
WELLS = 400
PROBES = 12
STALL_S = 30.0
SETTLE_S = 20.0
MAX_RATES = 4


def run(
    runs: int = 1,
    messages: int = 400_000,
    rates: tuple[float, ...] = (5000.0, 10000.0),
    seconds: float = 30.0,
    bridges: int = 2,
    sinks: int = 1,
    kafka_brokers: int | None = None,
) -> dict[str, Any]:
    """The figures on the stack's Kafka; with ``kafka_brokers`` (e.g. 3), on two Kafkas
    started for the run instead, one node and then that many (replicated topics, acks=all
    with ``min.insync.replicas`` 2): the latter's figures under ``replicated``, with
    ``replication_cost_pct``, the throughput replication costs. Both start empty, so
    neither carries the topics and data of earlier runs."""
    if len(rates) > MAX_RATES:
        raise ValueError(f"at most {MAX_RATES} background rates")
    settings = get_settings()
    if kafka_brokers is None:
        return {
            "kafka_nodes": settings.kafka_brokers,
            **_once(settings, messages, rates, seconds, bridges, sinks),
        }
    passes = {}
    for nodes in (1, kafka_brokers):
        with scratch_kafka(settings, nodes, lambda m: print(f"bench: {m}", file=sys.stderr)) as k:
            passes[nodes] = _once(k, messages, rates, seconds, bridges, sinks)
    one, other = passes[1], passes[kafka_brokers]
    keep = ("readings_per_s", "lost", "p50_ms", "p99_ms", "latency", "cpu_pct", "rss_mb", "logs")
    return {
        "kafka_nodes": 1,
        **one,
        "replicated": {"kafka_nodes": kafka_brokers, **{k: other[k] for k in keep if k in other}},
        "replication_cost_pct": round(
            100.0 * (1.0 - other["readings_per_s"] / one["readings_per_s"]), 1
        ),
    }


def _once(settings: Settings, *shape: Any) -> dict[str, Any]:
    """One run on a scratch database and a fresh city; ``shape`` as ``_run`` takes it
    (messages, rates, seconds, bridges, sinks)."""
    global CITY  # noqa: PLW0603  # one fresh city per run: no earlier run's traffic counts
    CITY = f"3299{secrets.randbelow(90) + 10:02d}"
    with scratch_database(settings, "cityops_bench_e2e") as dsn:
        return _run(settings, dsn, *shape)


def _run(
    settings: Settings,
    dsn: str,
    messages: int,
    rates: tuple[float, ...],
    seconds: float,
    bridges: int,
    sinks: int,
) -> dict[str, Any]:
    services: dict[str, subprocess.Popen[bytes]] = {}
    logs = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    try:
        token = _prepare(settings, dsn)
        port = free_port()
        tag = secrets.token_hex(3)
        env = {
            **os.environ,
            "CITYOPS_DB_DSN": dsn,
            "CITYOPS_CITIES": CITY,
            "CITYOPS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "CITYOPS_KAFKA_BROKERS": str(settings.kafka_brokers),
            "CITYOPS_LOG_LEVEL": "INFO",
            "CITYOPS_API_PORT": str(port),
            "CITYOPS_API_RATE": "100000",
        }
        app_id = f"bench-e2e-{tag}"
        for svc, argv in (
            (
                "ingest",
                [
                    *("ingest", "--metrics-port", "0", "--bridges", str(bridges)),
                    *("--client-id", f"bench-e2e-{tag}", "--end-session"),
                ],
            ),
            (
                "sink",
                [
                    "sink",
                    "--metrics-port",
                    "0",
                    "--group",
                    f"bench-e2e-sink-{tag}",
                    "--offset-reset",
                    "latest",
                    "--workers",
                    str(sinks),
                ],
            ),
            ("worker", ["worker", "--app-id", app_id, "--offset-reset", "latest"]),
            ("api", ["api", "serve"]),
        ):
            with (logs / f"{svc}.log").open("ab") as fh:
                services[svc] = subprocess.Popen(
                    [sys.executable, "-m", "cityops.cli", *argv],
                    env=env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        _wait_log(logs / "ingest.log", "ingest bridging", services["ingest"])
        _wait_log(logs / "worker.log", "Worker ready", services["worker"])
        _wait_log(logs / "api.log", "Application startup complete", services["api"])
        time.sleep(2)
        procs = {k: v.pid for k, v in services.items()}
        stack = Stack.from_settings(settings)
        for svc, pid_file, expect in (
            *((node.name, node.pid_file, "kafka.Kafka") for node in stack.kafka.nodes),
            ("mosquitto", stack.mqtt.pid_file, "mosquitto"),
        ):
            pid = read_pid(pid_file, expect)
            if pid is not None:
                procs[svc] = pid
        throughput = _throughput(settings, dsn, app_id, messages, procs)
        # The store digests the burst (rollup refresh, autovacuum) before the latency
        # phases, which measure the platform at a steady background rate.
        time.sleep(SETTLE_S)
        latency = {
            f"{rate:g}": asyncio.run(
                _latency(settings, f"http://127.0.0.1:{port}", token, rate, seconds, k)
            )
            for k, rate in enumerate(rates)
        }
    finally:
        for proc in services.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in services.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    first = latency[f"{rates[0]:g}"]
    return {
        **throughput,
        "p50_ms": first["p50_ms"],
        "p99_ms": first["p99_ms"],
        "rate": rates[0],
        "latency": latency,
        "bridges": bridges,
        "sinks": sinks,
        "logs": str(logs),
    }


def _wait_log(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{path.stem} exited: {path.read_text(errors='replace')[-2000:]}")
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise RuntimeError(f"{path.stem} did not start: {path.read_text(errors='replace')[-2000:]}")


def _wells() -> list[Device]:
    wells = [
        gas_well(CITY, f"w-{i:04d}", asset_id=f"W-{i:04d}", grid_code=f"{CITY}001001{i % 300:03d}")
        for i in range(WELLS)
    ]
    at = {"lon": 118.79, "lat": 32.05}  # the probes: a pair of wells per grid cell
    for k in range(PROBES * MAX_RATES):
        cell = f"{CITY}002002{k:03d}"
        for side in "ab":
            wells.append(
                gas_well(CITY, f"probe-{k}-{side}", asset_id=f"P-{k}{side}", grid_code=cell, **at)
            )
    return wells


def _prepare(settings: Settings, dsn: str) -> str:
    wells = _wells()
    password = os.urandom(16).hex()
    pw = password_hash(password)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, settings.timescale)
        upsert_devices(
            conn, wells, {w.device_id: (device_username(CITY, w.device_id), pw) for w in wells}
        )
        _, token = create_key(conn, "bench", "viewer", [CITY])
    put_device_accounts(
        settings, [(DeviceAccount(CITY, w.device_id, w.family), password) for w in wells]
    )
    return token


def _tree_sample(pid: int) -> tuple[float, float]:
    """(cpu seconds, rss MB) of a process and its children (``ingest --bridges N``)."""
    cpu, rss = _proc_sample(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        c_cpu, c_rss = _proc_sample(int(child))
        cpu, rss = cpu + c_cpu, rss + c_rss
    return cpu, rss


def _proc_sample(pid: int) -> tuple[float, float]:
    """(cpu seconds, rss MB) of a process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(stat[11]) + int(stat[12])) / ticks
        rss = next(
            int(line.split()[1]) / 1024
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
    except (OSError, StopIteration, IndexError, ValueError):
        return 0.0, 0.0
    return cpu, rss


def _lag_done(settings: Settings, app_id: str) -> bool:
    from streams.offsets import caught_up

    return asyncio.run(caught_up(settings.kafka_bootstrap, app_id, "cityops.readings", 12))


def _throughput(
    settings: Settings, dsn: str, app_id: str, messages: int, procs: dict[str, int]
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    names = [w.device_id for w in _wells() if w.device_id.startswith("w-")]
    pubs = [
        ctx.Process(
            target=publisher,
            args=(settings.broker(), CITY, names[i::2], messages // 2, 1, go, results),
        )
        for i in range(2)
    ]
    for p in pubs:
        p.start()
    time.sleep(1.0)
    before = {k: _tree_sample(pid) for k, pid in procs.items()}
    wall0 = time.monotonic()
    go.set()
    starts = [results.get(timeout=600)[1] for _ in pubs]
    for p in pubs:
        p.join()
    t_first = min(starts)
    total = (messages // 2) * 2
    stored = 0
    peak_rss = {k: s[1] for k, s in before.items()}
    bar = tqdm(total=total, desc="stored", unit="reading")
    progress = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() - progress < STALL_S:
            row = conn.execute("SELECT count(*) FROM readings WHERE city = %s", (CITY,)).fetchone()
            now_stored = int(row[0]) if row else 0
            bar.update(now_stored - stored)
            if now_stored != stored:
                progress = time.monotonic()
            stored = now_stored
            for k, pid in procs.items():
                peak_rss[k] = max(peak_rss[k], _tree_sample(pid)[1])
            if stored >= total and _lag_done(settings, app_id):
                break
            time.sleep(0.5)
    bar.close()
    t_done = time.time()
    wall = time.monotonic() - wall0
    after = {k: _tree_sample(pid) for k, pid in procs.items()}
    cpu = {k: round(100 * (after[k][0] - before[k][0]) / wall, 1) for k in procs}
    return {
        "readings_per_s": round(total / (t_done - t_first)),
        "messages": total,
        "stored": stored,
        "lost": total - stored,
        "cpu_pct": cpu,
        "rss_mb": {k: round(v) for k, v in peak_rss.items()},
    }


async def _latency(
    settings: Settings, api: str, token: str, rate: float, seconds: float, round_: int
) -> dict[str, Any]:
    import aiohttp

    ctx = multiprocessing.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    names = [w.device_id for w in _wells() if w.device_id.startswith("w-")]
    background = ctx.Process(
        target=publisher,
        args=(settings.broker(), CITY, names, int(rate * seconds), 1, go, results, rate),
    )
    background.start()
    client = DevicePublisher(settings.broker()).connect()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    async with aiohttp.ClientSession(api, headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.post("/v1/feed/ticket") as r:
            ticket = (await r.json())["ticket"]
        ws = await session.ws_connect(f"{api.replace('http', 'ws')}/v1/feed/ws?ticket={ticket}")

        async def listen() -> None:
            async for msg in ws:
                event = json.loads(msg.data)
                for cell in event.get("grid_cells") or ():
                    at = sent.pop(cell, None)
                    if at is not None:
                        latencies.append((time.time() - at) * 1000)

        listener = asyncio.create_task(listen())
        go.set()
        await asyncio.sleep(2)
        probes = min(PROBES, max(1, int(seconds // 3)))
        for k in tqdm(range(probes), desc=f"leaks at {rate:g}/s", unit="leak"):
            now = datetime.now(UTC).replace(microsecond=0)
            # Each rate has probe wells of its own: a leak per well pair, never cleared.
            probe = k + PROBES * round_
            for side in "ab":
                dev = f"probe-{probe}-{side}"
                for i in range(4):
                    body = {
                        "v": 1,
                        "city": CITY,
                        "device_id": dev,
                        "metric": "ch4",
                        "unit": "%LEL",
                        "value": 32.0,
                        "ts": (now - timedelta(minutes=3 - i)).isoformat(),
                    }
                    # One at a time, as a device reports: with several bridges sharing the
                    # subscription, readings of one device sent together may be forwarded
                    # out of order, and a reading older than one already applied is not.
                    info = client.publish(f"cityops/{CITY}/sensors/{dev}/up", json.dumps(body))
                    await asyncio.to_thread(info.wait_for_publish, 10)
            sent[f"{CITY}002002{probe:03d}"] = time.time()
            await asyncio.sleep(max(1.0, (seconds - 4) / probes))
        for _ in range(120):
            if not sent:
                break
            await asyncio.sleep(0.5)
        listener.cancel()
        await ws.close()
    client.close()
    _kind, t0, t1, published = results.get(timeout=120)
    background.join()
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else None
    return {
        "p50_ms": round(statistics.median(latencies)) if latencies else None,
        "p99_ms": round(q[98]) if q else (round(latencies[0]) if latencies else None),
        "leaks": probes,
        "leaks_seen": len(latencies),
        "background_per_s": round(published / (t1 - t0)),
    }
