"""The push endpoint's app: the device registry and the push sources of the served cities
in memory (reloaded when devices change, sources every few seconds), one idempotent Kafka
producer (``acks=all``), ``POST /v1/ingest/{city}/push`` (see :mod:`ingest.push`) and the
platforms' own formats at ``/v1/ingest/{city}/{platform}/{source}``
(:mod:`ingest.push.platforms`) on a fast path of raw ASGI; ``/health`` and ``/ready`` for
load balancers, ``/metrics`` for Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.adapters import load_vendors
from ingest.decode import Decoder
from ingest.event_codes import EventCodes
from ingest.push.answers import Answer
from ingest.push.connectors.base import Request as PlatformRequest
from ingest.push.handler import MAX_BODY_BYTES, PushIngest, Sources
from ingest.push.platforms import PlatformIngest
from ingest.push.producer import GroupProducer
from lifeline import topics
from lifeline.registry import Registry
from store.push_sources import load_sources
from store.registry import watch

log = logging.getLogger(__name__)

#: Seconds between reloads of the push sources (a revoked source is refused after this).
SOURCES_EVERY_S = 5.0
#: Bytes read of a body before it is refused unread (up to here an oversize body of an
#: authenticated source is dead-lettered, its beginning kept).
READ_AT_MOST = 4 * MAX_BODY_BYTES


@dataclass(frozen=True)
class PushConfig:
    dsn: str
    kafka_bootstrap: str
    cities: tuple[str, ...]
    vendor_dir: Path | None = None


#: The push route, answered before FastAPI's routing (the hot path: no request object,
#: no dependency resolution, no middleware stack); FastAPI serves the rest and the docs.
PUSH_PATH = re.compile(r"/v1/ingest/([^/]+)/push/?")
#: A platform's own format: city, platform, source.
PLATFORM_PATH = re.compile(r"/v1/ingest/([^/]+)/([a-z-]+)/([^/]+)/?")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def create_push_app(config: PushConfig) -> ASGIApp:
    """The push endpoint's ASGI app; Kafka and the registry start with it."""
    registry = Registry()
    sources = Sources()
    vendors = load_vendors(*([config.vendor_dir] if config.vendor_dir else []))
    ingest = PushIngest(registry, sources, Decoder(registry, vendors), vendors)
    extra = [config.vendor_dir] if config.vendor_dir else []
    platforms = PlatformIngest(ingest, codes=EventCodes.load(*extra))
    cities = list(config.cities)

    def reload_sources() -> None:
        with psycopg.connect(config.dsn, autocommit=True) as conn:
            sources.replace(load_sources(conn, cities))

    async def keep_sources(stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SOURCES_EVERY_S)
            try:
                await asyncio.to_thread(reload_sources)
            except psycopg.Error as exc:
                log.warning("push sources not reloaded", extra={"error": str(exc)})

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        await asyncio.to_thread(reload_sources)
        watcher = asyncio.create_task(watch(config.dsn, registry, config.cities, stop))
        producer = AIOKafkaProducer(
            bootstrap_servers=config.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=512 * 1024,
            request_timeout_ms=15000,
        )
        await producer.start()
        try:
            partitions = len(await producer.partitions_for(topics.READINGS.name))
        except KafkaError:
            await producer.stop()
            raise
        group = GroupProducer(producer, partitions)
        group.start()
        ingest.producer = group
        keeper = asyncio.create_task(keep_sources(stop))
        for _ in range(100):
            if len(registry) or watcher.done():
                break
            await asyncio.sleep(0.1)
        log.info(
            "push serving",
            extra={"devices": len(registry), "sources": len(sources), "cities": cities},
        )
        try:
            yield
        finally:
            stop.set()
            ingest.producer = None
            await group.stop()
            await producer.stop()
            await asyncio.gather(watcher, keeper, return_exceptions=True)

    app = FastAPI(
        title="CityOps push ingest",
        description="Readings pushed over HTTPS by carrier IoT platforms and vendor clouds.",
        lifespan=lifespan,
    )

    @app.post("/v1/ingest/{city}/push", responses={413: {}, 401: {}, 403: {}, 429: {}, 503: {}})
    async def push(city: str, request: Request) -> Response:
        """Accept one report, an array of reports or ``{"reports": [...]}`` of a push
        source of ``city``; 200 once the readings are in Kafka. (Served by the fast
        path below; this route documents it and answers if the fast path is bypassed.)"""
        body = await request.body()
        answer = await ingest.handle(city, request.headers, body)
        return _answer_response(answer)

    @app.post(
        "/v1/ingest/{city}/{platform}/{source}",
        responses={401: {}, 403: {}, 404: {}, 413: {}, 429: {}, 503: {}},
    )
    async def platform_push(city: str, platform: str, source: str, request: Request) -> Response:
        """A carrier or video platform's push in its own format (``platform``: ctwing, ...)
        to push source ``source`` of ``city``; 200 once its readings are in Kafka and its
        bad messages dead-lettered. (Served by the fast path below.)"""
        answer = await platforms.handle(city, platform, source, await _platform_request(request))
        return _answer_response(answer)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Response:
        if ingest.producer is None:
            return _json({"status": "starting"}, 503)
        return _json({"status": "ready", "devices": len(registry), "sources": len(sources)})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def fast_path(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = PUSH_PATH.fullmatch(scope["path"])
            if match is not None:
                await _push(ingest, match[1], scope, receive, send)
                return
        if scope["type"] == "http" and scope["method"] in ("POST", "GET"):
            match = PLATFORM_PATH.fullmatch(scope["path"])
            if match is not None:
                await _platform(platforms, match, scope, receive, send)
                return
        await app(scope, receive, send)

    return fast_path


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _answer_response(answer: Answer) -> Response:
    if isinstance(answer.body, str):
        return Response(
            answer.body,
            status_code=answer.status,
            headers=dict(answer.headers),
            media_type="text/plain",
        )
    return Response(
        orjson.dumps(answer.body),
        status_code=answer.status,
        headers=dict(answer.headers),
        media_type="application/json",
    )


async def _platform_request(request: Request) -> PlatformRequest:
    return PlatformRequest(
        method=request.method,
        query=dict(request.query_params),
        headers=dict(request.headers),
        body=await request.body(),
        peer=request.client.host if request.client else None,
    )


async def _read_body(scope: dict[str, Any], receive: Any, send: Any) -> bytes | None:
    """The request's body, or None when the client left or the body is far past the
    limit (then refused unread)."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > READ_AT_MOST:
            await _answer(
                send,
                413,
                {"error": "oversize", "detail": f"a body may have {MAX_BODY_BYTES} bytes"},
                {"connection": "close"},
            )
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _push(
    ingest: PushIngest, city: str, scope: dict[str, Any], receive: Any, send: Any
) -> None:
    """``POST /v1/ingest/{city}/push`` on raw ASGI: read the body (refusing one far
    past the limit unread), hand it to the ingest, answer JSON."""
    body = await _read_body(scope, receive, send)
    if body is None:
        return
    answer = await ingest.handle(city, _headers(scope), body)
    await _answer(send, answer.status, answer.body, answer.headers)


async def _platform(
    platforms: PlatformIngest, match: re.Match[str], scope: dict[str, Any], receive: Any, send: Any
) -> None:
    """A platform's push (or its URL check) on raw ASGI."""
    body = await _read_body(scope, receive, send)
    if body is None:
        return
    client = scope.get("client")
    request = PlatformRequest(
        method=scope["method"],
        query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
        headers=_headers(scope),
        body=body,
        peer=client[0] if client else None,
    )
    answer = await platforms.handle(match[1], match[2], match[3], request)
    await _answer(send, answer.status, answer.body, answer.headers)


async def _answer(
    send: Any, status: int, body: dict[str, Any] | str, headers: Mapping[str, str]
) -> None:
    if isinstance(body, str):
        data, kind = body.encode(), b"text/plain; charset=utf-8"
    else:
        data, kind = orjson.dumps(body), b"application/json"
    raw = [
        (b"content-type", kind),
        (b"content-length", str(len(data)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
