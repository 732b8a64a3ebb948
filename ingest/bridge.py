"""The MQTT → Kafka bridge.

paho-mqtt receives on its own thread with manual acknowledgement; messages cross to
the asyncio loop through a queue, are decoded, produced to Kafka (acks=all,
idempotent), and only then acknowledged to MQTT. The broker's in-flight window to
the bridge is bounded by the MQTT 5 Receive Maximum, so when Kafka stalls the
bridge stops acknowledging and the broker holds further messages in the session.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest.deadletter import DeadLetter
from ingest.decode import Outgoing
from ingest.errors import PayloadError, TransportError
from lifeline import topics

log = logging.getLogger(__name__)

Decoder = Callable[[str, bytes, datetime], list[Outgoing]]
SESSION_EXPIRY_S = 7 * 24 * 3600


@dataclass(frozen=True)
class BridgeConfig:
    mqtt_host: str
    mqtt_port: int
    mqtt_username: str
    mqtt_password: str
    kafka_bootstrap: str
    client_id: str
    subscriptions: Sequence[str]
    receive_maximum: int = 2000
    batch_size: int = 500


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received_at: datetime


class Bridge:
    """One bridge process: a persistent MQTT session feeding an idempotent producer."""

    def __init__(
        self,
        config: BridgeConfig,
        decode: Decoder,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.decode = decode
        self.clock = clock
        self.forwarded = 0
        self.dead_lettered = 0
        self._queue: asyncio.Queue[Inbound] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = threading.Event()
        self._thread_error: BaseException | None = None
        self._client = self._make_client()
        self._producer: AIOKafkaProducer | None = None

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(cfg.mqtt_username, cfg.mqtt_password)
        client.max_inflight_messages_set(cfg.receive_maximum)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    # -- paho thread -----------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._thread_error = TransportError(f"MQTT login refused: {reason}")
            self._connected.set()
            return
        for sub in self.config.subscriptions:
            client.subscribe(sub, qos=1)
        log.info("mqtt connected", extra={"session_present": flags.session_present})
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        log.warning("mqtt disconnected", extra={"reason": str(reason)})

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        item = Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self.clock())
        assert self._loop is not None  # noqa: S101  # set before the client connects
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    # -- asyncio side ----------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=cfg.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
            compression_type=None,
        )
        try:
            await self._producer.start()
        except KafkaError as exc:
            raise TransportError(f"Kafka at {cfg.kafka_bootstrap} unreachable: {exc}") from exc
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho is untyped here
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = cfg.receive_maximum
        try:
            self._client.connect(
                cfg.mqtt_host, cfg.mqtt_port, keepalive=30, clean_start=False, properties=props
            )
        except OSError as exc:
            await self._producer.stop()
            raise TransportError(f"MQTT at {cfg.mqtt_host}:{cfg.mqtt_port}: {exc}") from exc
        self._client.loop_start()
        await asyncio.get_running_loop().run_in_executor(None, self._connected.wait, 15)
        if self._thread_error is not None:
            await self.stop()
            raise self._thread_error

    async def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        if self._producer is not None:
            await self._producer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Forward until ``stop`` is set."""
        while not stop.is_set():
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout=0.2)
            except TimeoutError:
                continue
            batch = [first]
            while len(batch) < self.config.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._forward(batch)

    async def _forward(self, batch: list[Inbound]) -> None:
        records: list[Outgoing] = []
        for item in batch:
            try:
                records.extend(self.decode(item.topic, item.payload, item.received_at))
            except PayloadError as exc:
                self.dead_lettered += 1
                log.info(
                    "dead-lettered",
                    extra={"mqtt_topic": item.topic, "reason": exc.reason, "detail": str(exc)},
                )
                letter = DeadLetter.of(
                    item.topic, item.payload, item.received_at, exc.reason, str(exc)
                )
                records.append(
                    Outgoing(topics.DEADLETTER.name, item.topic.encode(), letter.to_json())
                )
        await self._produce_until_done(records)
        self.forwarded += len(records)
        for item in batch:
            if item.qos > 0:
                self._client.ack(item.mid, item.qos)

    async def _produce_until_done(self, records: list[Outgoing]) -> None:
        """Produce every record; on Kafka errors retry with back-off, never drop."""
        assert self._producer is not None  # noqa: S101  # start() ran
        delay = 0.2
        while True:
            try:
                futures = [
                    await self._producer.send(r.topic, value=r.value, key=r.key) for r in records
                ]
                await asyncio.gather(*futures)
                return
            except KafkaError as exc:
                log.warning("kafka produce failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
