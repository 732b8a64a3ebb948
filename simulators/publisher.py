"""Publishing over MQTT as a device does: one class for one connection
(``DevicePublisher``), used by the simulator, replay, the benchmarks and the drills, and
``Publishers`` for a whole city of them on one selector.

Every connection is MQTT 5 with QoS 1 and a bounded window of messages in flight (paho
fails past 65,535 unacknowledged ones), keeps the broker's PUBACK reason code of each
message it is asked to wait for, and reconnects with back-off when the broker goes away.
"""

from __future__ import annotations

import contextlib
import csv
import selectors
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tqdm import tqdm

from simulators.errors import SimulationError


class PublishError(SimulationError):
    """A device could not connect or was refused by the broker; the message says which
    and what to check."""


@dataclass(frozen=True)
class Broker:
    """Where to connect, and as whom (the platform's account unless a device's own)."""

    host: str
    port: int
    username: str = ""
    password: str = ""

    def as_account(self, username: str, password: str) -> Broker:
        return Broker(self.host, self.port, username, password)


def acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether the broker acknowledged a QoS 1 message. ``is_published()`` raises for a
    message first queued while disconnected, even once it has gone out and been
    acknowledged, so the flag it guards is read directly."""
    return bool(getattr(info, "_published", False))


def unacknowledged(
    infos: Sequence[mqtt.MQTTMessageInfo], timeout_s: float, serve: Callable[[], None]
) -> int:
    """Call ``serve`` until the broker has acknowledged ``infos`` or ``timeout_s`` is up;
    how many are still not acknowledged."""
    deadline = time.monotonic() + timeout_s
    pending = [i for i in infos if not acknowledged(i)]
    while pending and time.monotonic() < deadline:
        serve()
        pending = [i for i in pending if not acknowledged(i)]
    return len(pending)


class DevicePublisher:
    """One MQTT connection publishing as one account.

    ``connect()`` starts paho's network thread and waits for the broker's answer;
    ``connect(loop=False)`` leaves the socket to the caller (``Publishers`` serves
    thousands on one selector). With ``session_expiry_s`` the broker keeps the session
    (and so the unacknowledged messages) across a reconnect.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        client_id: str = "",
        inflight: int = 100,
        session_expiry_s: int | None = None,
    ) -> None:
        self.broker = broker
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        self.client.max_inflight_messages_set(inflight)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self._expiry = session_expiry_s
        self.connected = threading.Event()
        self.refused: str | None = None
        self._done = threading.Condition()
        self._codes: dict[int, int] = {}
        self._keep_codes = False  # set by the first publish_acked
        self._threaded = False

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            self.connected.clear()
        else:
            self.refused = None
            self.connected.set()

    def _on_publish(self, _c: object, _u: object, mid: int, rc: object, _p: object) -> None:
        if self._keep_codes:
            with self._done:
                self._codes[mid] = int(getattr(rc, "value", 0))
                self._done.notify_all()

    def connect(self, *, loop: bool = True, timeout_s: float = 10.0) -> DevicePublisher:
        props = None
        if self._expiry is not None:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho untyped
            props.SessionExpiryInterval = self._expiry
        try:
            self.client.connect(
                self.broker.host,
                self.broker.port,
                keepalive=60,
                clean_start=self._expiry is None,
                properties=props,
            )
        except OSError as exc:
            who = self.broker.username or "the platform"
            raise PublishError(f"{who} could not connect to MQTT: {exc}") from exc
        if loop:
            self._threaded = True
            self.client.loop_start()
            if not self.connected.wait(timeout_s) or self.refused:
                self.close()
                raise PublishError(
                    f"{self.broker.username or 'the platform'} was not let in by the broker"
                    f" at {self.broker.host}:{self.broker.port}: {self.refused or 'no answer'}"
                )
        return self

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos)

    def publish_acked(self, topic: str, payload: bytes | str, timeout_s: float = 10.0) -> int:
        """Publish one message at QoS 1 and wait for the broker's answer: its PUBACK
        reason code (0 accepted, 0x87 not authorised, …), or -1 if none came in time.
        For probing one message at a time; a stream of messages goes by ``publish``."""
        self._keep_codes = True
        info = self.client.publish(topic, payload, qos=1)
        with self._done:
            got = self._done.wait_for(
                lambda: acknowledged(info) and info.mid in self._codes, timeout=timeout_s
            )
            code = self._codes.pop(info.mid, -1)
        return code if got else -1

    def wait(self, infos: Sequence[mqtt.MQTTMessageInfo], timeout_s: float = 30.0) -> int:
        """Wait until the broker has acknowledged ``infos``; how many are still not."""
        return unacknowledged(infos, timeout_s, lambda: time.sleep(0.01))

    def close(self) -> None:
        self.client.disconnect()
        if self._threaded:
            self.client.loop_stop()
            self._threaded = False

    def __enter__(self) -> DevicePublisher:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


def end_session(broker: Broker, client_id: str) -> None:
    """Drop the broker's persistent session of ``client_id`` (its queued messages go)."""
    pub = DevicePublisher(broker, client_id=client_id)
    pub.connect()
    pub.close()


