"""``cityops drill``: faults injected into the real services while traffic flows, and a
count of what was sent, stored, lost and duplicated, and how long recovery took.

Every drill runs against a pipeline of its own (ingest, sink and worker processes on a
scratch database and a fresh city), so it counts only its own traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import math
import multiprocessing
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from psycopg import sql

from cityops.errors import CityOpsError
from cityops.settings import Settings
from cityops.stack import Stack
from cityops.stack.common import free_port
from simulators.lean_mqtt import LeanPublisher, publish_packet, utf8
from simulators.publisher import DevicePublisher, acknowledged

DEVICES = 50


@dataclass
class DrillResult:
    name: str
    sent: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    recovery_s: float | None = None
    ok: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pipeline:
    settings: Settings
    dsn: str
    city: str
    logs: Path
    device_password: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    worker_app: str = ""
    ingest_id: str = ""

    def start(self) -> None:
        tag = secrets.token_hex(3)
        self.worker_app = f"drill-worker-{tag}"
        self.ingest_id = f"drill-{tag}"
        self.spawn(
            "ingest",
            ["ingest", "--metrics-port", "0", "--client-id", self.ingest_id, "--end-session"],
        )
        self.spawn(
            "sink",
            [
                *("sink", "--metrics-port", "0", "--group", f"drill-sink-{tag}"),
                *("--offset-reset", "latest"),
            ],
        )
        self.start_worker("worker", "latest")
        self.wait_log("ingest", "ingest bridging")
        time.sleep(3)  # the sink joins its group and takes the partitions

    def spawn(self, name: str, argv: list[str]) -> None:
        env = {
            **os.environ,
            "CITYOPS_DB_DSN": self.dsn,
            "CITYOPS_CITIES": self.city,
            "CITYOPS_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "CITYOPS_KAFKA_BROKERS": str(self.settings.kafka_brokers),
            "CITYOPS_LOG_LEVEL": "INFO",
        }
        with (self.logs / f"{name}.log").open("ab") as fh:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "cityops.cli", *argv],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_worker(self, name: str, offset_reset: str) -> None:
        """A worker of the pipeline's group; ready once it logs so (after any earlier
        start of the same name: the log is appended to)."""
        path = self.logs / f"{name}.log"
        before = path.read_text(errors="replace").count("Worker ready") if path.exists() else 0
        self.spawn(name, ["worker", "--app-id", self.worker_app, "--offset-reset", offset_reset])
        self.wait_log(name, "Worker ready", times=before + 1)

    def wait_log(self, name: str, text: str, timeout: float = 120, times: int = 1) -> None:
        path = self.logs / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise CityOpsError(f"{name} exited: {path.read_text(errors='replace')[-1500:]}")
            if path.read_text(errors="replace").count(text) >= times:
                return
            time.sleep(0.3)
        raise CityOpsError(f"{name} did not start: {path.read_text(errors='replace')[-1500:]}")

    def kill(self, name: str) -> None:
        """``kill -9``: no goodbye to the group, no last commit, no flush."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def missing(self, prefix: str, count: int, base: datetime) -> list[str]:
        """The readings of a :meth:`Publisher.run` that the store does not have, as
        ``device@time`` in publishing order."""
        with self.db() as conn:
            rows = conn.execute(
                "SELECT device_id, ts FROM readings WHERE city = %s AND device_id LIKE %s",
                (self.city, f"{prefix}%"),
            ).fetchall()
        have = {(d, ts) for d, ts in rows}
        out = []
        for i in range(count):
            device, ts = f"{prefix}-{i % DEVICES:03d}", base + timedelta(seconds=i // DEVICES)
            if (device, ts) not in have:
                out.append(f"{device}@{ts.isoformat()} (#{i})")
        return out

    def db(self) -> psycopg.Connection[Any]:
        """A connection to the drill's database that gives up quickly while it is down."""
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)

    def excursions(self, prefix: str) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
        """Anomalies of devices ``prefix*`` (id → state) and the incidents they belong to
        (id → (status, revision))."""
        with self.db() as conn:
            anomalies = conn.execute(
                "SELECT anomaly_id, state FROM anomalies WHERE city = %s AND device_id LIKE %s"
                " AND kind <> 'offline'",
                self._of(prefix),
            ).fetchall()
            incidents = conn.execute(
                "SELECT incident_id, status, revision FROM incidents WHERE city = %s"
                " AND anomaly_ids && %s::text[]",
                (self.city, [a for a, _ in anomalies]),
            ).fetchall()
        return {str(a): str(st) for a, st in anomalies}, {
            str(i): (str(st), int(r)) for i, st, r in incidents
        }

    def _of(self, prefix: str) -> tuple[str, str]:
        """Parameters (city, device id pattern) for the devices ``prefix*``."""
        return (self.city, f"{prefix}%")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stored(self, prefix: str) -> tuple[int, int]:
        """(readings stored, distinct (device, ts) among them) of devices ``prefix*``."""
        with self.db() as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT (device_id, ts)) FROM readings"
                " WHERE city = %s AND device_id LIKE %s",
                self._of(prefix),
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def deadletters(self) -> dict[str, int]:
        with self.db() as conn:
            rows = conn.execute(
                "SELECT reason, count(*) FROM deadletters WHERE mqtt_topic LIKE %s GROUP BY reason",
                (f"cityops/{self.city}/%",),
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}


@contextmanager
def pipeline(settings: Settings) -> Iterator[Pipeline]:
    """A scratch database, a fresh city of ``DEVICES`` gas wells, and the services."""
    from cityops.onboard import delete_device_accounts, put_device_accounts
    from ingest.broker_accounts import DeviceAccount, device_username, password_hash
    from lifeline.devices import gas_well
    from store.devices import upsert_devices
    from store.migrate import migrate

    base = settings.db_dsn.get_secret_value()
    name = f"cityops_drill_{secrets.token_hex(3)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = base.rsplit("/", 1)[0] + "/" + name
    # Codes of their own (there is no province 39), four random digits: two drill runs
    # never share a city, so neither sees the other's devices, sessions or readings.
    city = f"39{secrets.randbelow(9000) + 1000:04d}"
    wells = [
        gas_well(city, f"{p}-{i:03d}", owner_dept="drill")
        for p in ("pg", "mq", "mc", "br", "kf", "hx", "sx", "wk", "tw", "kn")
        for i in range(DEVICES)
    ]
    device_password = secrets.token_urlsafe(18)
    pw = password_hash(device_password)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, settings.timescale)
        upsert_devices(
            conn, wells, {w.device_id: (device_username(city, w.device_id), pw) for w in wells}
        )
    accounts = [DeviceAccount(city, w.device_id, w.family) for w in wells]
    put_device_accounts(settings, [(a, device_password) for a in accounts])
    pipe = Pipeline(settings, dsn, city, Path(tempfile.mkdtemp(prefix="drill-")), device_password)
    try:
        pipe.start()
        yield pipe
    finally:
        pipe.stop()
        _ensure_stack(settings)
        delete_device_accounts(settings, accounts)
        with contextlib.suppress(Exception):  # tidying only: what stays is the app's state
            asyncio.run(_delete_topics(settings.kafka_bootstrap, f"{pipe.worker_app}-"))
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


