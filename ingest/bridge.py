"""The MQTT → Kafka bridge.

paho-mqtt receives on its own thread with manual acknowledgement; messages cross to
the asyncio loop through a deque (one wake-up per burst, not per message), are
decoded, produced to Kafka (acks=all, idempotent), and only then acknowledged to MQTT.
Readings go to ``cityops.readings`` as batch records (:mod:`lifeline.codec`): what one
wake-up brings is grouped by the partition each device id keys to and sent to that
partition explicitly, so a burst of a thousand readings is a dozen records and a lone
reading waits for nothing.
The broker's in-flight window to the bridge is bounded by the MQTT 5 Receive Maximum,
so while Kafka is down the bridge stops acknowledging and the broker keeps the rest in
the persistent session; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest import metrics
from ingest.deadletter import DeadLetter
from ingest.decode import Outgoing, batched
from ingest.errors import PayloadError, TransportError
from lifeline import topics

log = logging.getLogger(__name__)

Decoder = Callable[[str, bytes, datetime], list[Outgoing]]
SESSION_EXPIRY_S = 7 * 24 * 3600
SHARE_GROUP = "cityops-ingest"


def subscriptions(cities: Sequence[str], shared: bool = True) -> list[str]:
    """The bridge's topic filters; shared so several bridges split the traffic."""
    filters = []
    for city in cities:
        filters += [
            f"cityops/{city}/sensors/+/up",
            f"cityops/{city}/cameras/+/event",
            f"cityops/{city}/+/+/status",
        ]
    return [f"$share/{SHARE_GROUP}/{f}" if shared else f for f in filters]


@dataclass(frozen=True)
class BridgeConfig:
    mqtt_host: str
    mqtt_port: int
    mqtt_username: str
    mqtt_password: str
    kafka_bootstrap: str
    client_id: str
    subscriptions: Sequence[str]
    receive_maximum: int = 4000
    batch_size: int = 2000


def poison_policy(exc: PayloadError) -> str:
    """What to do with a payload that failed to decode: always dead-letter it.

    Retrying cannot fix a payload, and skipping it would lose it silently.
    """
    return "deadletter"


class ReadAheadClient(mqtt.Client):
    """A paho client cut for a bridge's volume (paho-mqtt 2.1 and 2.2 internals).

    * paho reads each packet's fixed header a byte at a time, three or more system calls
      per message; this serves paho's reads from what one 64 KiB ``recv`` returned, and
      keeps paho reading while anything is buffered (the socket may have nothing more).
    * Every message goes to ``on_message``; paho would first search its per-topic
      callbacks, which a bridge does not use.
    * :meth:`ack_all` acknowledges a batch with one write, where ``ack`` queues, wakes
      the network thread and sends once per message.
    * A QoS-1 PUBLISH under MQTT 5 goes straight to ``on_inbound(topic, payload, mid,
      qos)`` when that is set: its properties are skipped, not parsed into objects (the
      bridge uses none), and no message object is built.
    """

    _ahead = b""
    _at = 0
    on_inbound: Callable[[bytes, bytes, int, int], None] | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._at >= len(self._ahead):
            data = super()._sock_recv(1 << 16)
            if not data:
                return data
            self._ahead, self._at = data, 0
        chunk = self._ahead[self._at : self._at + bufsize]
        self._at += len(chunk)
        return chunk

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._at < len(self._ahead):
            rc = super().loop_read(max_packets)
        return rc

    def _sock_close(self) -> None:
        self._ahead, self._at = b"", 0  # bytes of a closed connection mean nothing
        super()._sock_close()

    def _handle_publish(self) -> MQTTErrorCode:
        inbound = self.on_inbound
        header = self._in_packet["command"]
        if inbound is None or (header & 0x06) != 0x02 or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        data = bytes(self._in_packet["packet"])
        at = 2 + (data[0] << 8 | data[1])
        topic = data[2:at]
        mid = data[at] << 8 | data[at + 1]
        at += 2
        # The properties: a variable byte integer length, then that many bytes.
        length = shift = 0
        while True:
            byte = data[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        inbound(topic, data[at + length :], mid, 1)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, message)

    def ack_all(self, mids: Sequence[int]) -> None:
        """PUBACK every QoS-1 message of ``mids`` (manual acknowledgement), in one write."""
        if mids:
            packet = b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids])
            self._packet_queue(PUBACK, packet, 0, 0)


