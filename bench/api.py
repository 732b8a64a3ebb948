"""``cityops bench api``: the cockpit API under load, and the live feed's fan-out.

* ``p99_ms`` / ``rps`` — 200 concurrent HTTP clients (keep-alive) for ``duration_s``
  seconds, each alternating the incident list (50 per page) and the city overview, on a
  city with 2,000 alerts and 1,000 devices; the API runs as its own ``cityops api serve``
  process, as deployed.
* ``ws_clients`` / ``ws_p99_ms`` — 1,000 WebSocket clients on the live feed; incidents
  are produced to Kafka, written by the sink and pushed; latency is from the Kafka send
  to the receipt at each client, over every client and event.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import psycopg
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from bench._support import api_server, scratch_database
from cityops.settings import get_settings
from lifeline.records import Incident
from lifeline.vocabulary import IncidentType, Severity
from store.events import upsert_incidents
from store.keys import create_key
from store.migrate import migrate
from streams.sink import Sink

CITY = "320100"
ALERTS = 2000
DEVICES = 1000
CLIENTS = 200
WS_CLIENTS = 1000
WS_EVENTS = 20


def run(runs: int = 1, duration_s: float = 15.0) -> dict[str, Any]:
    settings = get_settings()
    with scratch_database(settings, "cityops_bench_api") as dsn:
        token = _seed(dsn)
        with api_server(dsn) as url:
            http = asyncio.run(_http_load(url, token, duration_s * max(1, runs)))
            ws = asyncio.run(_ws_fanout(url, token, dsn, settings.kafka_bootstrap))
    return {**http, **ws, "clients": CLIENTS, "alerts": ALERTS, "devices": DEVICES}


def _seed(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO devices (city, device_id, family, kind, owner_dept, lon, lat,"
                " mqtt_username, mqtt_password_hash) VALUES (%s, %s, 'sensors', %s, 'ops',"
                " %s, %s, %s, 'x')",
                [
                    (
                        CITY,
                        f"d-{i:04d}",
                        ("gas_well", "water_pressure", "road_ponding")[i % 3],
                        118.7 + (i % 40) * 0.003,
                        32.0 + (i // 40) * 0.003,
                        f"{CITY}.d-{i:04d}",
                    )
                    for i in range(DEVICES)
                ],
            )
        now = datetime.now(UTC)
        types, sevs = list(IncidentType), list(Severity)
        incidents = [
            Incident(
                incident_id=f"{CITY}:bench:{i:05d}",
                city=CITY,
                type=types[i % len(types)],
                severity=sevs[i % 4],
                title=f"bench incident {i}",
                grid_cells=(f"{CITY}001001{i % 999:03d}",),
                lon=118.7 + (i % 50) * 0.002,
                lat=32.0 + (i // 50) * 0.002,
                started_at=now - timedelta(minutes=i),
                updated_at=now - timedelta(minutes=i) + timedelta(seconds=30),
            )
            for i in range(ALERTS)
        ]
        with conn.transaction():
            upsert_incidents(conn, incidents)
        _, token = create_key(conn, "bench", "dispatcher", [CITY])
    return token


async def _http_load(url: str, token: str, duration_s: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    paths = [f"/v1/alerts?city={CITY}&limit=50", f"/v1/cities/{CITY}/overview"]
    latencies: list[list[float]] = [[], []]
    errors = 0
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as session:
        for path in paths:  # warm the pool and caches
            async with session.get(path) as r:
                await r.read()
        stop_at = time.perf_counter() + duration_s
        bar = tqdm(total=round(duration_s), desc=f"api x{CLIENTS}", unit="s")

        async def client(n: int) -> None:
            nonlocal errors
            i = n
            while time.perf_counter() < stop_at:
                which = i % 2
                t0 = time.perf_counter()
                async with session.get(paths[which]) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                latencies[which].append((time.perf_counter() - t0) * 1000)
                i += 1

        async def ticker() -> None:
            while time.perf_counter() < stop_at:
                await asyncio.sleep(1)
                bar.update(1)

        t0 = time.perf_counter()
        await asyncio.gather(ticker(), *(client(n) for n in range(CLIENTS)))
        elapsed = time.perf_counter() - t0
        bar.close()
    every = latencies[0] + latencies[1]

    def p(values: list[float], q: float) -> float:
        return round(statistics.quantiles(values, n=1000)[round(q * 1000) - 1], 1)

    return {
        "p99_ms": p(every, 0.99),
        "p50_ms": p(every, 0.50),
        "rps": round(len(every) / elapsed),
        "list_p99_ms": p(latencies[0], 0.99),
        "overview_p99_ms": p(latencies[1], 0.99),
        "requests": len(every),
        "errors": errors,
        "duration_s": round(elapsed, 1),
    }


async def _ws_fanout(url: str, token: str, dsn: str, bootstrap: str) -> dict[str, Any]:
    topic = f"bench.incidents.{secrets.token_hex(3)}"
    sink = Sink(bootstrap, dsn, f"bench-api-{topic}", {topic: "incidents"})
    await sink.start()
    stop = asyncio.Event()
    sinking = asyncio.create_task(sink.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    sent_at: dict[str, float] = {}
    received: list[float] = []
    counts = [0] * WS_CLIENTS
    ws_url = url.replace("http://", "ws://")
    try:
        # Create the topic and let the sink take its partitions before clients connect.
        now = datetime.now(UTC)
        warm = Incident(
            incident_id=f"{CITY}:bench-warm",
            city=CITY,
            type=IncidentType.FIRE,
            severity=Severity.BLUE,
            started_at=now,
            updated_at=now,
        )
        await producer.send_and_wait(topic, warm.to_json(), key=b"warm")
        for _ in range(300):
            if sink.consumer.assignment():
                break
            await asyncio.sleep(0.1)
        async with aiohttp.ClientSession(
            url,
            headers={"Authorization": f"Bearer {token}"},
            connector=aiohttp.TCPConnector(limit=0),
        ) as session:
            tickets = []
            for _ in tqdm(range(WS_CLIENTS), desc="tickets", unit="client", mininterval=1):
                async with session.post("/v1/feed/ticket") as r:
                    tickets.append((await r.json())["ticket"])
            sockets = []
            for t in tqdm(tickets, desc="connect", unit="client", mininterval=1):
                sockets.append(await session.ws_connect(f"{ws_url}/v1/feed/ws?ticket={t}"))

            async def listen(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
                async for msg in ws:
                    event = orjson.loads(msg.data)
                    at = sent_at.get(event["incident_id"])
                    if at is not None:
                        received.append((time.perf_counter() - at) * 1000)
                        counts[i] += 1
                        if counts[i] == WS_EVENTS:
                            return

            listeners = [asyncio.create_task(listen(i, ws)) for i, ws in enumerate(sockets)]
            await asyncio.sleep(1.0)
            now = datetime.now(UTC)
            for n in tqdm(range(WS_EVENTS), desc="events", unit="event"):
                inc = Incident(
                    incident_id=f"{CITY}:bench-live:{secrets.token_hex(4)}",
                    city=CITY,
                    type=IncidentType.GAS_LEAK,
                    severity=Severity.RED,
                    started_at=now,
                    updated_at=now + timedelta(seconds=n),
                )
                sent_at[inc.incident_id] = time.perf_counter()
                await producer.send_and_wait(topic, inc.to_json(), key=inc.incident_id.encode())
                await asyncio.sleep(0.5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*listeners), 30)
            for task in listeners:
                task.cancel()
            for ws in sockets:
                await ws.close()
    finally:
        await producer.stop()
        stop.set()
        await sinking
        await sink.stop()
    complete = sum(1 for c in counts if c == WS_EVENTS)
    quant = statistics.quantiles(received, n=100) if len(received) > 1 else [float("nan")] * 99
    return {
        "ws_clients": complete,
        "ws_p99_ms": round(quant[98], 1),
        "ws_p50_ms": round(quant[49], 1),
        "ws_events": WS_EVENTS,
        "ws_deliveries": len(received),
    }
