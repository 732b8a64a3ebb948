"""``cityops bench push``: readings pushed over HTTPS into Kafka, as a carrier platform
pushes them.

`cityops push serve --workers N` (HTTPS with the stack's certificate) on a scratch
database with ``devices`` http devices of one source; ``clients`` load processes, each
with ``connections`` keep-alive connections, push as the platform would. Two phases of
``seconds`` each: batches of ``batch`` reports a request, then single reports. A request
is timed from its send to its answer; a phase's rate is what was answered 200 over its
duration. ``lost``: readings answered 200 that the readings topic does not hold (counted
from the phase's start offsets, the bench's city only).

``platform``: ``cityops`` signs every request (HMAC-SHA256) in our own envelope;
``ctwing`` sends CTWing's subscription push to its connector (with the source's URL
token): ``dataReport`` messages one a request, as CTWing sends them, and
``dataReportTupUnion`` messages of ``batch`` reports; ``iotda`` sends IoTDA's
``device.property`` notifications, one service a request and then ``batch`` services
(each at its own time) a notification; ``onenet`` OneNET Studio's signed property
notifications, one a request (OneNET has no batch); ``hik-isc`` Hikvision iSecure
Center's ``OnEventNotify`` of cameras' events (``batch`` events a notification, then one),
each a video event of the type the city's code table gives its code; ``isapi`` a
camera's XML ``EventNotificationAlert``, one a request. For the video platforms the
devices are cameras, ``readings_per_s`` counts video events and ``lost`` those the video
topic does not hold.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import multiprocessing
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta, timezone
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from tqdm import tqdm

from bench._support import free_port, scratch_database
from cityops.processes import wait_ready
from cityops.settings import Settings, get_settings
from ingest.push.connectors.onenet import signature_of
from lifeline import codec
from lifeline.devices import Device, camera, gas_well
from lifeline.records import VideoEvent
from lifeline.topics import READINGS, VIDEO
from store.devices import upsert_devices
from store.migrate import migrate
from store.push_sources import create_source

CITY = "329993"
SOURCE = "bench-carrier"
CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


#: what each platform's phases are called: (batches, one message a request)
PHASES = {
    "cityops": ("batched", "single"),
    "ctwing": ("union", "single"),
    "iotda": ("services", "single"),
    # OneNET Studio pushes one message a request, each signed: there is no batch.
    "onenet": ("single",),
    "hik-isc": ("events", "single"),
    # A camera posts one alert a request.
    "isapi": ("single",),
}
#: the platforms whose messages are cameras' events (counted on the video topic)
VIDEO_PLATFORMS = frozenset({"hik-isc", "isapi"})
#: the bench city's event code table: the codes the load sends, mapped
CODES = (
    '[hik-isc]\n192513 = { type = "smoke_fire", name = "smoke" }\n'
    '[isapi]\nsmokeDetection = "smoke_fire"\n'
)


def run(
    seconds: float = 10.0,
    clients: int = 2,
    connections: int = 32,
    batch: int = 50,
    devices: int = 1000,
    workers: int = 2,
    platform: str = "cityops",
    tls: bool = True,
) -> dict[str, Any]:
    if platform not in PHASES:
        raise ValueError(f"bench push speaks {', '.join(PHASES)}, not {platform!r}")
    settings = get_settings()
    ca = settings.tls_dir / "ca.crt"
    if not ca.exists():
        raise RuntimeError(f"no {ca}: start the stack (`cityops stack up`) first")
    with scratch_database(settings, "cityops_bench_push") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, settings.timescale)
            source, _key, token = create_source(
                conn, CITY, SOURCE, rate_per_s=1e9, platform=platform
            )
            secret = token or source.platform_secret or source.hmac_secret
            video = platform in VIDEO_PLATFORMS
            names = [_camera_id(i) if video else f"nb-{i:05d}" for i in range(devices)]
            upsert_devices(
                conn,
                [_camera(n, platform) if video else _device(n) for n in names],
                {n: (f"{CITY}.{n}", "") for n in names},
            )
        vendors = Path(tempfile.mkdtemp(prefix="cityops-bench-codes-"))
        (vendors / "events").mkdir()
        (vendors / "events" / f"{CITY}.toml").write_text(CODES, encoding="utf-8")
        port = free_port()
        log = tempfile.TemporaryFile()  # noqa: SIM115  # closed below, after the process
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "cityops.cli", "push", "serve"),
                *("--port", str(port), "--workers", str(workers)),
                *(() if tls else ("--plain",)),
            ],
            env={
                **os.environ,
                "CITYOPS_DB_DSN": dsn,
                "CITYOPS_CITIES": CITY,
                "CITYOPS_LOG_LEVEL": "WARNING",
                "CITYOPS_VENDOR_DIR": str(vendors),
            },
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        url = f"{'https' if tls else 'http'}://localhost:{port}"
        try:
            _wait_ready(url, str(ca), proc, log)
            bar = tqdm(total=2, desc=f"bench push {platform}")
            phases = {}
            sizes = (batch, 1) if len(PHASES[platform]) == 2 else (1,)
            for label, size in zip(PHASES[platform], sizes, strict=True):
                phases[label] = _phase(
                    settings,
                    url,
                    str(ca),
                    platform,
                    secret,
                    names,
                    size,
                    seconds,
                    clients,
                    connections,
                )
                bar.update()
            bar.close()
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            shutil.rmtree(vendors, ignore_errors=True)
    batched, single = phases[PHASES[platform][0]], phases["single"]
    return {
        "platform": platform,
        "readings_per_s": batched["readings_per_s"],
        "requests_per_s": single["requests_per_s"],
        "p50_ms": single["p50_ms"],
        "p99_ms": single["p99_ms"],
        **phases,
        "batch": batch,
        "clients": clients,
        "connections": connections * clients,
        "workers": workers,
        "tls": tls,
        "seconds": seconds,
        "lost": batched["lost"] + single["lost"],
    }


def _device(name: str) -> Device:
    return gas_well(
        CITY,
        name,
        owner_dept="bench",
        transport="http",
        source=SOURCE,
        platform_id=_platform_id(name),
    )


def _camera_id(i: int) -> str:
    """A bench camera's GB/T 28181 id in the bench city."""
    return f"{CITY}0008132{i:07d}"


