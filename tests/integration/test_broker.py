"""The device broker (Mosquitto 2.1, persist-sqlite, dynamic security): accounts change
live without a reload, acknowledged messages of persistent sessions — also of shared
subscriptions — survive a restart and a kill -9, devices reach it over TLS with a
password or a client certificate, and a device without either is refused."""

from __future__ import annotations

import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from cityops.onboard import broker_admin
from cityops.settings import Settings
from cityops.stack import Stack, mosquitto_build
from cityops.stack.kafka import default_cache_dir
from cityops.stack.mosquitto import Mosquitto, mqtt_login
from ingest.broker_accounts import DeviceAccount
from ingest.pki import ensure_ca, issue_client_cert

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 135


@dataclass
class City:
    code: str
    settings: Settings
    passwords: dict[str, str]

    def account(self, device: str) -> DeviceAccount:
        return DeviceAccount(self.code, device, "sensors")


@pytest.fixture
def city(live_stack: Settings) -> Iterator[City]:
    code = f"38{secrets.randbelow(9000) + 1000:04d}"
    passwords = {d: secrets.token_urlsafe(12) for d in ("d1", "d2")}
    accounts = [(DeviceAccount(code, d, "sensors"), pw) for d, pw in passwords.items()]
    with broker_admin(live_stack) as admin:
        assert admin.put_devices(accounts) == 2
    yield City(code, live_stack, passwords)
    with broker_admin(live_stack) as admin:
        admin.delete_devices([a for a, _ in accounts])


@pytest.fixture
def broker(live_stack: Settings) -> Mosquitto:
    return Stack.from_settings(live_stack).mqtt