async def _delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete the topics named ``prefix*`` (a drill's worker changelogs): thousands of
    partitions left behind by earlier runs slow a Kafka node down."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def _ensure_stack(settings: Settings) -> None:
    from cityops import stack

    stack.up(settings, lambda _m: None)


class Publisher:
    """Readings over MQTT as the platform user, QoS 1 with a persistent session, so that
    what is not acknowledged when the broker goes away is sent again after it returns."""

    def __init__(self, settings: Settings, city: str) -> None:
        self.city = city
        self.base = datetime.now(UTC)
        self.sent: dict[int, tuple[str, bytes, mqtt.MQTTMessageInfo]] = {}
        self.device = DevicePublisher(
            settings.broker(),
            client_id=f"drill-pub-{secrets.token_hex(3)}",
            inflight=500,
            session_expiry_s=3600,
        ).connect()

    def reading(self, device: str, n: int, base: datetime, level: float = 0.0) -> tuple[str, bytes]:
        return _reading(self.city, device, n, base, level)

    def run(
        self,
        prefix: str,
        count: int,
        rate: float,
        extra: Callable[[int], list[tuple[str, bytes]]] | None = None,
        level: Callable[[int], float] | None = None,
        base: datetime | None = None,
        part: tuple[int, int] = (0, 1),
    ) -> int:
        """Publish ``count`` readings round-robin over the ``prefix`` devices at ``rate``,
        one second apart in event time per device; ``level(step)`` raises the values.
        ``part=(k, n)``: only readings ``i`` with ``i % n == k`` (one of ``n`` publishers
        sharing a run and its ``base`` time), at ``rate / n``."""
        base = base or _run_base(count)
        self.base = base
        self.sent = {}
        t0 = time.monotonic()
        k, n = part
        for i in range(k, count, n):
            due = t0 + i / rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            device = f"{prefix}-{i % DEVICES:03d}"
            step = i // DEVICES
            topic, payload = self.reading(device, step, base, level(step) if level else 0.0)
            self.sent[i] = (topic, payload, self._publish(topic, payload))
            for t, p in extra(i) if extra else ():
                self._publish(t, p)
        return count

    def _publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        while True:
            info = self.device.publish(topic, payload)
            if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                return info  # queued; sent (again) once connected
            time.sleep(0.05)

    def unacknowledged(self, timeout: float = 30.0) -> list[int]:
        """Readings of the last run the broker has not acknowledged (no PUBACK) within
        ``timeout``: a device would still hold them and send them again."""
        deadline = time.monotonic() + timeout
        for _topic, _payload, info in self.sent.values():
            while not acknowledged(info) and time.monotonic() < deadline:
                time.sleep(0.05)
        return [i for i, (_t, _p, info) in self.sent.items() if not acknowledged(info)]

    def close(self) -> None:
        self.device.close()


def _run_base(count: int) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=count // DEVICES + 60)


def _reading(
    city: str, device: str, n: int, base: datetime, level: float = 0.0
) -> tuple[str, bytes]:
    """The ``n``-th reading of a drill's ``device`` (one second apart from ``base``)."""
    body = {
        "v": 1,
        "city": city,
        "device_id": device,
        "metric": "ch4",
        "unit": "%LEL",
        "value": level + float(n % 5) * 0.4,
        "ts": (base + timedelta(seconds=n)).isoformat(),
    }
    return f"cityops/{city}/sensors/{device}/up", json.dumps(body).encode()


def _publish_part(
    settings: Settings,
    city: str,
    prefix: str,
    count: int,
    rate: float,
    base: datetime,
    part: tuple[int, int],
    results: Any,
) -> None:
    """One of several publisher processes of a run whose broker stays up: a lean client
    (paho tops out near 6,000 QoS 1 messages a second here, on cores the pipeline needs);
    publishes readings ``i`` with ``i % n == k`` at ``rate / n`` and reports those the
    broker did not acknowledge."""
    k, n = part
    mine = range(k, count, n)
    pub = LeanPublisher(
        settings.mqtt_host,
        settings.mqtt_port,
        settings.mqtt_username,
        settings.mqtt_password.get_secret_value(),
        f"drill-pub-{secrets.token_hex(3)}",
    )
    topics: dict[str, bytes] = {}

    def make(j: int, packet_id: int) -> bytes:
        i = mine[j]
        topic, payload = _reading(city, f"{prefix}-{i % DEVICES:03d}", i // DEVICES, base)
        return publish_packet(topics.setdefault(topic, utf8(topic)), payload, packet_id)

    try:
        pub.publish(len(mine), make, rate=rate / n)
    except (ConnectionError, OSError):
        pass  # PUBACKs come in order: what is not acknowledged is the tail
    finally:
        with contextlib.suppress(OSError):
            pub.close()
    results.put(list(mine[pub.acked :]))


def _until(check: Callable[[], bool], timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if check():
                return time.monotonic() - t0
        except psycopg.Error:
            pass
        time.sleep(0.5)
    return None


def _outage_drill(
    name: str,
    pipe: Pipeline,
    prefix: str,
    fault: Callable[[], object],
    restore: Callable[[], object],
    count: int,
    rate: float,
    down_s: float,
) -> DrillResult:
    pub = Publisher(pipe.settings, pipe.city)
    result = DrillResult(name, sent=count)
    publishing = threading.Thread(target=pub.run, args=(prefix, count, rate))
    publishing.start()
    time.sleep(min(5.0, count / rate / 3))
    fault()
    time.sleep(down_s)
    restore()
    restored = time.monotonic()
    publishing.join()
    unacked = pub.unacknowledged()
    recovered = _until(lambda: pipe.stored(prefix)[0] >= count, 180)
    recovery = None if recovered is None else round(time.monotonic() - restored, 1)
    pub.close()
    time.sleep(2)  # anything late or doubled would show now
    rows, distinct = pipe.stored(prefix)
    result.stored = distinct
    result.lost = count - distinct
    result.duplicated = rows - distinct
    result.recovery_s = recovery
    result.ok = result.lost == 0 and result.duplicated == 0
    result.detail = {"down_s": down_s, "rate": rate, "unacknowledged": unacked[:20]}
    if result.lost:
        result.detail["missing"] = pipe.missing(prefix, count, pub.base)[:20]
    return result


def drill_postgres(pipe: Pipeline, count: int = 20_000, down_s: float = 30.0) -> DrillResult:
    pg = Stack.from_settings(pipe.settings).postgres
    return _outage_drill(
        "postgres", pipe, "pg", pg.down, lambda: pg.up(lambda _m: None), count, 400.0, down_s
    )


def drill_mosquitto(pipe: Pipeline, count: int = 10_000) -> DrillResult:
    mq = Stack.from_settings(pipe.settings).mqtt
    return _outage_drill(
        "mosquitto", pipe, "mq", mq.down, lambda: mq.up(lambda _m: None), count, 500.0, 5.0
    )


def drill_mosquitto_crash(pipe: Pipeline, count: int = 10_000) -> DrillResult:
    """The broker killed -9 under load and started again: what it acknowledged survives."""
    mq = Stack.from_settings(pipe.settings).mqtt
    return _outage_drill(
        "mosquitto-crash", pipe, "mc", mq.kill, lambda: mq.up(lambda _m: None), count, 500.0, 5.0
    )


def drill_bridge(pipe: Pipeline, rate: float = 10_000.0, away_s: float = 60.0) -> DrillResult:
    """A second bridge process shares the subscription; it is killed -9 and kept away for
    ``away_s`` while readings flow at ``rate``: the broker queues its share in its
    persistent session and hands it over when it returns. Reports the broker's memory."""
    mq = Stack.from_settings(pipe.settings).mqtt
    argv = ["ingest", "--metrics-port", "0", "--client-id", f"{pipe.ingest_id}-b"]
    pipe.spawn("ingest-b", [*argv, "--end-session"])
    pipe.wait_log("ingest-b", "ingest bridging")
    count = int(rate * (away_s + 20.0))
    result = DrillResult("bridge", sent=count)
    base = _run_base(count)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    n = max(1, math.ceil(rate / 5000))
    publishing = [
        ctx.Process(
            target=_publish_part,
            args=(pipe.settings, pipe.city, "br", count, rate, base, (k, n), results),
        )
        for k in range(n)
    ]
    t_pub = time.monotonic()
    for proc in publishing:
        proc.start()
    time.sleep(5.0)
    rss_before = mq.rss_bytes() or 0
    pipe.kill("ingest-b")
    rss_peak = rss_before
    away_until = time.monotonic() + away_s
    while time.monotonic() < away_until:
        rss_peak = max(rss_peak, mq.rss_bytes() or 0)
        time.sleep(1.0)
    log_path = pipe.logs / "ingest-b.log"
    seen = log_path.read_text(errors="replace").count("ingest bridging")
    pipe.spawn("ingest-b", [*argv, "--end-session"])
    pipe.wait_log("ingest-b", "ingest bridging", times=seen + 1)
    restored = time.monotonic()
    unacked = sorted(i for _ in publishing for i in results.get(timeout=900))
    published_s = time.monotonic() - t_pub
    for proc in publishing:
        proc.join()
    recovered = _until(lambda: pipe.stored("br")[0] >= count, 300)
    time.sleep(2)  # anything late or doubled would show now
    rows, distinct = pipe.stored("br")
    pipe.procs["ingest-b"].send_signal(signal.SIGTERM)  # leaves the share group for good
    pipe.procs["ingest-b"].wait(60)
    result.stored = distinct
    result.lost = count - distinct
    result.duplicated = rows - distinct
    result.recovery_s = None if recovered is None else round(time.monotonic() - restored, 1)
    result.ok = result.lost == 0 and result.duplicated == 0 and recovered is not None
    result.detail = {
        "rate": rate,
        "rate_achieved": round(count / published_s),
        "away_s": away_s,
        "broker_rss_mb_before": round(rss_before / 2**20),
        "broker_rss_mb_peak": round(rss_peak / 2**20),
        "unacknowledged": unacked[:20],
    }
    if result.lost:
        result.detail["missing"] = pipe.missing("br", count, base)[:20]
    return result


def drill_kafka(pipe: Pipeline, count: int = 10_000) -> DrillResult:
    kafka = Stack.from_settings(pipe.settings).kafka
    return _outage_drill(
        "kafka", pipe, "kf", kafka.down, lambda: kafka.up(lambda _m: None), count, 500.0, 5.0
    )


class Progress:
    """Twice a second: the readings of ``prefix`` in the store and the offsets the
    worker group has committed on each partition of the readings topic (what detection
    has finished). A longest pause is the longest time the store, or any one partition,
    stood still between its first and its last advance, i.e. while readings were
    flowing; for a partition whose worker was lost, that is the takeover time."""

    def __init__(self, pipe: Pipeline, prefix: str, interval: float = 0.5) -> None:
        self.pipe, self.prefix, self.interval = pipe, prefix, interval
        self.stored: list[tuple[float, int]] = []
        self.detected: dict[int, list[tuple[float, int]]] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        from lifeline import topics

        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.pipe.settings.kafka_bootstrap, request_timeout_ms=2000
        )
        await admin.start()
        try:
            while not self._stop.is_set():
                t = time.monotonic()
                with contextlib.suppress(psycopg.Error):
                    self.stored.append((t, self.pipe.stored(self.prefix)[0]))
                try:
                    got = await asyncio.wait_for(
                        admin.list_consumer_group_offsets(self.pipe.worker_app), timeout=2
                    )
                    for tp, om in got.items():
                        if tp.topic == topics.READINGS.name:
                            self.detected.setdefault(tp.partition, []).append((t, om.offset))
                except Exception as exc:  # leader moves: no sample this time
                    self.failures.append(repr(exc))
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - t)))
        finally:
            await admin.close()

    @staticmethod
    def longest_pause(samples: list[tuple[float, int]]) -> float | None:
        advances = [t for (_t0, v0), (t, v) in itertools.pairwise(samples) if v > v0]
        if len(advances) < 2:
            return None
        return round(max(b - a for a, b in itertools.pairwise(advances)), 1)

    def report(self) -> dict[str, float | int | None]:
        return {
            "longest_pause_stored_s": self.longest_pause(self.stored),
            "longest_pause_detection_s": max(
                (p for p in map(self.longest_pause, self.detected.values()) if p is not None),
                default=None,
            ),
            "detection_samples_missed": len(self.failures),
        }