def _camera(name: str, platform: str) -> Device:
    return camera(
        CITY,
        int(name[-7:]),
        owner_dept="bench",
        transport="http",
        source=SOURCE,
        platform_id=_isapi_id(name) if platform == "isapi" else _platform_id(name),
    )


def _isapi_id(name: str) -> str:
    """A bench camera as ISAPI names it: a MAC address and its channel."""
    digest = hashlib.sha1(name.encode()).hexdigest()  # noqa: S324  # an id, not a secret
    return "02:" + ":".join(digest[i : i + 2] for i in range(0, 10, 2)) + "/1"


def _platform_id(name: str) -> str:
    """The id a platform knows a bench device by (not its name in the city)."""
    return "ct" + hashlib.sha1(name.encode()).hexdigest()[:24]  # noqa: S324  # an id, not a secret


def _wait_ready(url: str, ca: str, proc: subprocess.Popen[bytes], log: Any) -> None:
    def tail() -> str:
        log.seek(0)
        return str(log.read().decode())

    wait_ready(url, proc, tail, ssl.create_default_context(cafile=ca))


def _phase(
    settings: Settings,
    url: str,
    ca: str,
    platform: str,
    secret: str,
    names: list[str],
    batch: int,
    seconds: float,
    clients: int,
    connections: int,
) -> dict[str, Any]:
    topic = VIDEO.name if platform in VIDEO_PLATFORMS else READINGS.name
    start = asyncio.run(_end_offsets(settings, topic))
    ctx = multiprocessing.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_client,
            args=(
                results,
                url,
                ca,
                platform,
                secret,
                names[k::clients],
                batch,
                seconds,
                connections,
                go,
            ),
        )
        for k in range(clients)
    ]
    for p in procs:
        p.start()
    time.sleep(2.0)
    go.set()
    outcomes = [results.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    took = max(o["t1"] for o in outcomes) - min(o["t0"] for o in outcomes)
    ok = sum(o["ok"] for o in outcomes)
    readings = ok * batch
    latencies = np.concatenate([np.asarray(o["latencies_ms"]) for o in outcomes])
    found = asyncio.run(_count_city(settings, start, topic))
    statuses: dict[str, int] = {}
    for o in outcomes:
        for status, n in o["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    return {
        "requests_per_s": round(ok / took),
        "readings_per_s": round(readings / took),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies.size else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 1) if latencies.size else None,
        "requests": int(sum(statuses.values())),
        "statuses": statuses,
        "lost": max(0, readings - found),
    }


def _client(results: Queue[Any], *load: Any) -> None:
    """One carrier platform's pusher (in a process of its own): ``_push`` with ``load``,
    its outcome put on ``results``."""
    import uvloop

    results.put(uvloop.run(_push(*load)))