_PUBACK = struct.Struct("!BBH")
_READINGS = topics.READINGS.name
#: A message as the bridge holds it: topic, payload, packet id, QoS.
Inbound = tuple[str, bytes, int, int]


class Bridge:
    """One bridge: a persistent MQTT session feeding an idempotent Kafka producer."""

    def __init__(
        self,
        config: BridgeConfig,
        decode: Decoder,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        subscribe: bool = True,
    ) -> None:
        """``subscribe=False``: take over a session to empty it (see :meth:`leave`)
        without subscribing anew."""
        self.config = config
        self.decode = decode
        self.clock = clock
        self.forwarded = 0
        self.dead_lettered = 0
        #: MQTT messages handled (forwarded or dead-lettered) and acknowledged.
        self.handled = 0
        #: Whether the broker held a session for this client id at the last connect.
        self.session_present: bool | None = None
        self._subscribe = subscribe
        self._inbox: collections.deque[Inbound] = collections.deque()
        self._wake = asyncio.Event()
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = threading.Event()
        self._thread_error: BaseException | None = None
        self._client = self._make_client()
        self._producer: AIOKafkaProducer | None = None
        self._readings_partitions = topics.READINGS.partitions

    def _make_client(self) -> ReadAheadClient:
        cfg = self.config
        client = ReadAheadClient(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(cfg.mqtt_username, cfg.mqtt_password)
        client.max_inflight_messages_set(cfg.receive_maximum)
        client.max_queued_messages_set(0)
        # Retry every second, no back-off: the readings the broker queued for this
        # session while it was away flow again as soon as it is back.
        client.reconnect_delay_set(min_delay=1, max_delay=1)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_inbound = self._on_inbound
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
        self.session_present = bool(flags.session_present)
        # Subscribe on every connect, also when the broker kept the session: a broker that
        # lost a subscription (a restored session without it) gets it back at once.
        if self._subscribe and self.config.subscriptions:
            client.subscribe([(s, SubscribeOptions(qos=1)) for s in self.config.subscriptions])
        log.info("mqtt connected", extra={"session_present": flags.session_present})
        self._connected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        refused = [
            f"{topic} ({reason})"
            for topic, reason in zip(self.config.subscriptions, reasons, strict=False)
            if reason.is_failure
        ]
        if refused:
            # Nothing would ever arrive on these filters: stop with the reason.
            log.error("mqtt subscription refused", extra={"refused": refused})
            self._thread_error = TransportError(
                f"the MQTT broker refused the subscription(s) {', '.join(refused)}; check "
                "the platform account's role (cityops-platform)"
            )
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._wake.set)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        log.warning("mqtt disconnected", extra={"reason": str(reason)})

    def _on_inbound(self, topic: bytes, payload: bytes, mid: int, qos: int) -> None:
        try:
            text = topic.decode()
        except UnicodeDecodeError:
            text = "(a topic not in UTF-8)"  # decoding refuses it as a bad topic
        self._inbox.append((text, payload, mid, qos))
        if not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._wake.set)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        # The packets ``on_inbound`` does not take (QoS 0 and 2, MQTT 3.1.1).
        self._on_inbound(msg._topic, bytes(msg.payload), msg.mid, msg.qos)

    # -- asyncio side ----------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self._producer = self._new_producer()
        try:
            await self._producer.start()
            parts = await self._producer.partitions_for(topics.READINGS.name)
        except KafkaError as exc:
            await self._producer.stop()
            raise TransportError(f"Kafka at {cfg.kafka_bootstrap} unreachable: {exc}") from exc
        self._readings_partitions = len(parts)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho untyped
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

    async def stop(self, keep_session: bool = True) -> None:
        """Disconnect. With ``keep_session`` the broker keeps queueing for this client id
        (a restart picks up where it left off); without, the session ends now, so a
        bridge leaving for good holds back no messages of its share group."""
        if keep_session:
            self._client.disconnect()
        else:
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
            self._client.disconnect(properties=props)
        self._client.loop_stop()
        if self._producer is not None:
            await self._producer.stop()

    async def leave(self, quiet_s: float = 1.0) -> None:
        """Leave the share group for good and lose nothing: unsubscribe, so the broker
        routes nothing more to this session; forward what is in flight or still queued
        for it until nothing has come for ``quiet_s``; then end the session. (Ending a
        session at once would discard what the broker still holds for it.)"""
        self._subscribe = False
        if self.config.subscriptions:
            self._client.unsubscribe(list(self.config.subscriptions))
        stop = asyncio.Event()
        task = asyncio.create_task(self.run(stop))
        seen, quiet = -1, 0.0
        while quiet < quiet_s:
            await asyncio.sleep(0.1)
            if self.handled == seen and not self._inbox:
                quiet += 0.1
            else:
                seen, quiet = self.handled, 0.0
        stop.set()
        await task
        await self.stop(keep_session=False)

    async def run(self, stop: asyncio.Event) -> None:
        """Forward until ``stop`` is set, then finish the batch in hand."""
        while not stop.is_set():
            if self._thread_error is not None:
                raise self._thread_error
            if not self._inbox:
                self._wake_pending = False
                if not self._inbox:
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=0.2)
                    except TimeoutError:
                        continue
                    finally:
                        self._wake.clear()
            batch: list[Inbound] = []
            while self._inbox and len(batch) < self.config.batch_size:
                batch.append(self._inbox.popleft())
            metrics.INFLIGHT.set(len(self._inbox) + len(batch))
            await self._forward(batch)

    async def _forward(self, batch: list[Inbound]) -> None:
        t0 = time.perf_counter()
        # One clock reading per batch: its messages arrived within moments of each other.
        received_at = self.clock()
        records: list[Outgoing] = []
        bad = 0
        for topic, payload, _mid, _qos in batch:
            try:
                records.extend(self.decode(topic, payload, received_at))
            except PayloadError as exc:
                poison_policy(exc)
                bad += 1
                metrics.DEADLETTERS.labels(exc.reason).inc()
                log.info(
                    "dead-lettered",
                    extra={"mqtt_topic": topic, "reason": exc.reason, "detail": str(exc)},
                )
                letter = DeadLetter.of(topic, payload, received_at, exc.reason, str(exc))
                records.append(Outgoing(topics.DEADLETTER.name, topic.encode(), letter.to_json()))
        readings = sum(1 for r in records if r.topic == _READINGS)
        await self._produce_until_done(batched(records, self._readings_partitions))
        self.forwarded += len(records) - bad
        metrics.READINGS.inc(readings)
        self.dead_lettered += bad
        metrics.MESSAGES.labels("forwarded").inc(len(batch) - bad)
        metrics.MESSAGES.labels("deadlettered").inc(bad)
        self._client.ack_all([mid for _topic, _payload, mid, qos in batch if qos == 1])
        self.handled += len(batch)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - t0)

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.config.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=512 * 1024,
            request_timeout_ms=15000,
        )

    async def _renew_producer(self) -> None:
        """A producer whose idempotence state the broker no longer accepts (after a
        broker restart: out-of-order sequence, unknown producer id) never recovers by
        itself; a new one gets a new producer id."""
        old, self._producer = self._producer, self._new_producer()
        if old is not None:
            with contextlib.suppress(KafkaError):
                await old.stop()
        await self._producer.start()

    async def _produce_until_done(self, records: list[Outgoing]) -> None:
        """Produce every record; on Kafka errors retry with back-off, never drop.

        A retried batch may repeat records that reached Kafka before the error; the
        store's keys make those repeats harmless (at-least-once delivery).
        """
        if self._producer is None:
            raise TransportError("bridge not started")
        delay = 0.2
        while True:
            try:
                futures = [
                    await self._producer.send(
                        r.topic, value=r.value, key=r.key or None, partition=r.partition
                    )
                    for r in records
                ]
                await asyncio.gather(*futures)
                for r in records:
                    metrics.RECORDS.labels(r.topic).inc()
                return
            except KafkaError as exc:
                metrics.KAFKA_RETRIES.inc()
                log.warning("kafka produce failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                if isinstance(exc, OutOfOrderSequenceNumber | UnknownProducerId | ProducerFenced):
                    try:
                        await self._renew_producer()
                    except KafkaError as again:
                        log.warning("kafka producer renewal failed", extra={"error": repr(again)})