def _worker_drill(
    name: str,
    pipe: Pipeline,
    prefix: str,
    count: int,
    rate: float,
    fault: Callable[[], object],
) -> DrillResult:
    """Every device of ``prefix`` reads methane at an orange level (a confirmed gas leak)
    over the middle half of the run, and ``fault`` strikes the workers in the middle of
    it. Afterwards each device must have exactly one anomaly and one incident, both
    cleared: a worker that lost state would raise anew (a second anomaly, a second
    incident); one that lost readings would never clear."""
    with Progress(pipe, prefix) as progress:
        steps = count // DEVICES
        onset, end = steps // 4, 3 * steps // 4

        def level(step: int) -> float:
            return 60.0 if onset <= step < end else 0.0

        pub = Publisher(pipe.settings, pipe.city)
        result = DrillResult(name, sent=count)
        publishing = threading.Thread(target=pub.run, args=(prefix, count, rate, None, level))
        publishing.start()
        time.sleep(count / rate * 0.45)  # in the middle of the leak
        fault()
        restored = time.monotonic()

        def settled() -> bool:
            anomalies, incidents = pipe.excursions(prefix)
            return (
                pipe.stored(prefix)[0] >= count
                and len(anomalies) >= DEVICES
                and all(st == "cleared" for st in anomalies.values())
                and len(incidents) >= DEVICES
                and all(st == "cleared" for st, _ in incidents.values())
            )

        publishing.join()
        done = _until(settled, 300)
        pub.close()
        time.sleep(3)  # anything late or doubled would show now
        rows, distinct = pipe.stored(prefix)
        anomalies, incidents = pipe.excursions(prefix)
        uncleared = sum(1 for st in anomalies.values() if st != "cleared") + sum(
            1 for st, _ in incidents.values() if st != "cleared"
        )
        result.stored = distinct
        result.lost = (
            (count - distinct)
            + max(0, DEVICES - len(anomalies))
            + max(0, DEVICES - len(incidents))
            + uncleared
        )
        result.duplicated = (
            (rows - distinct) + max(0, len(anomalies) - DEVICES) + max(0, len(incidents) - DEVICES)
        )
        result.recovery_s = None if done is None else round(time.monotonic() - restored, 1)
        result.ok = result.lost == 0 and result.duplicated == 0 and done is not None
        result.detail = {
            "rate": rate,
            "anomalies": len(anomalies),
            "incidents": len(incidents),
            "incidents_cleared": sum(1 for st, _ in incidents.values() if st == "cleared"),
            "expected": DEVICES,
        }
    result.detail.update(progress.report())
    return result