async def _push(
    url: str,
    ca: str,
    platform: str,
    secret: str,
    names: list[str],
    batch: int,
    seconds: float,
    connections: int,
    go: Event,
) -> dict[str, Any]:
    """One carrier platform's pusher: ``connections`` requests in flight on keep-alive
    connections, each a body of ``batch`` reports (signed with ``secret``, or to the URL
    with the token ``secret``), until ``seconds`` are up.

    Lean HTTP/1.1 over TLS: each connection writes a request, reads its answer's head
    and body, and writes the next; a load generator should not cost more than the
    endpoint it measures (a carrier platform pushes from its own machines)."""
    tls = url.startswith("https://")
    context = ssl.create_default_context(cafile=ca) if tls else None
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    ok = 0
    # Each reading its own key: one microsecond apart, from a start an hour ago.
    base = datetime.now(UTC) - timedelta(hours=1)
    counter = [0]
    key = secret.encode()
    head = (
        f"POST /v1/ingest/{CITY}/push HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nX-CityOps-Source: {SOURCE}\r\n"
    ).encode()

    ctwing_head = (
        f"POST /v1/ingest/{CITY}/ctwing/{SOURCE}?token={secret} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/json\r\n"
    ).encode()
    ids = [_platform_id(n).encode() for n in names]
    base_ms = int(base.timestamp() * 1000)

    def ctwing() -> bytes:
        parts = []
        for _ in range(batch):
            n = counter[0]
            counter[0] += 1
            parts.append(
                b'{"serviceId":"gas","serviceData":{"ch4":%d.5,"CSQ":17},"timestamp":%d}'
                % (n % 20, base_ms + n)
            )
        device = ids[counter[0] % len(ids)]
        if batch == 1:
            kind, payload = b"dataReport", parts[0]
        else:
            kind, payload = b"dataReportTupUnion", b"[" + b",".join(parts) + b"]"
        data = (
            b'{"upPacketSN":-1,"upDataSN":-1,"topic":"v1/up/ad","timestamp":%d,'
            b'"tenantId":"2000033629","serviceId":"","protocol":"lwm2m","productId":"15114816",'
            b'"messageType":"%s","deviceType":"","deviceId":"%s","assocAssetId":"",'
            b'"IMSI":"undefined","IMEI":"","payload":%s}'
        ) % (base_ms + counter[0], kind, device, payload)
        return b"%sContent-Length: %d\r\n\r\n%s" % (ctwing_head, len(data), data)

    iotda_head = ctwing_head.replace(b"/ctwing/", b"/iotda/")

    slots = [0] * len(ids)
    # The batched phase an hour earlier than the single one: no moment of a device twice.
    start = base - timedelta(hours=1) if batch > 1 else base

    def iotda() -> bytes:
        # IoTDA's times are whole seconds: each device's readings a second apart.
        k = counter[0] % len(ids)
        counter[0] += 1
        parts = []
        for _ in range(batch):
            slots[k] += 1
            at = (start + timedelta(seconds=slots[k])).strftime("%Y%m%dT%H%M%SZ").encode()
            parts.append(
                b'{"service_id":"Gas","properties":{"ch4":%d.5,"signal":-80},"event_time":"%s"}'
                % (slots[k] % 20, at)
            )
        data = (
            b'{"resource":"device.property","event":"report","event_time":"%s",'
            b'"notify_data":{"header":{"device_id":"%s","node_id":"n","product_id":"p"},'
            b'"body":{"services":[%s]}}}'
        ) % (at, ids[k], b",".join(parts))
        return b"%sContent-Length: %d\r\n\r\n%s" % (iotda_head, len(data), data)

    onenet_head = (
        f"POST /v1/ingest/{CITY}/onenet/{SOURCE} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/json\r\n"
    ).encode()

    def onenet() -> bytes:
        n = counter[0]
        counter[0] += 1
        at = base_ms + n
        msg = orjson.dumps(
            {
                "productId": "p1",
                "deviceName": ids[n % len(ids)].decode(),
                "messageType": "notify",
                "notifyType": "property",
                "data": {"id": str(n), "params": {"ch4": {"value": n % 20 + 0.5, "time": at}}},
            }
        ).decode()
        nonce = f"{n % 100_000_000:08d}"
        sig = signature_of(secret, nonce, msg)
        data = orjson.dumps(
            {"msg": msg, "nonce": nonce, "signature": sig, "time": at, "id": f"b{n}"}
        )
        return b"%sContent-Length: %d\r\n\r\n%s" % (onenet_head, len(data), data)

    isc_head = ctwing_head.replace(b"/ctwing/", b"/hik-isc/")
    pid = os.getpid()  # each load process's events have ids of their own, as iSC's are unique
    cst = timezone(timedelta(hours=8))

    def isc() -> bytes:
        events = []
        for _ in range(batch):
            n = counter[0]
            counter[0] += 1
            at = (start + timedelta(milliseconds=n)).astimezone(cst)
            events.append(
                b'{"eventId":"B%d-%d-%d","srcIndex":"%s","srcType":"camera","eventType":192513,'
                b'"status":0,"eventLvl":2,"timeout":0,"happenTime":"%s",'
                b'"data":{"smokeDetection":[{"imageUrl":"http://isc.invalid/pic/%d.jpg"}]}}'
                % (
                    pid,
                    batch,
                    n,
                    ids[n % len(ids)],
                    at.isoformat(timespec="milliseconds").encode(),
                    n,
                )
            )
        data = (
            b'{"method":"OnEventNotify","params":{"ability":"event_vss","sendTime":"%s",'
            b'"events":[%s]}}'
        ) % (datetime.now(cst).isoformat(timespec="milliseconds").encode(), b",".join(events))
        return b"%sContent-Length: %d\r\n\r\n%s" % (isc_head, len(data), data)

    isapi_head = ctwing_head.replace(b"/ctwing/", b"/isapi/").replace(
        b"application/json", b"application/xml"
    )
    macs = [_isapi_id(n).split("/")[0].encode() for n in names]

    def isapi() -> bytes:
        n = counter[0]
        counter[0] += 1
        at = (start + timedelta(seconds=n // len(macs))).astimezone(cst)
        data = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<EventNotificationAlert version="2.0" '
            b'xmlns="http://www.isapi.org/ver20/XMLSchema"><ipAddress>10.0.0.1</ipAddress>'
            b"<portNo>80</portNo><protocol>HTTP</protocol><macAddress>%s</macAddress>"
            b"<channelID>1</channelID><dateTime>%s</dateTime><activePostCount>%d"
            b"</activePostCount><eventType>smokeDetection</eventType><eventState>active"
            b"</eventState><eventDescription>smoke</eventDescription></EventNotificationAlert>"
        ) % (macs[n % len(macs)], at.isoformat(timespec="seconds").encode(), n)
        return b"%sContent-Length: %d\r\n\r\n%s" % (isapi_head, len(data), data)

    def request() -> bytes:
        if platform == "hik-isc":
            return isc()
        if platform == "isapi":
            return isapi()
        if platform == "onenet":
            return onenet()
        if platform == "ctwing":
            return ctwing()
        if platform == "iotda":
            return iotda()
        parts = []
        for _ in range(batch):
            n = counter[0]
            counter[0] += 1
            ts = (base + timedelta(microseconds=n)).isoformat()
            parts.append(
                b'{"device_id":"%s","ts":"%s","metric":"ch4","value":%d.5}'
                % (names[n % len(names)].encode(), ts.encode(), n % 20)
            )
        data = b'{"reports":[' + b",".join(parts) + b"]}"
        t = str(int(time.time())).encode()
        digest = hmac.new(key, t + b"." + data, hashlib.sha256).hexdigest().encode()
        return b"%sX-CityOps-Signature: t=%s,v1=%s\r\nContent-Length: %d\r\n\r\n%s" % (
            head,
            t,
            digest,
            len(data),
            data,
        )

    streams = [
        await asyncio.open_connection(
            host, int(port), ssl=context, server_hostname=host if tls else None
        )
        for _ in range(connections)
    ]
    await asyncio.to_thread(go.wait)
    t0 = time.time()
    deadline = time.monotonic() + seconds

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal ok
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            writer.write(request())
            answer = await reader.readuntil(b"\r\n\r\n")
            length = CONTENT_LENGTH.search(answer)
            await reader.readexactly(int(length[1]) if length else 0)
            latencies.append((time.perf_counter() - sent) * 1000)
            status = answer[9:12].decode()
            statuses[status] = statuses.get(status, 0) + 1
            if status == "200":
                ok += 1
        writer.close()

    await asyncio.gather(*(worker(r, w) for r, w in streams))
    t1 = time.time()
    return {"t0": t0, "t1": t1, "ok": ok, "statuses": statuses, "latencies_ms": latencies}


async def _end_offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def _count_city(settings: Settings, start: dict[TopicPartition, int], topic: str) -> int:
    """Readings (or video events) of the bench's city in ``topic`` past ``start``."""
    ends = await _end_offsets(settings, topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    found = 0
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        remaining = {tp for tp in start if ends[tp] > start[tp]}
        while remaining:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batches:
                break
            for tp, records in batches.items():
                for rec in records:
                    if rec.value is None:
                        continue
                    if topic == VIDEO.name:
                        found += VideoEvent.from_json(rec.value).city == CITY
                    else:
                        found += sum(1 for r in codec.decode(rec.value) if r.city == CITY)
                    if rec.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
    finally:
        await consumer.stop()
    return found
