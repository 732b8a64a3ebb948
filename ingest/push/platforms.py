"""Pushes in a platform's own format (``/v1/ingest/{city}/{platform}/{source}``): the
connector verifies and parses the request; here each message finds its device by the
ids the platform names it with, goes through the same decoder as every other way in
(vendor mappings, units, physical ranges, times), and is produced with the others of
its request, ``acks=all``; a bad message is dead-lettered with its reason while the rest
go on. A message the platform sends again (a retry) is produced once."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import Counter

from ingest.deadletter import DeadLetter
from ingest.decode import Outgoing
from ingest.errors import PayloadError
from ingest.event_codes import EventCodes
from ingest.push.answers import Answer, Refused
from ingest.push.connectors import CONNECTORS
from ingest.push.connectors.base import Connector, Message, Outcome, Request
from ingest.push.handler import (
    DEADLETTERS,
    MAX_BODY_BYTES,
    READINGS,
    REQUESTS,
    SECONDS,
    PushIngest,
)
from lifeline import topics
from lifeline.devices import Device
from lifeline.errors import RecordError
from lifeline.records import DeviceStatus, VideoEvent
from lifeline.vocabulary import VideoEventType
from store.push_sources import PushSource

log = logging.getLogger(__name__)

MESSAGES = Counter(
    "cityops_push_platform_messages_total",
    "Platform messages by platform, kind and outcome",
    ["platform", "kind", "outcome"],
)
#: Seconds a message is remembered to tell a platform's retry from a new message.
DEDUP_WINDOW_S = 3 * 3600.0
#: Messages remembered at most (the oldest are forgotten first; the store keeps a
#: reading once by its key all the same).
DEDUP_MAX = 200_000


class Recent:
    """Messages produced lately, by what the platform repeats when it retries one."""

    def __init__(self, window_s: float = DEDUP_WINDOW_S, most: int = DEDUP_MAX) -> None:
        self.window_s, self.most = window_s, most
        self.seen: OrderedDict[str, float] = OrderedDict()

    def has(self, key: str, now: float) -> bool:
        at = self.seen.get(key)
        return at is not None and now - at < self.window_s

    def add(self, keys: list[str], now: float) -> None:
        for key in keys:
            self.seen[key] = now
            self.seen.move_to_end(key)
        while self.seen and (
            len(self.seen) > self.most or now - next(iter(self.seen.values())) >= self.window_s
        ):
            self.seen.popitem(last=False)


class PlatformIngest:
    """Serves every platform connector over one :class:`PushIngest` (its registry,
    sources, decoder, rate limits, dead letters and producer)."""

    def __init__(
        self,
        push: PushIngest,
        connectors: dict[str, Connector] | None = None,
        clock: Callable[[], float] = time.time,
        codes: EventCodes | None = None,
    ) -> None:
        self.push = push
        self.connectors = CONNECTORS if connectors is None else connectors
        #: each city's table of its video platforms' event codes
        self.codes = codes if codes is not None else EventCodes.load()
        self.clock = clock
        self.recent = Recent()

    async def handle(self, city: str, platform: str, name: str, request: Request) -> Answer:
        t0 = time.perf_counter()
        outcome = "accepted"
        try:
            connector, source = self._caller(city, platform, name, request.peer)
            connector.verify(source, request)
            if request.method == "GET":
                answer = _handshake(connector, source, request)
            else:
                answer = await self._accept(
                    connector, source, request.body, request.headers.get("content-type", "")
                )
        except Refused as exc:
            answer = Answer(exc.status, {"error": exc.reason, "detail": exc.detail}, exc.headers)
            outcome = exc.reason
        REQUESTS.labels(name, outcome).inc()
        SECONDS.observe(time.perf_counter() - t0)
        return answer

    def _caller(
        self, city: str, platform: str, name: str, peer: str | None
    ) -> tuple[Connector, PushSource]:
        """The connector and the source a request is for, if it comes from one of the
        source's networks (any, unless it lists some)."""
        connector = self.connectors.get(platform)
        if connector is None:
            raise Refused(
                404,
                "unknown_platform",
                f"no connector for {platform!r}; known: {', '.join(sorted(self.connectors))}",
            )
        source = self.push.sources.by_name.get((city, name))
        if source is None or source.platform != platform:
            raise Refused(
                404,
                "unknown_source",
                f"city {city} has no {connector.title} push source named {name!r}",
            )
        if not source.admits(peer):
            raise Refused(
                403,
                "network_refused",
                f"source {name!r} takes pushes only from its platform's networks, not from {peer}",
            )
        return connector, source

    async def _accept(
        self, connector: Connector, source: PushSource, body: bytes, content_type: str = ""
    ) -> Answer:
        now = self.clock()
        received_at = datetime.fromtimestamp(now, UTC)
        topic = f"push/{source.city}/{source.name}"
        if len(body) > MAX_BODY_BYTES:
            await self.push.dead_letter(
                source, topic, body, received_at, "oversize", f"{len(body)} bytes in one body"
            )
            raise Refused(413, "oversize", f"a body may have {MAX_BODY_BYTES} bytes")
        try:
            parsed = connector.parse(body, source, content_type)
        except PayloadError as exc:
            # Dead-lettered and answered 200: the same body would fail again, and a
            # platform counts failures against the whole subscription.
            await self.push.dead_letter(source, topic, body, received_at, exc.reason, str(exc))
            MESSAGES.labels(connector.platform, "-", exc.reason).inc()
            return connector.answer(
                Outcome(0, 0, 0, 0, 1, [{"index": 0, "reason": exc.reason, "detail": str(exc)}])
            )
        records: list[Outgoing] = []
        errors: list[dict[str, Any]] = []
        fresh: list[str] = []
        duplicates = statuses = 0
        refused = [0]

        def refuse(index: int, part: Any, exc: PayloadError) -> None:
            refused[0] += 1
            DEADLETTERS.labels(source.name, exc.reason).inc()
            raw = orjson.dumps(part)
            letter = DeadLetter.of(topic, raw, received_at, exc.reason, str(exc))
            records.append(Outgoing(topics.DEADLETTER.name, topic.encode(), letter.to_json()))
            if len(errors) < 50:
                errors.append({"index": index, "reason": exc.reason, "detail": str(exc)})

        for index, (part, why) in enumerate(parsed.bad):
            refuse(index, part, why)
        for index, message in enumerate(parsed.messages, start=len(parsed.bad)):
            if message.dedup is not None and self.recent.has(f"{source.name}|{message.dedup}", now):
                duplicates += 1
                MESSAGES.labels(connector.platform, message.kind, "duplicate").inc()
                continue
            try:
                device = self._device(connector, source, message)
                out = self._records(connector, device, message, received_at)
            except PayloadError as exc:
                MESSAGES.labels(connector.platform, message.kind, exc.reason).inc()
                refuse(index, message.raw, exc)
                continue
            statuses += sum(1 for r in out if r.topic == topics.STATUS.name)
            records.extend(out)
            if message.dedup is not None:
                fresh.append(f"{source.name}|{message.dedup}")
            MESSAGES.labels(connector.platform, message.kind, "accepted").inc()
        readings = sum(1 for r in records if r.topic == topics.READINGS.name)
        wait = self.push.limits.take(source, readings) if readings else 0.0
        if wait:
            retry = max(1, int(wait + 0.999))
            raise Refused(
                429,
                "rate_limited",
                f"source {source.name!r} may push {source.rate_per_s:g} readings a second",
                {"Retry-After": str(retry)},
            )
        await self.push.produce(records)
        self.recent.add(fresh, now)
        READINGS.labels(source.name).inc(readings)
        return connector.answer(
            Outcome(
                messages=len(parsed.messages) + len(parsed.bad),
                readings=readings,
                statuses=statuses,
                duplicates=duplicates,
                dead_lettered=refused[0],
                errors=errors,
            )
        )

    def _device(self, connector: Connector, source: PushSource, message: Message) -> Device:
        registry = self.push.registry
        for ref in message.refs:
            device = registry.on_platform(source.city, source.name, ref)
            if device is not None:
                break
        else:
            named = " / ".join(message.refs)
            raise PayloadError(
                "unknown_device",
                f"{connector.device_ref} {named} is not onboarded in city {source.city}; "
                f"onboard it with transport = http, source = {source.name} and its "
                "platform_id (or imei)",
            )
        if device.transport != "http" or device.source != source.name:
            raise PayloadError(
                "not_this_source",
                f"device {device.device_id} ({message.refs[0]}) is not onboarded for push "
                f"source {source.name!r}",
            )
        return device

    def _records(
        self, connector: Connector, device: Device, message: Message, received_at: datetime
    ) -> list[Outgoing]:
        if message.kind == "ack":
            log.info(
                "platform acknowledgement",
                extra={
                    "platform": connector.platform,
                    "device_id": device.device_id,
                    "detail": message.detail,
                },
            )
            return []
        if message.kind == "status":
            return [self._status(device, message.status or "heartbeat", message, received_at)]
        if message.kind == "video":
            return [self._video(connector, device, message, received_at)]
        out: list[Outgoing] = []
        if message.kind == "event":
            log.info(
                "device event",
                extra={
                    "platform": connector.platform,
                    "city": device.city,
                    "device_id": device.device_id,
                    "detail": message.detail,
                    "content": dict(message.values),
                },
            )
            battery = _battery(message.values)
            if battery is not None:
                out.append(self._status(device, "heartbeat", message, received_at, battery))
            if not set(message.values) & set(device.metrics):
                return out
        out.extend(self._readings(connector, device, message, received_at))
        return out

    def _readings(
        self, connector: Connector, device: Device, message: Message, received_at: datetime
    ) -> list[Outgoing]:
        decoder = self.push.decoder
        if device.vendor:
            return decoder.readings_of(device, dict(message.raw), received_at, message.refs)
        values = {k: v for k, v in message.values.items() if k in device.metrics}
        if not values:
            given = ", ".join(sorted(map(str, message.values))[:12]) or "none"
            raise PayloadError(
                "no_metric",
                f"the {connector.title} message carries none of device {device.device_id}'s "
                f"metrics ({', '.join(sorted(device.metrics))}); its properties: {given}. "
                "Name the properties as the metrics, or give the device a vendor mapping",
            )
        ts = message.ts or received_at
        return decoder.readings_of(device, {"ts": ts.isoformat(), "values": values}, received_at)

    def _video(
        self, connector: Connector, device: Device, message: Message, received_at: datetime
    ) -> Outgoing:
        """A camera's event as a video event: its type from the city's code table (kept
        as ``unmapped``, with the platform's code, when the table does not name it)."""
        if device.family != "cameras":
            raise PayloadError(
                "not_a_camera",
                f"{connector.title} sent a video event for {device.device_id}, which is "
                f"onboarded as a {device.kind}, not a camera",
            )
        values = message.values
        code = str(values.get("code"))
        name = values.get("name")
        known = self.codes.lookup(device.city, connector.platform, code)
        unmapped = known.event_type is VideoEventType.UNMAPPED
        if unmapped:
            MESSAGES.labels(connector.platform, "video", "unmapped").inc()
            log.warning(
                "video event code not in the city's table",
                extra={
                    "platform": connector.platform,
                    "city": device.city,
                    "device_id": device.device_id,
                    "code": code,
                    "event_name": name,
                },
            )
            text = (
                f"{connector.title} event {code}{f' ({name})' if name else ''}: not in city "
                f"{device.city}'s event code table"
            )
        else:
            text = f"{known.name or name or known.event_type.value} ({connector.title} {code})"
        level = values.get("priority")
        # The level the platform gives the event (configured there) comes first.
        priority = (level if isinstance(level, int) else None) or known.priority or 3
        try:
            event = VideoEvent.from_dict(
                {
                    "city": device.city,
                    "camera_id": device.device_id,
                    "event_type": known.event_type,
                    "ts": message.ts or received_at,
                    "confidence": 1.0,
                    "lon": device.lon,
                    "lat": device.lat,
                    "priority": priority,
                    "snapshot_url": next(iter(values.get("pictures") or ()), None),
                    "description": text[:1000],
                    "code": code,
                    "pictures": tuple(values.get("pictures") or ()),
                }
            )
        except RecordError as exc:
            raise PayloadError("invalid_record", str(exc)) from exc
        self.push.decoder.check_time(event.ts, received_at)
        return Outgoing(topics.VIDEO.name, device.device_id.encode(), event.to_json())

    def _status(
        self,
        device: Device,
        status: str,
        message: Message,
        received_at: datetime,
        battery: float | None = None,
    ) -> Outgoing:
        try:
            record = DeviceStatus.from_dict(
                {
                    "city": device.city,
                    "device_id": device.device_id,
                    "family": device.family,
                    "status": status,
                    "ts": message.ts or received_at,
                    **({"battery_pct": battery} if battery is not None else {}),
                }
            )
        except RecordError as exc:
            raise PayloadError("invalid_record", str(exc)) from exc
        return Outgoing(topics.STATUS.name, device.device_id.encode(), record.to_json())


def _handshake(connector: Connector, source: PushSource, request: Request) -> Answer:
    answer = connector.handshake(source, request)
    if answer is None:
        raise Refused(405, "method", f"{connector.title} pushes with POST; a GET checks nothing")
    return answer


def _battery(values: Any) -> float | None:
    """A battery level in percent, where an event carries one."""
    for key in ("battery_pct", "battery_value", "Battery_Level", "battery_level"):
        value = values.get(key) if isinstance(values, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100:
            return float(value)
    return None