def drill_worker(pipe: Pipeline, count: int = 100_000) -> DrillResult:
    """``kill -9`` of the worker mid-run, restarted at once: it recovers its state from
    the changelog and carries on where its group's offsets left it."""

    def fault() -> None:
        pipe.kill("worker")
        pipe.start_worker("worker", "earliest")

    return _worker_drill("worker", pipe, "wk", count, 2000.0, fault)


def drill_workers(pipe: Pipeline, count: int = 40_000) -> DrillResult:
    """Two workers in one group; one is killed (-9) mid-run and not restarted: the other
    takes over its partitions and their state."""
    pipe.start_worker("worker2", "earliest")
    time.sleep(5)  # the group rebalances onto both

    def fault() -> None:
        pipe.kill("worker")

    try:
        return _worker_drill("workers", pipe, "tw", count, 2000.0, fault)
    finally:
        pipe.procs["worker"] = pipe.procs.pop("worker2")


def drill_kafka_node(
    pipe: Pipeline, count: int = 150_000, rate: float = 1_000.0, down_s: float = 60.0
) -> DrillResult:
    """One Kafka node of three (the leader of the readings' first partition) killed -9
    in the middle of a leak on every device and started again after ``down_s``: the
    leaders move to the other nodes, producers and consumers follow them, and nothing
    acknowledged is lost or doubled (three replicas, ``min.insync.replicas`` 2, acks=all).
    Reports the longest pauses in stored readings and in detection."""
    if pipe.settings.kafka_brokers < 3:
        raise CityOpsError(
            "the kafka-node drill needs a cluster of three nodes: `cityops stack down`, "
            "`cityops stack up --kafka-brokers 3`, and CITYOPS_KAFKA_BROKERS=3 for the drill"
        )
    kafka = Stack.from_settings(pipe.settings).kafka
    victim = kafka.node(asyncio.run(_partition_leader(pipe.settings.kafka_bootstrap)))
    timeline: dict[str, float] = {}
    restarting: list[threading.Thread] = []

    def restart() -> None:
        time.sleep(down_s)
        timeline["restart"] = time.monotonic()
        kafka.up(lambda _m: None)
        timeline["back"] = time.monotonic()

    def fault() -> None:
        victim.kill()
        timeline["kill"] = time.monotonic()
        restarting.append(threading.Thread(target=restart, daemon=True))
        restarting[0].start()

    result = _worker_drill("kafka-node", pipe, "kn", count, rate, fault)
    for thread in restarting:
        thread.join(300)
    if "back" not in timeline:
        result.ok = False
    result.detail.update(
        {
            "killed": victim.name,
            "down_s": down_s,
            "rejoined_s": (
                round(timeline["back"] - timeline["restart"], 1) if "back" in timeline else None
            ),
        }
    )
    return result


async def _partition_leader(bootstrap: str, partition: int = 0) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    from lifeline import topics

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topics.READINGS.name])
        return next(
            int(p["leader"]) for p in described["partitions"] if p["partition"] == partition
        )
    finally:
        await admin.close()