class Client:
    """A paho MQTT 5 client that records PUBACK reason codes and received messages."""

    def __init__(
        self,
        settings: Settings,
        user: str,
        password: str,
        client_id: str = "",
        persistent: bool = False,
    ) -> None:
        self.acks: dict[int, int] = {}
        self.received: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(user, password)
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._note("subscribed")
        self.client.on_connect = lambda *a: self._note("connected")
        self.client.on_disconnect = lambda *a: self._note("disconnected")
        self.events: list[str] = []
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if persistent:
            props.SessionExpiryInterval = 3600
        self.client.connect(
            settings.mqtt_host,
            settings.mqtt_port,
            clean_start=not persistent,
            properties=props,
        )
        self.client.loop_start()
        self.wait(lambda: "connected" in self.events)

    def _note(self, event: str) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def _on_publish(
        self, client: object, userdata: object, mid: int, rc: object, p: object
    ) -> None:
        with self.cond:
            self.acks[mid] = int(getattr(rc, "value", 0))
            self.cond.notify_all()

    def _on_message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.received.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def wait(self, check: object, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(check, timeout=timeout)  # type: ignore[arg-type]

    def subscribe(self, topic: str) -> None:
        n = self.events.count("subscribed")
        self.client.subscribe([(topic, SubscribeOptions(qos=1))])
        assert self.wait(lambda: self.events.count("subscribed") > n)

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.client.publish(topic, payload, qos=1)
        assert self.wait(lambda: info.mid in self.acks), f"no PUBACK for {topic}"
        return self.acks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def platform(settings: Settings, **kw: object) -> Client:
    return Client(settings, settings.mqtt_username, settings.mqtt_password.get_secret_value(), **kw)  # type: ignore[arg-type]


def test_a_device_publishes_only_its_own_topics(city: City) -> None:
    watcher = platform(city.settings)
    watcher.subscribe(f"cityops/{city.code}/#")
    device = Client(city.settings, city.account("d1").username, city.passwords["d1"])
    try:
        assert device.publish(f"cityops/{city.code}/sensors/d1/up", b"own") == 0
        assert device.publish(f"cityops/{city.code}/sensors/d1/status", b"online") == 0
        for foreign in (
            f"cityops/{city.code}/sensors/d2/up",
            f"cityops/{city.code}/cameras/d1/event",
            "cityops/320100/sensors/d1/up",
            "$SYS/broker/uptime",
        ):
            assert device.publish(foreign, b"foreign") == NOT_AUTHORIZED, foreign
        assert watcher.wait(lambda: len(watcher.received) >= 2)
        time.sleep(0.5)
        assert sorted(p for _t, p in watcher.received) == [b"online", b"own"]
    finally:
        device.close()
        watcher.close()


def test_accounts_are_rotated_and_revoked_live_without_restarting_the_broker(
    city: City, broker: Mosquitto
) -> None:
    pid = broker.pid()
    user = city.account("d1").username
    host, port = city.settings.mqtt_host, city.settings.mqtt_port
    assert mqtt_login(host, port, user, city.passwords["d1"]) == 0
    connected = Client(city.settings, user, city.passwords["d1"])
    new_password = secrets.token_urlsafe(12)
    with broker_admin(city.settings) as admin:
        assert admin.put_devices([(city.account("d1"), new_password)]) == 0
        assert mqtt_login(host, port, user, city.passwords["d1"]) != 0
        assert mqtt_login(host, port, user, new_password) == 0
        admin.delete_devices([city.account("d1")])
        # A revoked device is cut off at once, and cannot log in again.
        assert connected.wait(lambda: "disconnected" in connected.events)
        assert mqtt_login(host, port, user, new_password) != 0
        assert user not in admin.usernames(f"{city.code}.")
    connected.close()
    assert broker.pid() == pid


@pytest.mark.parametrize("how", ["restart", "kill -9"])
@pytest.mark.parametrize("shared", [False, True])
def test_acknowledged_messages_wait_for_a_persistent_subscriber_across_a_broker_outage(
    city: City, broker: Mosquitto, how: str, shared: bool
) -> None:
    """What the broker acknowledged while the subscriber was away is delivered when it
    returns, though the broker went down in between (restarted, or killed -9 after the
    pass of its loop that committed them: the crash window the README states)."""
    topic = f"cityops/{city.code}/sensors/+/up"
    filter_ = f"$share/it-{secrets.token_hex(3)}/{topic}" if shared else topic
    client_id = f"it-sub-{secrets.token_hex(4)}"
    sub = platform(city.settings, client_id=client_id, persistent=True)
    sub.subscribe(filter_)
    sub.close()
    device = Client(city.settings, city.account("d2").username, city.passwords["d2"])
    payloads = [f"r{i}".encode() for i in range(50)]
    for p in payloads:
        assert device.publish(f"cityops/{city.code}/sensors/d2/up", p) == 0
    device.close()
    if how == "restart":
        broker.down()
    else:
        time.sleep(0.5)  # past the loop pass that committed the last of them
        broker.kill()
    broker.up(lambda _m: None)
    sub = platform(city.settings, client_id=client_id, persistent=True)
    try:
        assert sub.wait(lambda: len(sub.received) >= len(payloads), timeout=45), (
            f"{len(sub.received)} of {len(payloads)} delivered"
        )
        assert sorted(p for _t, p in sub.received) == sorted(payloads)
    finally:
        sub.client.unsubscribe(filter_)
        time.sleep(0.2)
        sub.close()


# -- TLS ----------------------------------------------------------------------------


def _mosquitto_pub(*args: str) -> subprocess.CompletedProcess[str]:
    install = mosquitto_build.ensure(default_cache_dir(), lambda _m: None)
    return subprocess.run(
        [str(install.client("mosquitto_pub")), "-V", "5", "-q", "1", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _listen(settings: Settings, which: str) -> tuple[str, str]:
    host, port = getattr(settings, which).rsplit(":", 1)
    return ("127.0.0.1" if host in ("0.0.0.0", "") else host), port  # noqa: S104


def test_devices_reach_the_broker_over_tls_with_a_password_or_a_client_certificate(
    city: City, tmp_path: Path
) -> None:
    """mosquitto_pub (not paho) over TLS: with a password, with a client certificate; a
    wrong password, a certificate of another CA, no certificate, or no TLS are refused."""
    settings = city.settings
    ca = str(settings.tls_dir / "ca.crt")
    tls_host, tls_port = _listen(settings, "mqtt_tls_listen")
    cert_host, cert_port = _listen(settings, "mqtt_cert_listen")
    user = city.account("d1").username
    own = f"cityops/{city.code}/sensors/d1/up"
    watcher = platform(settings)
    watcher.subscribe(f"cityops/{city.code}/#")

    authority = ensure_ca(settings.tls_dir)
    cert, key = issue_client_cert(authority, user)
    (tmp_path / "d1.crt").write_bytes(cert)
    (tmp_path / "d1.key").write_bytes(key)
    stranger = ensure_ca(tmp_path / "other-ca", name="Not the city's CA")
    cert, key = issue_client_cert(stranger, user)
    (tmp_path / "x.crt").write_bytes(cert)
    (tmp_path / "x.key").write_bytes(key)
    try:
        ok = _mosquitto_pub(
            *("-h", tls_host, "-p", tls_port, "--cafile", ca),
            *("-u", user, "-P", city.passwords["d1"], "-t", own, "-m", "over-tls"),
        )
        assert ok.returncode == 0, ok.stderr
        ok = _mosquitto_pub(
            *("-h", cert_host, "-p", cert_port, "--cafile", ca),
            *("--cert", str(tmp_path / "d1.crt"), "--key", str(tmp_path / "d1.key")),
            *("-t", own, "-m", "with-cert"),
        )
        assert ok.returncode == 0, ok.stderr
        assert watcher.wait(lambda: len(watcher.received) >= 2)
        assert sorted(p for _t, p in watcher.received) == [b"over-tls", b"with-cert"]

        refused = {
            "wrong password": (
                *("-h", tls_host, "-p", tls_port, "--cafile", ca),
                *("-u", user, "-P", "wrong"),
            ),
            "no password": ("-h", tls_host, "-p", tls_port, "--cafile", ca),
            "certificate of another CA": (
                *("-h", cert_host, "-p", cert_port, "--cafile", ca),
                *("--cert", str(tmp_path / "x.crt"), "--key", str(tmp_path / "x.key")),
            ),
            "no certificate": (
                *("-h", cert_host, "-p", cert_port, "--cafile", ca),
                *("-u", user, "-P", city.passwords["d1"]),
            ),
            "no TLS": ("-h", tls_host, "-p", tls_port, "-u", user, "-P", city.passwords["d1"]),
        }
        for what, args in refused.items():
            proc = _mosquitto_pub(*args, "-t", own, "-m", what)
            assert proc.returncode != 0, what
        time.sleep(0.5)
        assert len(watcher.received) == 2
    finally:
        watcher.close()


@pytest.mark.asyncio
async def test_a_bridge_whose_subscription_the_broker_refuses_stops_and_says_why(
    live_stack: Settings,
) -> None:
    """A refused filter would deliver nothing, forever: the bridge stops with the reason
    instead of running deaf."""
    import asyncio

    from cityops.ingest import bridge_config
    from ingest.adapters import load_vendors
    from ingest.bridge import Bridge
    from ingest.decode import Decoder
    from ingest.errors import TransportError
    from lifeline.registry import Registry

    config = bridge_config(live_stack, f"it-refused-{secrets.token_hex(3)}", ["elsewhere/+/up"])
    bridge = Bridge(config, Decoder(Registry(), load_vendors()))
    stop = asyncio.Event()

    async def start_and_run() -> None:
        # The refusal may arrive while the bridge is still starting, or once it runs.
        await bridge.start()
        try:
            await bridge.run(stop)
        finally:
            await bridge.stop(keep_session=False)

    with pytest.raises(TransportError, match="refused the subscription"):
        await asyncio.wait_for(start_and_run(), timeout=20)
