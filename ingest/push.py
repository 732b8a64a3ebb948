"""HTTPS push ingest: readings pushed by carrier IoT platforms and vendor clouds.

``POST /v1/ingest/{city}/push`` takes one report (a JSON object), a JSON array of
reports, or ``{"reports": [...]}``. The caller is a *push source* of that city
(``cityops push source create``) and proves it with either

* ``Authorization: Bearer cpk_<id>.<secret>`` (its ingest key), or
* ``X-CityOps-Source: <name>`` and ``X-CityOps-Signature: t=<unix seconds>,v1=<hex>``,
  where ``v1`` is HMAC-SHA256 with the source's secret of ``"<t>." + body``; ``t`` must
  be within the replay window of the platform's clock, and a signature is accepted once.

Each report names its device (``device_id``, or where the source's vendor mapping says);
the device must be onboarded in that city with ``transport = http`` and this source.
Reports go through the same decoder as MQTT messages (vendor mappings, units, physical
ranges, times); a bad report is dead-lettered with its reason and listed in the answer,
the others go on. Readings are produced as batch records, ``acks=all``: a 2xx answer
means they are in Kafka. Retries are idempotent: the store keeps a reading once by its
key (device, metric, time).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram

from ingest.adapters import VendorMapping, dig
from ingest.deadletter import DeadLetter
from ingest.decode import Decoder, Outgoing, batched, parse_json
from ingest.errors import PayloadError
from lifeline import topics
from lifeline.registry import Registry
from store.push_sources import KEY_PREFIX, PushSource

log = logging.getLogger(__name__)

SOURCE_HEADER = "x-cityops-source"
SIGNATURE_HEADER = "x-cityops-signature"
#: Seconds a signature's time may differ from the platform's clock.
REPLAY_WINDOW_S = 300
MAX_BODY_BYTES = 1024 * 1024
MAX_REPORTS = 1000
#: Bytes of a body kept in its dead letter (a Kafka record holds about 1 MB).
KEEP_BYTES = 64 * 1024
#: Answers after which the same signed request may come again.
RETRY_LATER = frozenset({429, 503})
#: Seconds to wait for Kafka's acknowledgement before answering 503.
PRODUCE_TIMEOUT_S = 10.0

REQUESTS = Counter(
    "cityops_push_requests_total", "Push requests by source and outcome", ["source", "outcome"]
)
READINGS = Counter(
    "cityops_push_readings_total", "Readings accepted into cityops.readings", ["source"]
)
DEADLETTERS = Counter(
    "cityops_push_deadletters_total", "Pushed reports dead-lettered", ["source", "reason"]
)
SECONDS = Histogram(
    "cityops_push_request_seconds",
    "Time from a request's body to its answer",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    """The ``X-CityOps-Signature`` value of ``body`` signed at ``at`` (default: now)."""
    t = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


class Refused(Exception):
    """The request is refused whole: ``status`` with ``reason`` and a ``detail``."""

    def __init__(
        self, status: int, reason: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail
        self.headers = dict(headers or {})


class Sources:
    """The push sources of the served cities, by key id and by (city, name)."""

    def __init__(self, sources: list[PushSource] | None = None) -> None:
        self.by_key: dict[str, PushSource] = {}
        self.by_name: dict[tuple[str, str], PushSource] = {}
        self.replace(sources or [])

    def replace(self, sources: list[PushSource]) -> None:
        self.by_key = {s.key_id: s for s in sources}
        self.by_name = {(s.city, s.name): s for s in sources}

    def __len__(self) -> int:
        return len(self.by_key)


class RateLimits:
    """A token bucket per source: ``rate_per_s`` readings a second, a second's burst."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def take(self, source: PushSource, readings: int) -> float:
        """0 when ``readings`` may pass (and are taken), else seconds until they may. A
        batch larger than a second's worth passes when the bucket is full and leaves it
        in debt, so the source's average stays within its rate."""
        now = self.clock()
        key = (source.city, source.name)
        tokens, at = self.buckets.get(key, (source.rate_per_s, now))
        tokens = min(source.rate_per_s, tokens + (now - at) * source.rate_per_s)
        need = min(float(readings), source.rate_per_s)
        if tokens >= need:
            self.buckets[key] = (tokens - readings, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (need - tokens) / source.rate_per_s


class Replays:
    """Signatures of requests answered within the replay window: each is answered once
    (a request refused with 429 or 503 is not answered yet: the same one may come again)."""

    def __init__(self, window_s: float = REPLAY_WINDOW_S) -> None:
        self.window_s = window_s
        self.seen: dict[str, float] = {}
        self._pruned = 0.0

    def answered(self, signature: str, now: float) -> bool:
        if now - self._pruned > 10:
            self.seen = {s: t for s, t in self.seen.items() if t > now - 2 * self.window_s}
            self._pruned = now
        return signature in self.seen

    def remember(self, signature: str, now: float) -> None:
        self.seen[signature] = now


@dataclass(frozen=True)
class Caller:
    """An authenticated request's source, and its signature when it was signed."""

    source: PushSource
    signature: str | None = None


class GroupProducer:
    """Records of requests that arrive together go to Kafka together. Each request adds
    its records and waits; a flush each loop pass joins the readings of every waiting
    request into batch records (one per partition) and sends them, and each request is
    answered once Kafka has acknowledged its flush (``acks=all``). A thousand single
    reports in flight cost a few Kafka records, not a thousand; a failed flush fails
    exactly the requests it carried."""

    def __init__(self, producer: AIOKafkaProducer, partitions: int) -> None:
        self.producer = producer
        self.partitions = partitions
        self._records: list[Outgoing] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._settling: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._settling, return_exceptions=True)
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(_unavailable("the push endpoint is shutting down"))

    async def send(self, records: list[Outgoing]) -> None:
        """Return once ``records`` are in Kafka; raise ``Refused`` (503) otherwise."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._records.extend(records)
        self._waiting.append(waiter)
        self._wake.set()
        await waiter

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # the requests ready in this pass add theirs
            records, waiting = self._records, self._waiting
            self._records, self._waiting = [], []
            try:
                futures = [
                    await self.producer.send(
                        r.topic, value=r.value, key=r.key or None, partition=r.partition
                    )
                    for r in batched(records, self.partitions)
                ]
            except KafkaError as exc:
                _fail(waiting, exc)
                continue
            task = asyncio.create_task(self._settle(futures, waiting))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    async def _settle(self, futures: list[Any], waiting: list[asyncio.Future[None]]) -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*futures), PRODUCE_TIMEOUT_S)
        except (KafkaError, TimeoutError) as exc:
            _fail(waiting, exc)
            return
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)


def _unavailable(detail: str) -> Refused:
    return Refused(503, "unavailable", detail, {"Retry-After": "5"})


def _fail(waiting: list[asyncio.Future[None]], exc: BaseException) -> None:
    log.warning("push produce failed", extra={"error": repr(exc)})
    for waiter in waiting:
        if not waiter.done():
            waiter.set_exception(
                _unavailable(
                    "the readings could not be stored in Kafka just now; retry the same reports"
                )
            )


class PushIngest:
    """Authenticates, decodes and produces pushed reports; one per process."""

    def __init__(
        self,
        registry: Registry,
        sources: Sources,
        decoder: Decoder,
        vendors: Mapping[str, VendorMapping],
        clock: Callable[[], float] = time.time,
        window_s: float = REPLAY_WINDOW_S,
    ) -> None:
        self.registry = registry
        self.sources = sources
        self.decoder = decoder
        self.vendors = vendors
        self.producer: GroupProducer | None = None
        self.clock = clock
        self.window_s = window_s
        self.limits = RateLimits()
        self.replays = Replays(window_s)

    async def handle(self, city: str, headers: Mapping[str, str], body: bytes) -> Answer:
        t0 = time.perf_counter()
        caller: Caller | None = None
        try:
            caller = self.authenticate(city, headers, body)
            answer = await self._accept(caller.source, body)
        except Refused as exc:
            answer = Answer(exc.status, {"error": exc.reason, "detail": exc.detail}, exc.headers)
            outcome = exc.reason
        else:
            outcome = "accepted"
        if caller is not None and caller.signature and answer.status not in RETRY_LATER:
            self.replays.remember(caller.signature, self.clock())
        REQUESTS.labels(caller.source.name if caller else "-", outcome).inc()
        SECONDS.observe(time.perf_counter() - t0)
        return answer

    # -- authentication -----------------------------------------------------------------

    def authenticate(self, city: str, headers: Mapping[str, str], body: bytes) -> Caller:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            caller = Caller(self._by_key(auth[7:].strip()))
        elif SIGNATURE_HEADER in headers:
            caller = self._by_signature(city, headers, body)
        else:
            raise Refused(
                401,
                "unauthenticated",
                "send the source's ingest key as 'Authorization: Bearer cpk_…', or sign the "
                f"body: '{SOURCE_HEADER}: <source>' and '{SIGNATURE_HEADER}: t=<unix "
                "seconds>,v1=<hex HMAC-SHA256 of \"<t>.\" + body with the source's secret>'",
                {"WWW-Authenticate": 'Bearer realm="cityops-push"'},
            )
        source = caller.source
        if source.city != city:
            raise Refused(
                403,
                "wrong_city",
                f"source {source.name!r} belongs to city {source.city}, not {city}",
            )
        return caller

    def _by_key(self, token: str) -> PushSource:
        key_id, _, secret = token.removeprefix(KEY_PREFIX).partition(".")
        source = self.sources.by_key.get(key_id) if token.startswith(KEY_PREFIX) else None
        if source is None or not source.key_matches(secret):
            raise Refused(401, "bad_key", "the ingest key is unknown, wrong or revoked")
        return source

    def _by_signature(self, city: str, headers: Mapping[str, str], body: bytes) -> Caller:
        name = headers.get(SOURCE_HEADER, "")
        source = self.sources.by_name.get((city, name))
        if source is None:
            raise Refused(401, "unknown_source", f"city {city} has no push source named {name!r}")
        parts = dict(p.strip().partition("=")[::2] for p in headers[SIGNATURE_HEADER].split(","))
        try:
            t = int(parts.get("t", ""))
        except ValueError:
            raise Refused(
                401, "bad_signature", f"{SIGNATURE_HEADER} must be 't=<unix seconds>,v1=<hex>'"
            ) from None
        given = parts.get("v1", "")
        expected = sign(source.hmac_secret, body, t).partition(",v1=")[2]
        if not hmac.compare_digest(given, expected):
            raise Refused(
                401,
                "bad_signature",
                'the signature does not match the body: HMAC-SHA256 of "<t>." + the exact '
                "body bytes, with the source's secret, in lower-case hex",
            )
        now = self.clock()
        if abs(now - t) > self.window_s:
            raise Refused(
                401,
                "stale_signature",
                f"signed at {t}, {abs(now - t):.0f} s from the platform's clock (window "
                f"{self.window_s:.0f} s); sign each attempt when it is sent",
            )
        if self.replays.answered(given, now):
            raise Refused(
                409,
                "replayed",
                "this signed request was already answered; a retry must be signed again "
                "(its readings are kept once however often they come)",
            )
        return Caller(source, given)

    # -- reports ------------------------------------------------------------------------

    async def _accept(self, source: PushSource, body: bytes) -> Answer:
        received_at = datetime.fromtimestamp(self.clock(), UTC)
        topic = f"push/{source.city}/{source.name}"
        if len(body) > MAX_BODY_BYTES:
            await self._dead_letter(
                source, topic, body, received_at, "oversize", f"{len(body)} bytes in one body"
            )
            raise Refused(
                413,
                "oversize",
                f"the body has {len(body)} bytes, more than {MAX_BODY_BYTES}; send fewer "
                "reports a request",
            )
        try:
            reports = _reports(parse_json(body))
        except PayloadError as exc:
            await self._dead_letter(source, topic, body, received_at, exc.reason, str(exc))
            raise Refused(400, exc.reason, str(exc)) from None
        records: list[Outgoing] = []
        errors: list[dict[str, Any]] = []
        bad = 0
        for index, report in enumerate(reports):
            try:
                records.extend(self._decode(source, report, received_at))
            except PayloadError as exc:
                bad += 1
                raw = orjson.dumps(report)
                DEADLETTERS.labels(source.name, exc.reason).inc()
                letter = DeadLetter.of(topic, raw, received_at, exc.reason, str(exc))
                records.append(Outgoing(topics.DEADLETTER.name, topic.encode(), letter.to_json()))
                if len(errors) < 50:
                    errors.append({"index": index, "reason": exc.reason, "detail": str(exc)})
        readings = sum(1 for r in records if r.topic == topics.READINGS.name)
        wait = self.limits.take(source, readings) if readings else 0.0
        if wait:
            retry = max(1, int(wait + 0.999))
            raise Refused(
                429,
                "rate_limited",
                f"source {source.name!r} may push {source.rate_per_s:g} readings a second; "
                f"retry in {retry} s",
                {"Retry-After": str(retry)},
            )
        await self._produce(records)
        READINGS.labels(source.name).inc(readings)
        return Answer(
            200,
            {
                "reports": len(reports),
                "readings": readings,
                "dead_lettered": bad,
                "errors": errors,
            },
        )

    def _decode(self, source: PushSource, report: Any, received_at: datetime) -> list[Outgoing]:
        if not isinstance(report, dict):
            raise PayloadError("bad_shape", "a report is a JSON object")
        mapping = self.vendors.get(source.vendor) if source.vendor else None
        path = mapping.device_id if mapping is not None and mapping.device_id else "device_id"
        device_id = dig(report, path)
        if not isinstance(device_id, str | int) or isinstance(device_id, bool):
            raise PayloadError("bad_shape", f"a report names its device at {path!r}")
        device = self.registry.get(source.city, str(device_id))
        if device is None or device.family != "sensors":
            raise PayloadError(
                "unknown_device",
                f"sensor {device_id!r} is not onboarded in city {source.city}; onboard it "
                f"with transport = http and source = {source.name}",
            )
        if device.transport != "http" or device.source != source.name:
            raise PayloadError(
                "not_this_source",
                f"device {device_id!r} is not onboarded for push source {source.name!r}",
            )
        if not device.vendor and "metric" in report:
            # A canonical reading: the path names the city, the device its unit.
            unit = device.metrics.get(str(report["metric"]))
            report = {"city": source.city, **({"unit": unit} if unit else {}), **report}
        return self.decoder.readings_of(device, report, received_at)

    async def _dead_letter(
        self,
        source: PushSource,
        topic: str,
        body: bytes,
        received_at: datetime,
        reason: str,
        detail: str,
    ) -> None:
        DEADLETTERS.labels(source.name, reason).inc()
        letter = DeadLetter.of(topic, body[:KEEP_BYTES], received_at, reason, detail)
        letter = letter.model_copy(update={"size": len(body)})
        await self._produce([Outgoing(topics.DEADLETTER.name, topic.encode(), letter.to_json())])

    async def _produce(self, records: list[Outgoing]) -> None:
        if not records:
            return
        if self.producer is None:
            raise Refused(503, "unavailable", "Kafka is not connected", {"Retry-After": "5"})
        await self.producer.send(records)


def _reports(data: Any) -> list[Any]:
    if isinstance(data, dict) and isinstance(data.get("reports"), list):
        data = data["reports"]
    reports = data if isinstance(data, list) else [data]
    if not reports:
        raise PayloadError("bad_shape", "the body carries no report")
    if len(reports) > MAX_REPORTS:
        raise PayloadError(
            "oversize", f"{len(reports)} reports in one body, more than {MAX_REPORTS}"
        )
    return reports