def hostile_payloads(rng: random.Random, n: int) -> Iterator[bytes]:
    """Random bytes, deep nesting, huge numbers, NaN, wrong types and oversize bodies."""
    makers: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randint(1, 200)),
        lambda: b"[" * 5000 + b"]" * 5000,
        lambda: json.dumps({"ts": "2026-01-01T00:00:00Z", "values": {"ch4": 1e308 * 10}}).encode(),
        lambda: b'{"ts": "2026-01-01T00:00:00Z", "values": {"ch4": NaN}}',
        lambda: json.dumps({"ts": 12, "values": {"ch4": "high"}}).encode(),
        lambda: json.dumps({"ts": "now", "values": ["ch4", 1]}).encode(),
        lambda: b"x" * (300 * 1024),
        lambda: json.dumps({"v": 1, "metric": "ch4", "value": math.pi}).encode(),
    ]
    for i in range(n):
        yield makers[i % len(makers)]()


def drill_hostile(pipe: Pipeline, count: int = 10_000, hostile: int = 10_000) -> DrillResult:
    rng = random.Random(2026)  # noqa: S311  # reproducible junk, not secrets
    bad = hostile_payloads(rng, hostile)
    per = max(1, count // hostile)

    def extra(i: int) -> list[tuple[str, bytes]]:
        if i % per:
            return []
        payload = next(bad, None)
        if payload is None:
            return []
        return [(f"cityops/{pipe.city}/sensors/hx-{i % DEVICES:03d}/up", payload)]

    pub = Publisher(pipe.settings, pipe.city)
    t0 = time.monotonic()
    pub.run("hx", count, 1000.0, extra)
    done = _until(
        lambda: pipe.stored("hx")[0] >= count and sum(pipe.deadletters().values()) >= hostile, 180
    )
    pub.close()
    time.sleep(2)
    rows, distinct = pipe.stored("hx")
    letters = pipe.deadletters()
    result = DrillResult("hostile", sent=count + hostile, stored=distinct)
    result.lost = (count - distinct) + max(0, hostile - sum(letters.values()))
    result.duplicated = rows - distinct + max(0, sum(letters.values()) - hostile)
    result.recovery_s = None if done is None else round(time.monotonic() - t0, 1)
    result.ok = result.lost == 0 and result.duplicated == 0
    result.detail = {"normal": count, "hostile": hostile, "deadlettered": letters}
    return result


INJECTIONS = (
    "' OR 1=1 --",
    "x'; DROP TABLE alerts; --",
    "../../../../etc/passwd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%00",
    "<script>alert(1)</script>",
    "1e309",
)


def drill_security(pipe: Pipeline) -> DrillResult:
    """Devices stay on their own topics; the API answers 401/403/404 where it must, finds
    nothing across tenants, shrugs off injection and traversal; no secret in any log."""
    import httpx

    from ingest.broker_accounts import device_username
    from store.keys import create_key

    result = DrillResult("security")
    findings: list[str] = []
    probes = 0
    # 1. MQTT: a device may publish only on its own topics.
    me = DevicePublisher(
        pipe.settings.broker().as_account(
            device_username(pipe.city, "sx-000"), pipe.device_password
        )
    ).connect()
    pub = Publisher(pipe.settings, pipe.city)
    _topic, body = pub.reading("sx-000", 1, datetime.now(UTC) - timedelta(minutes=1))
    pub.close()
    for topic in (
        f"cityops/{pipe.city}/sensors/sx-001/up",
        f"cityops/{pipe.city}/cameras/sx-001/event",
        "cityops/320100/sensors/sx-000/up",
        f"cityops/{pipe.city}/sensors/sx-001/status",
        "$SYS/broker/anything",
    ):
        probes += 1
        code = me.publish_acked(topic, body)
        if code == 0:
            findings.append(f"device sx-000 could publish to {topic}")
    probes += 1
    own = me.publish_acked(f"cityops/{pipe.city}/sensors/sx-000/up", body)
    if own != 0:  # the control: without it, a failed login would pass as refusals
        findings.append(f"device sx-000 could not publish to its own topic (code {own})")
    me.close()
    # 2. The API: auth, tenancy, injection, traversal.
    other = f"3297{secrets.randbelow(90) + 10:02d}"
    with psycopg.connect(pipe.dsn, autocommit=True) as conn:
        _, mine = create_key(conn, "drill owner", "city_admin", [pipe.city])
        _, theirs = create_key(conn, "drill intruder", "city_admin", [other])
    port = free_port()
    env = {
        **os.environ,
        "CITYOPS_DB_DSN": pipe.dsn,
        "CITYOPS_API_PORT": str(port),
        "CITYOPS_API_RATE": "100000",
    }
    with (pipe.logs / "api.log").open("ab") as fh:
        pipe.procs["api"] = subprocess.Popen(
            [sys.executable, "-m", "cityops.cli", "api", "serve"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pipe.wait_log("api", "Application startup complete")
    url = f"http://127.0.0.1:{port}"
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    ops = [
        (m.upper(), path)
        for path, o in spec["paths"].items()
        for m in o
        if path.startswith("/v1/") and not path.endswith("/sse")
    ]

    def fill(path: str, value: str) -> str:
        return (
            path.replace("{city}", pipe.city)
            .replace("{alert_id}", value)
            .replace("{action}", "acknowledge")
            .replace("{layer}", "devices")
            .replace("{webhook_id}", "1")
            .replace("{device_id}", value)
        )

    with httpx.Client(base_url=url, timeout=10) as c:
        for method, path in ops:
            target = fill(path, "hx-000")
            params = {"metric": "ch4"} if path.endswith("/series") else {}
            for token, allowed in ((None, {401}), ("cok_0.bad", {401}), (theirs, {403, 404, 200})):
                probes += 1
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                r = c.request(
                    method,
                    target,
                    headers=headers,
                    params=params,
                    json={"url": "http://127.0.0.1:9/x"},
                )
                if r.status_code not in allowed:
                    who = "a foreign" if token == theirs else "no valid"
                    findings.append(f"{method} {path} with {who} key: {r.status_code}")
                elif r.status_code == 200 and pipe.city in r.text:
                    findings.append(f"{method} {path} showed city {pipe.city} to another tenant")
            for bad in INJECTIONS:
                probes += 1
                try:
                    r = c.request(
                        method,
                        fill(path, bad),
                        headers={"Authorization": f"Bearer {mine}"},
                        params={**params, "type": bad, "bbox": bad, "grid_cell": bad},
                        json={"note": bad, "department": bad, "url": bad},
                    )
                except httpx.HTTPError as exc:
                    findings.append(f"{method} {path} with {bad!r}: {type(exc).__name__}")
                    continue
                if r.status_code >= 500:
                    findings.append(f"{method} {path} with {bad!r}: {r.status_code}")
        for path in (
            "/static/../../etc/passwd",
            "/static/..%2F..%2Fetc%2Fpasswd",
            "/../etc/passwd",
        ):
            probes += 1
            r = c.get(path)
            if r.status_code == 200 and "root:" in r.text:
                findings.append(f"{path} served a file outside the static folder")
    with psycopg.connect(pipe.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM alerts").fetchone()
        if row is None:
            findings.append("the alerts table is gone")
    # 3. The push endpoint: signatures, replays, tenancy, hostile bodies, kept once.
    push_probes, push_secrets = _probe_push(pipe, other, findings)
    probes += push_probes
    # 4. No secret in any log.
    secrets_ = {
        "MQTT platform password": pipe.settings.mqtt_password.get_secret_value(),
        "device password": pipe.device_password,
        "database DSN password": pipe.dsn.split("@")[0].rsplit(":", 1)[-1],
        "API key": mine.split(".", 1)[1],
        **push_secrets,
    }
    for log in pipe.logs.glob("*.log"):
        text = log.read_text(errors="replace")
        for what, value in secrets_.items():
            if value and len(value) >= 8 and value in text:
                findings.append(f"the {what} appears in {log.name}")
    result.sent = probes
    result.ok = not findings
    result.detail = {"probes": probes, "findings": findings}
    return result


def _hostile_bodies() -> list[tuple[str, bytes]]:
    """Bodies an attacker or a broken platform sends: none may cost a 5xx or a reading."""
    return [
        ("not JSON", b"\x00\xff{not json"),
        ("deep nesting", b"[" * 100_000 + b"]" * 100_000),
        ("1e309", b'{"device_id": "ps-000", "ts": "2026-01-01T00:00:00Z", "values": 1e309}'),
        ("NaN", b'{"device_id": "ps-000", "metric": "ch4", "value": NaN}'),
        ("too many reports", b"[" + b",".join([b"{}"] * 5000) + b"]"),
        ("empty", b""),
        ("empty array", b"[]"),
        ("a string", b'"ps-000"'),
        ("oversize", b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'),
        *(
            (
                "injected device id",
                json.dumps({"device_id": bad, "metric": "ch4", "value": 1}).encode(),
            )
            for bad in INJECTIONS
        ),
        ("lone surrogate", b'{"device_id": "ps-000\\u202e\\ud800", "metric": "ch4"}'),
        (
            "XML entity expansion",
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx">'
            + b"".join(b'<!ENTITY x%d "&x;&x;&x;&x;&x;&x;&x;&x;&x;&x;">' % i for i in range(9))
            + b"]><EventNotificationAlert>&x8;</EventNotificationAlert>",
        ),
        (
            "XML external entity",
            b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<EventNotificationAlert><eventType>&x;</eventType></EventNotificationAlert>",
        ),
        ("deep XML", b"<a>" * 50_000 + b"</a>" * 50_000),
    ]


def _probe_push(pipe: Pipeline, other: str, findings: list[str]) -> tuple[int, dict[str, str]]:
    """``cityops push serve`` of the drill city under attack: wrong, stale and replayed
    signatures, another city's source and devices, an MQTT device, hostile and oversize
    bodies; on the CTWing connector, missing, wrong and another city's URL tokens, a
    network the source does not take pushes from, retried and hostile messages. Returns
    the probes made and the secrets no log may show."""
    import ssl

    import httpx

    from cityops.push import tls_files
    from ingest.push.connectors.onenet import signature_of
    from ingest.push.handler import SIGNATURE_HEADER, SOURCE_HEADER
    from lifeline.devices import gas_well
    from lifeline.signature import sign
    from store.devices import upsert_devices
    from store.push_sources import create_source, parse_networks

    probes = 0
    with psycopg.connect(pipe.dsn, autocommit=True) as conn:
        mine, my_key, *_ = create_source(conn, pipe.city, "drill-nb")
        theirs, their_key, *_ = create_source(conn, other, "drill-nb")
        my_ct = create_source(conn, pipe.city, "drill-ct", platform="ctwing")
        their_ct = create_source(conn, other, "drill-ct", platform="ctwing")
        fenced = create_source(
            conn,
            pipe.city,
            "drill-fenced",
            platform="ctwing",
            networks=parse_networks(["203.0.113.0/24"]),
        )
        cmcc = create_source(conn, pipe.city, "drill-on", platform="onenet").source
        my_isc = create_source(conn, pipe.city, "drill-isc", platform="hik-isc")
        their_isc = create_source(conn, other, "drill-isc", platform="hik-isc")
        my_cams = create_source(conn, pipe.city, "drill-cams", platform="isapi")
        pushed = [
            gas_well(city, f"ps-{i:03d}", owner_dept="drill", transport="http", source="drill-nb")
            for city in (pipe.city, other)
            for i in range(3)
        ]
        pushed += [
            gas_well(
                city,
                f"pc-{i:03d}",
                owner_dept="drill",
                transport="http",
                source="drill-ct",
                platform_id=f"ct{i:030d}",
            )
            for city in (pipe.city, other)
            for i in range(3)
        ]
        for city in (pipe.city, other):
            devices = [d for d in pushed if d.city == city]
            upsert_devices(
                conn, devices, {d.device_id: (f"{city}.{d.device_id}", "") for d in devices}
            )
    tls = tls_files(pipe.settings)
    port = free_port()
    env = {
        **os.environ,
        "CITYOPS_DB_DSN": pipe.dsn,
        "CITYOPS_CITIES": f"{pipe.city},{other}",
        "CITYOPS_KAFKA_BOOTSTRAP": pipe.settings.kafka_bootstrap,
    }
    argv = ["push", "serve", "--port", str(port), *(() if tls else ("--plain",))]
    with (pipe.logs / "push.log").open("ab") as fh:
        pipe.procs["push"] = subprocess.Popen(
            [sys.executable, "-m", "cityops.cli", *argv],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pipe.wait_log("push", "push serving")
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(pipe.settings.tls_dir / "ca.crt")) if tls else False
    )
    url = f"{'https://localhost' if tls else 'http://127.0.0.1'}:{port}"
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    reports = [
        {
            "device_id": f"ps-{i:03d}",
            "ts": (at + timedelta(seconds=j)).isoformat(),
            "metric": "ch4",
            "value": 1.0,
        }
        for i in range(3)
        for j in range(10)
    ]
    good = json.dumps(reports).encode()

    def signed(body: bytes, secret: str = mine.hmac_secret, t: int | None = None) -> dict[str, str]:
        return {SOURCE_HEADER: "drill-nb", SIGNATURE_HEADER: sign(secret, body, t)}

    with httpx.Client(base_url=url, verify=verify, timeout=30) as c:
        path = f"/v1/ingest/{pipe.city}/push"

        def expect(
            what: str, status: set[int], body: bytes, headers: dict[str, str], where: str = path
        ) -> httpx.Response | None:
            nonlocal probes
            probes += 1
            try:
                r = c.post(
                    where, content=body, headers={"content-type": "application/json", **headers}
                )
            except httpx.HTTPError as exc:
                findings.append(f"push, {what}: {type(exc).__name__}")
                return None
            if r.status_code not in status:
                findings.append(f"push, {what}: {r.status_code} {r.text[:200]}")
            return r

        expect("no credentials", {401}, good, {})
        expect("a made-up key", {401}, good, {"Authorization": "Bearer cpk_0.bad"})
        wrong = sign("not-the-secret", good)
        expect(
            "a wrong signature", {401}, good, {SOURCE_HEADER: "drill-nb", SIGNATURE_HEADER: wrong}
        )
        expect("another body's signature", {401}, good, signed(b"[]"))
        expect("a stale signature", {401}, good, signed(good, t=int(time.time()) - 3600))
        expect("a signature from the future", {401}, good, signed(good, t=int(time.time()) + 3600))
        expect("another city's secret", {401}, good, signed(good, theirs.hmac_secret))
        expect("another city's key", {403}, good, {"Authorization": f"Bearer {their_key}"})
        expect(
            "my key on another city's path",
            {403},
            good,
            {"Authorization": f"Bearer {my_key}"},
            f"/v1/ingest/{other}/push",
        )
        expect(
            "a city not served",
            {401, 403, 404},
            good,
            {"Authorization": f"Bearer {my_key}"},
            "/v1/ingest/399999/push",
        )
        # Accepted once; the same signed request again is a replay; the same reports
        # signed anew, and with the key, are accepted and kept once.
        headers = signed(good)
        expect("a signed batch", {200}, good, headers)
        expect("the same signed request again", {409}, good, headers)
        time.sleep(1.1)
        expect("the batch signed anew", {200}, good, signed(good))
        expect("the batch with the key", {200}, good, {"Authorization": f"Bearer {my_key}"})
        # Reports a source may not send: dead-lettered, the rest of the batch kept.
        mixed = [
            {"device_id": "ps-000", "ts": at.isoformat(), "metric": "ch4", "value": 2.0},
            {"device_id": "sx-000", "ts": at.isoformat(), "metric": "ch4", "value": 3.0},
            {"device_id": "nobody", "ts": at.isoformat(), "metric": "ch4", "value": 4.0},
            {"device_id": "ps-001", "ts": at.isoformat(), "metric": "ch4", "value": -9e9},
        ]
        r = expect(
            "a batch naming foreign devices",
            {200},
            json.dumps(mixed).encode(),
            {"Authorization": f"Bearer {my_key}"},
        )
        if r is not None and r.status_code == 200 and r.json().get("dead_lettered") != 3:
            findings.append(f"push, foreign devices: {r.json()} (3 dead letters expected)")
        for what, body in _hostile_bodies():
            expect(
                f"hostile body ({what})",
                {400, 413, 200},
                body,
                {"Authorization": f"Bearer {my_key}"},
            )
        # The CTWing connector: known by the token in its URL, from its networks only.
        ct_path = f"/v1/ingest/{pipe.city}/ctwing/drill-ct"
        ct_messages = [
            {
                "messageType": "dataReport",
                "deviceId": f"ct{i:030d}",
                "IMEI": "",
                "upPacketSN": j,
                "timestamp": int((at + timedelta(seconds=j)).timestamp() * 1000),
                "payload": {"serviceId": "gas", "serviceData": {"ch4": 1.5}},
            }
            for i in range(3)
            for j in range(5)
        ]
        one = json.dumps(ct_messages[0]).encode()
        token = my_ct.url_token or ""
        expect("CTWing without a token", {401}, one, {}, ct_path)
        expect("CTWing with a wrong token", {401}, one, {}, f"{ct_path}?token=x{token[1:]}")
        expect(
            "CTWing with another city's token",
            {401},
            one,
            {},
            f"{ct_path}?token={their_ct.url_token}",
        )
        expect(
            "CTWing with my token on another city's path",
            {401},
            one,
            {},
            f"/v1/ingest/{other}/ctwing/drill-ct?token={token}",
        )
        expect(
            "CTWing from a network its source does not take",
            {403},
            one,
            {},
            f"/v1/ingest/{pipe.city}/ctwing/drill-fenced?token={fenced.url_token}",
        )
        expect(
            "CTWing on the route of our own envelope's source",
            {404},
            one,
            {},
            f"/v1/ingest/{pipe.city}/ctwing/drill-nb?token={token}",
        )
        for _ in range(3):  # CTWing's retries: each message kept once
            for m in ct_messages:
                expect(
                    "a CTWing message",
                    {200},
                    json.dumps(m).encode(),
                    {},
                    f"{ct_path}?token={token}",
                )
        stranger = {**ct_messages[0], "deviceId": "not-onboarded"}
        expect(
            "a CTWing message of an unknown device",
            {200},
            json.dumps(stranger).encode(),
            {},
            f"{ct_path}?token={token}",
        )
        for what, body in _hostile_bodies():
            expect(
                f"CTWing hostile body ({what})", {200, 413}, body, {}, f"{ct_path}?token={token}"
            )
        # OneNET: its URL check and pushes signed with the source's token, nothing else.
        on_path = f"/v1/ingest/{pipe.city}/onenet/drill-on"
        on_token = cmcc.platform_secret or ""
        probes += 2
        check = c.get(
            on_path,
            params={
                "msg": "drill",
                "nonce": "abcdefgh",
                "signature": signature_of(on_token, "abcdefgh", "drill"),
            },
        )
        if (check.status_code, check.text) != (200, "drill"):
            findings.append(f"push, OneNET URL check: {check.status_code} {check.text[:100]}")
        forged = c.get(
            on_path,
            params={
                "msg": "drill",
                "nonce": "abcdefgh",
                "signature": signature_of("guess", "abcdefgh", "drill"),
            },
        )
        if forged.status_code != 401:
            findings.append(f"push, OneNET URL check with a wrong token: {forged.status_code}")
        on_msg = json.dumps({"deviceName": "x", "messageType": "lifeCycle", "data": {}})
        unsigned = json.dumps({"msg": on_msg, "nonce": "abcdefgh", "signature": "AAAA"})
        expect("OneNET with a wrong signature", {401}, unsigned.encode(), {}, on_path)
        signed_on = json.dumps(
            {
                "msg": on_msg,
                "nonce": "abcdefgh",
                "signature": signature_of(on_token, "abcdefgh", on_msg),
            }
        )
        expect(
            "OneNET signed, a bad message (dead-lettered)", {200}, signed_on.encode(), {}, on_path
        )
        for what, body in _hostile_bodies():
            expect(f"OneNET hostile body ({what})", {401, 413}, body, {}, on_path)
        probes += 1
        # iSecure Center and ISAPI: known by the token in their URL; no body a 5xx.
        isc_path = f"/v1/ingest/{pipe.city}/hik-isc/drill-isc"
        isc_token = my_isc.url_token or ""
        event = json.dumps(
            {
                "method": "OnEventNotify",
                "params": {
                    "events": [
                        {
                            "eventId": "drill-1",
                            "srcIndex": "no-such-camera",
                            "eventType": 192513,
                            "status": 0,
                            "happenTime": at.isoformat(),
                        }
                    ]
                },
            }
        ).encode()
        expect("iSecure Center without a token", {401}, event, {}, isc_path)
        expect(
            "iSecure Center with another city's token",
            {401},
            event,
            {},
            f"{isc_path}?token={their_isc.url_token}",
        )
        expect(
            "iSecure Center's token on the ISAPI route",
            {401},
            event,
            {},
            f"/v1/ingest/{pipe.city}/isapi/drill-cams?token={isc_token}",
        )
        expect(
            "an iSecure Center event of an unknown camera (dead-lettered)",
            {200},
            event,
            {},
            f"{isc_path}?token={isc_token}",
        )
        cams_path = f"/v1/ingest/{pipe.city}/isapi/drill-cams?token={my_cams.url_token}"
        for what, body in _hostile_bodies():
            expect(
                f"iSecure Center hostile body ({what})",
                {200, 413},
                body,
                {},
                f"{isc_path}?token={isc_token}",
            )
            expect(
                f"ISAPI hostile body ({what})",
                {200, 413},
                body,
                {"content-type": "application/xml"},
                cams_path,
            )
        probes += 1
        if c.get("/ready").status_code != 200:
            findings.append("push: not ready after the hostile bodies")
    # Kept once: 30 readings sent three times, the refused reports in the dead letters.
    deadline = time.monotonic() + 60
    stored = distinct = 0
    while time.monotonic() < deadline:
        stored, distinct = pipe.stored("ps-")
        if stored >= len(reports):
            break
        time.sleep(1)
    probes += 1
    if (stored, distinct) != (len(reports), len(reports)):
        findings.append(
            f"push: {stored} readings stored ({distinct} distinct) of {len(reports)} sent thrice"
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stored, distinct = pipe.stored("pc-")
        if stored >= len(ct_messages):
            break
        time.sleep(1)
    probes += 1
    if (stored, distinct) != (len(ct_messages), len(ct_messages)):
        findings.append(
            f"push, CTWing: {stored} readings stored ({distinct} distinct) of "
            f"{len(ct_messages)} sent thrice"
        )
    with psycopg.connect(pipe.dsn, autocommit=True) as conn:
        foreign = conn.execute(
            "SELECT count(*) FROM readings WHERE city <> %s AND device_id LIKE 'ps-%%'",
            (pipe.city,),
        ).fetchone()
        letters = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT reason FROM deadletters WHERE mqtt_topic = %s",
                (f"push/{pipe.city}/drill-nb",),
            ).fetchall()
        }
        ct_letters = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT reason FROM deadletters WHERE mqtt_topic = %s",
                (f"push/{pipe.city}/drill-ct",),
            ).fetchall()
        }
    probes += 3
    if not {"unknown_device", "bad_json"} <= ct_letters:
        findings.append(f"push, CTWing: dead letters {sorted(ct_letters)} lack unknown_device")
    if foreign and foreign[0]:
        findings.append(f"push: {foreign[0]} readings stored for another city's devices")
    wanted = {"unknown_device", "not_this_source", "out_of_range", "bad_json", "oversize"}
    if not wanted <= letters:
        findings.append(
            f"push: dead letters lack {sorted(wanted - letters)} (have {sorted(letters)})"
        )
    pipe.kill("push")
    return probes, {
        "push ingest key": my_key.split(".", 1)[1],
        "push HMAC secret": mine.hmac_secret,
        "CTWing URL token": token,
        "OneNET token": cmcc.platform_secret or "",
        "iSecure Center URL token": isc_token,
        "ISAPI URL token": my_cams.url_token or "",
    }


DRILLS: dict[str, Callable[[Pipeline], DrillResult]] = {
    "security": drill_security,
    "hostile": drill_hostile,
    "mosquitto": drill_mosquitto,
    "mosquitto-crash": drill_mosquitto_crash,
    "bridge": drill_bridge,
    "kafka": drill_kafka,
    "postgres": drill_postgres,
    "worker": drill_worker,
    "workers": drill_workers,
    "kafka-node": drill_kafka_node,
}

#: Drills that need the stack's Kafka to run three nodes; ``all`` takes them only then.
CLUSTER_DRILLS = ("kafka-node",)


#: Shorter variants for the test suite; the full ones stay ``cityops drill NAME``.
SHORT: dict[str, Callable[[Pipeline], DrillResult]] = {
    "bridge": functools.partial(drill_bridge, rate=2_000.0, away_s=10.0),
    "kafka-node": functools.partial(drill_kafka_node, count=30_000, down_s=10.0),
}


def run_drills(settings: Settings, names: list[str], short: bool = False) -> dict[str, Any]:
    unknown = [n for n in names if n not in DRILLS]
    if unknown:
        raise CityOpsError(f"no drill {unknown}; choose from {', '.join(DRILLS)} or all")
    results = []
    with pipeline(settings) as pipe:
        for n in names:
            drill = SHORT.get(n, DRILLS[n]) if short else DRILLS[n]
            results.append(drill(pipe))
    return {
        "drills": len(results),
        "failed": sum(1 for r in results if not r.ok),
        "lost": sum(r.lost for r in results),
        "duplicated": sum(r.duplicated for r in results),
        "table": [asdict(r) for r in results],
    }