# --- a city of devices --------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    username: str
    password: str
    topic: str


def read_credentials(path: Path, city: str) -> dict[str, Credential]:
    """The MQTT accounts of ``city``'s devices from the CSV ``cityops onboard`` exports."""
    creds = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("city") == city:
                creds[row["device_id"]] = Credential(
                    row["mqtt_username"], row["mqtt_password"], row["publish_topic"]
                )
    if not creds:
        raise PublishError(f"{path} has no credentials for city {city}; onboard the city first")
    return creds


class Publishers:
    """One ``DevicePublisher`` per device, with that device's own credentials, all served
    by the calling thread over one epoll selector: a city has thousands of devices, more
    than a network thread per connection (or ``select``, limited to 1,024 descriptors)
    will carry. Connections that drop are reconnected."""

    def __init__(self, broker: Broker, creds: dict[str, Credential]) -> None:
        self.creds = creds
        self.devices: dict[str, DevicePublisher] = {}
        self._broker = broker
        self.refused: list[str] = []
        self.sent = 0
        self._selector = selectors.DefaultSelector()
        self._sockets: dict[str, Any] = {}
        self._lost: set[str] = set()
        self._misc_at = 0.0

    def connect(self, devices: Sequence[str], show_progress: bool, timeout_s: float = 60.0) -> None:
        bar = tqdm(
            total=len(devices), desc="connect devices", unit="device", disable=not show_progress
        )
        for device_id in devices:
            cred = self.creds.get(device_id)
            if cred is None:
                self.refused.append(device_id)
                bar.update()
                continue
            pub = DevicePublisher(
                self._broker.as_account(cred.username, cred.password),
                client_id=f"sim-{cred.username}",
            )
            try:
                pub.connect(loop=False)
            except PublishError as exc:
                raise PublishError(f"device {device_id}: {exc}") from exc
            self.devices[device_id] = pub
            self._watch(device_id)
            self.pump(0)
            bar.update()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not all(
            p.connected.is_set() or p.refused for p in self.devices.values()
        ):
            self.pump(0.05)
        bar.close()
        refused = sorted(d for d, p in self.devices.items() if p.refused)
        if refused:
            raise PublishError(
                f"device {refused[0]} refused by the broker: {self.devices[refused[0]].refused}"
                f" ({len(refused)} in all); check their credentials (cityops onboard exports"
                " them)"
            )
        waiting = sorted(d for d, p in self.devices.items() if not p.connected.is_set())
        if waiting:
            raise PublishError(
                f"{len(waiting)} device(s) were not let in by the broker, e.g. {waiting[:3]}; "
                "check their credentials (cityops onboard exports them)"
            )

    def _watch(self, device_id: str) -> None:
        sock = self.devices[device_id].client.socket()
        if sock is not None:
            self._selector.register(sock, selectors.EVENT_READ, device_id)
            self._sockets[device_id] = sock

    def _drop(self, device_id: str) -> None:
        sock = self._sockets.pop(device_id, None)
        if sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
        self.devices[device_id].connected.clear()
        self._lost.add(device_id)

    def pump(self, timeout: float) -> None:
        """Read what has arrived (acknowledgements), write what is pending, keep the
        connections alive, reconnect lost ones; waits up to ``timeout`` for input."""
        for key, _events in self._selector.select(timeout) if self._sockets else ():
            device_id = key.data
            if self.devices[device_id].client.loop_read(100) != mqtt.MQTT_ERR_SUCCESS:
                self._drop(device_id)
        for device_id, pub in self.devices.items():
            writable = device_id in self._sockets and pub.client.want_write()
            if writable and pub.client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
                self._drop(device_id)
        now = time.monotonic()
        if now - self._misc_at >= 1.0:
            self._misc_at = now
            for device_id, pub in self.devices.items():
                if device_id in self._sockets and pub.client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                    self._drop(device_id)
            for device_id in list(self._lost):
                try:
                    self.devices[device_id].client.reconnect()
                except OSError:
                    continue
                self._lost.discard(device_id)
                self._watch(device_id)

    def publish(self, device_id: str, payload: bytes) -> mqtt.MQTTMessageInfo | None:
        """On the device's own topic; None for a device the broker did not let in."""
        if device_id not in self.devices:
            return None
        return self.publish_to(device_id, self.creds[device_id].topic, payload)

    def publish_to(self, device_id: str, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        self.sent += 1
        return self.devices[device_id].publish(topic, payload)

    def wait(self, infos: Sequence[mqtt.MQTTMessageInfo], timeout_s: float = 30.0) -> int:
        """Serve the connections until the broker has acknowledged ``infos`` (QoS 1), at
        most ``timeout_s``; returns how many are still unacknowledged."""
        return unacknowledged(infos, timeout_s, lambda: self.pump(0.01))

    def idle(self, seconds: float, stop: threading.Event) -> bool:
        """Serve the connections for ``seconds`` (acknowledgements, keep-alive); True
        as soon as ``stop`` is set."""
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.pump(min(left, 0.2))
        return True

    def close(self) -> None:
        for device_id, pub in self.devices.items():
            if device_id in self._sockets:
                pub.close()
        self.pump(0)
        self._selector.close()
