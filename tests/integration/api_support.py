"""A real cockpit API server (uvicorn on a free port) over the test database, and data."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jsonschema
import psycopg
import uvicorn

from cityops.stack.common import free_port
from cockpit_api.app import ApiConfig, create_app
from lifeline.records import Incident
from lifeline.vocabulary import IncidentType, Severity
from store.events import upsert_incidents
from store.keys import create_key


@dataclass
class Server:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")


@contextmanager
def serve(config: ApiConfig) -> Iterator[Server]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            ws="websockets-sansio",
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    try:
        yield Server(f"http://127.0.0.1:{port}", server, thread)
    finally:
        server.should_exit = True
        thread.join(20)


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A real HTTP endpoint on 127.0.0.1: its URL, and every body posted to it."""
    received: list[bytes] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cap", received
    finally:
        server.shutdown()
        server.server_close()


def first_event(lines: Iterable[str]) -> dict[str, Any] | None:
    """The first ``data:`` entry of a Server-Sent Events stream, as JSON."""
    found = next((line[6:] for line in lines if line.startswith("data: ")), None)
    return None if found is None else dict(json.loads(found))


def random_city() -> str:
    return f"{secrets.randbelow(800000) + 110000:06d}"


def key(dsn: str, role: str, cities: list[str], name: str = "") -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _, token = create_key(conn, name or f"{role}-test", role, cities)
    return token


def incident(
    city: str,
    type_: IncidentType = IncidentType.GAS_LEAK,
    severity: Severity = Severity.ORANGE,
    *,
    revision: int = 1,
    incident_id: str | None = None,
    started: datetime | None = None,
    lon: float = 118.78,
    lat: float = 32.04,
) -> Incident:
    started = started or datetime.now(UTC) - timedelta(minutes=2)
    return Incident(
        incident_id=incident_id or f"{city}:{secrets.token_hex(4)}:{type_.value}",
        revision=revision,
        city=city,
        type=type_,
        severity=severity,
        title=f"{type_.value} test",
        asset_ids=("GW-0001",),
        grid_cells=(f"{city}001001001",),
        lon=lon,
        lat=lat,
        started_at=started,
        updated_at=started + timedelta(seconds=revision),
    )


def store_incidents(dsn: str, incidents: list[Incident]) -> None:
    """Write incidents exactly as the sink does (incident, alert, audit, feed)."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        upsert_incidents(conn, incidents)


class Contract:
    """The API's OpenAPI document as a check on real answers: each answer's status must be
    documented for its operation, and a JSON body must match the documented schema."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        routes = []
        for template, operations in doc["paths"].items():
            parts = re.split(r"(\{[^}]+\})", template)
            pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
            routes.append((template.count("{"), re.compile(f"^{pattern}$"), template, operations))
        self.routes = sorted(routes, key=lambda r: r[0])  # literal paths before templates

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for _, pattern, template, operations in self.routes:
            if pattern.match(path) and method.lower() in operations:
                return template, operations[method.lower()]
        return None

    def check(self, response: httpx.Response) -> None:
        found = self.operation(response.request.method, response.request.url.path)
        if found is None:
            return  # not an operation of the document (the page, static files, metrics)
        template, op = found
        where = f"{response.request.method} {template} -> {response.status_code}"
        documented = op["responses"].get(str(response.status_code))
        assert documented is not None, f"{where}: the document does not list this answer"
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if response.status_code == 204 or media == "text/event-stream":
            return
        content = documented.get("content", {})
        assert media in content, f"{where}: {media} is not documented ({sorted(content)})"
        if media != "application/json":
            return
        response.read()
        schema = {**content[media]["schema"], "components": self.doc["components"]}
        try:
            jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)
        except jsonschema.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path)
            raise AssertionError(f"{where}: the body differs at {path!r}: {exc.message}") from None


_contracts: dict[str, Contract] = {}


def contract(server: Server) -> Contract:
    if server.url not in _contracts:
        _contracts[server.url] = Contract(
            httpx.get(f"{server.url}/openapi.json", timeout=10).json()
        )
    return _contracts[server.url]


def client(server: Server, token: str | None) -> httpx.Client:
    """A client of the server whose every answer is checked against its OpenAPI document."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=server.url,
        headers=headers,
        timeout=10,
        event_hooks={"response": [contract(server).check]},
    )


@asynccontextmanager
async def incidents_through_sink(
    bootstrap: str, dsn: str, tag: str
) -> AsyncIterator[Callable[[Incident], Awaitable[None]]]:
    """A sink writing a topic of its own into ``dsn``, and a function that produces an
    incident to that topic: incidents reach the store the way the platform's do."""
    from aiokafka import AIOKafkaProducer

    from streams.sink import Sink

    topic = f"it-incidents-{random_city()}"
    sink = Sink(bootstrap, dsn, f"it-{tag}-{topic}", {topic: "incidents"})
    await sink.start()
    stop = asyncio.Event()
    running = asyncio.create_task(sink.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()

    async def produce(inc: Incident) -> None:
        await producer.send_and_wait(topic, inc.to_json(), key=inc.incident_id.encode())

    try:
        yield produce
    finally:
        await producer.stop()
        stop.set()
        await running
        await sink.stop()
