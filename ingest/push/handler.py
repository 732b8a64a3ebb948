"""The push request handler: authenticates the caller (ingest key, or signature of a
named source), decodes its reports through the platform's decoder, dead-letters the bad
ones with their reason, and answers once the readings are in Kafka."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import Counter, Histogram

from ingest.adapters import VendorMapping, dig
from ingest.deadletter import DeadLetter
from ingest.decode import Decoder, Outgoing, parse_json
from ingest.errors import PayloadError
from ingest.push.answers import Answer, Refused
from ingest.push.limits import REPLAY_WINDOW_S, RateLimits, Replays
from ingest.push.producer import GroupProducer
from lifeline import signature, topics
from lifeline.registry import Registry
from store.push_sources import KEY_PREFIX, PushSource

SOURCE_HEADER = "x-cityops-source"
SIGNATURE_HEADER = signature.HEADER.lower()
MAX_BODY_BYTES = 1024 * 1024
MAX_REPORTS = 1000
#: Bytes of a body kept in its dead letter (a Kafka record holds about 1 MB).
KEEP_BYTES = 64 * 1024
#: Answers after which the same signed request may come again.
RETRY_LATER = frozenset({429, 503})

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


@dataclass(frozen=True)
class Caller:
    """An authenticated request's source, and its signature when it was signed."""

    source: PushSource
    signature: str | None = None


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
                f"body: '{SOURCE_HEADER}: <source>' and '{SIGNATURE_HEADER}: {signature.FORM}'",
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
        now = self.clock()
        try:
            given = signature.verify(
                source.hmac_secret, body, headers[SIGNATURE_HEADER], now, self.window_s
            )
        except signature.SignatureError as exc:
            raise Refused(401, exc.reason, str(exc)) from None
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
            await self.dead_letter(
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
            await self.dead_letter(source, topic, body, received_at, exc.reason, str(exc))
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
        await self.produce(records)
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

    async def dead_letter(
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
        await self.produce([Outgoing(topics.DEADLETTER.name, topic.encode(), letter.to_json())])

    async def produce(self, records: list[Outgoing]) -> None:
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
