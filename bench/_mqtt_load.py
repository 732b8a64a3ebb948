"""Load-generating processes for the ingest benchmark: MQTT publishers and a raw
subscriber. Each runs in its own process so the clients do not share a GIL."""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
import threading
import time
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

#: Unacknowledged QoS-1 publishes allowed per publisher (paho fails past 65,535).
WINDOW = 2000


def raw_subscriber(
    host: str,
    port: int,
    user: str,
    password: str,
    topic_filter: str,
    expect: int,
    qos: int,
    ready: Event,
    results: Queue[Any],
) -> None:
    """Receive ``expect`` messages with no processing; report first and last arrival."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    state = {"n": 0, "first": 0.0, "last": 0.0}
    done = threading.Event()

    def on_message(*_args: object) -> None:
        now = time.time()
        if state["n"] == 0:
            state["first"] = now
        state["n"] += 1
        state["last"] = now
        if state["n"] >= expect:
            done.set()

    def on_subscribe(*_args: object) -> None:
        ready.set()

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, *_a: c.subscribe(topic_filter, qos=qos)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    done.wait(timeout=300)
    client.disconnect()
    client.loop_stop()
    results.put(("raw", state["first"], state["last"], state["n"]))


def paced_publisher(
    host: str,
    port: int,
    user: str,
    password: str,
    city: str,
    devices: list[str],
    rate: float,
    seconds: float,
    go: Event,
    results: Queue[Any],
) -> None:
    """Publish single readings round-robin over ``devices`` at ``rate`` a second."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(WINDOW)
    client.connect(host, port, keepalive=60)
    client.loop_start()
    go.wait()
    t0 = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - t0 < seconds:
        due = int((now - t0) * rate)
        while sent < due:
            dev = devices[sent % len(devices)]
            body = {
                "v": 1,
                "city": city,
                "device_id": dev,
                "ts": datetime.now(UTC).isoformat(),
                "metric": "ch4",
                "value": float(sent % 5) * 0.5,
                "unit": "%LEL",
            }
            client.publish(
                f"cityops/{city}/sensors/{dev}/up", json.dumps(body, separators=(",", ":")), qos=1
            )
            sent += 1
        time.sleep(0.005)
    client.disconnect()
    client.loop_stop()
    results.put(("paced", t0, time.monotonic(), sent))


# -- a lean MQTT 5 publisher -------------------------------------------------------------
#
# The devices of a city are separate machines; here they share two cores with the broker,
# Kafka and the bridges. paho spends about 100 µs of CPU per QoS-1 publish, so paho
# publishers would take most of the machine and the benchmark would measure them. This
# client speaks the same protocol (MQTT 5 CONNECT, PUBLISH at QoS 1 with a packet id,
# one PUBACK per message, a bounded in-flight window) with packets built in bulk.


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _connect_packet(client_id: str, user: str, password: str) -> bytes:
    # Protocol name, version 5, flags (username, password, clean start), keep-alive 60 s,
    # no properties; then client id, username, password.
    body = b"\x00\x04MQTT\x05\xc2\x00\x3c\x00" + _utf8(client_id) + _utf8(user) + _utf8(password)
    return b"\x10" + _varint(len(body)) + body


class _Reader:
    """Splits the broker's byte stream into (packet type, body) pairs."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def packets(self) -> list[tuple[int, bytes]]:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the broker closed the connection")
        buf = self.buf + data
        out, i = [], 0
        while i + 2 <= len(buf):
            length, shift, j = 0, 0, i + 1
            while j < len(buf):
                byte = buf[j]
                length |= (byte & 0x7F) << shift
                shift += 7
                j += 1
                if not byte & 0x80:
                    break
            else:
                break
            if j + length > len(buf):
                break
            out.append((buf[i] >> 4, buf[j : j + length]))
            i = j + length
        self.buf = buf[i:]
        return out


def _iso_us(epoch_us: int) -> bytes:
    """``epoch_us`` as an ISO 8601 UTC time with microseconds."""
    seconds, us = divmod(epoch_us, 1_000_000)
    return b"%s.%06dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode(), us)


def publisher(
    host: str,
    port: int,
    user: str,
    password: str,
    city: str,
    devices: list[str],
    count: int,
    qos: int,
    go: Event,
    results: Queue[Any],
    rate: float = 0.0,
    ca_file: str | None = None,
) -> None:
    """Publish ``count`` single-reading messages, round-robin over ``devices``, as fast as
    the broker takes them or at ``rate`` a second; at QoS 1 with at most ``WINDOW``
    unacknowledged, and done when every PUBACK is in. Every reading has a key of its own
    (device, metric, time): readings are stamped with the time they are built, to the
    microsecond, one microsecond apart at least, so no two share a time. With ``ca_file``
    the connection is TLS, the broker verified against that CA, as a device's would be."""
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ca_file:
        sock = ssl.create_default_context(cafile=ca_file).wrap_socket(sock, server_hostname=host)
    reader = _Reader(sock)
    sock.sendall(_connect_packet(f"bench-pub-{os.getpid()}", user, password))
    packets: list[tuple[int, bytes]] = []
    while not packets:
        packets = reader.packets()
    kind, body = packets[0]
    if kind != 2 or body[1] != 0:
        raise ConnectionError(f"MQTT connect refused (reason {body[1:2].hex()})")
    topics = [_utf8(f"cityops/{city}/sensors/{d}/up") for d in devices]
    heads = [f'{{"v":1,"city":"{city}","device_id":"{d}","ts":"'.encode() for d in devices]
    tail = b'","metric":"ch4","unit":"%LEL","value":'
    n_dev = len(devices)
    last_us = 0
    go.wait()
    t0 = time.time()
    sent = acked = 0
    window = WINDOW if qos else count
    while acked < count:
        allowed = count if not rate else min(count, int((time.time() - t0) * rate) + 1)
        room = min(window - (sent - acked), allowed - sent, 500)
        if room > 0:
            chunk = []
            for i in range(sent, sent + room):
                k = i % n_dev
                last_us = max(int(time.time() * 1e6), last_us + 1)
                ts = _iso_us(last_us)
                payload = b"%s%s%s%d.0}" % (heads[k], ts, tail, i % 20)
                if qos:
                    var = topics[k] + ((i % 65535) + 1).to_bytes(2, "big") + b"\x00"
                    chunk.append(b"\x32" + _varint(len(var) + len(payload)) + var + payload)
                else:
                    var = topics[k] + b"\x00"
                    chunk.append(b"\x30" + _varint(len(var) + len(payload)) + var + payload)
            sock.sendall(b"".join(chunk))
            sent += room
            if not qos:
                acked = sent
            if room == 500 and sent - acked < window:
                continue
        if sent > acked:
            # Wait for PUBACKs; when paced, no longer than until the next message is due.
            # TLS may hold decrypted bytes that select() cannot see.
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not pending:
                ready, _, _ = select.select([sock], [], [], 0.002 if rate else None)
                if not ready:
                    continue
            for kind, body in reader.packets():
                if kind == 4:  # PUBACK: packet id, then a reason code unless it is success
                    if len(body) > 2 and body[2] >= 0x80:
                        raise ConnectionError(f"publish refused (reason 0x{body[2]:02x})")
                    acked += 1
        elif acked < count:
            time.sleep(0.002)  # paced, nothing in flight: the next message is not due yet
    t1 = time.time()
    sock.sendall(b"\xe0\x00")
    sock.close()
    results.put(("publisher", t0, t1, count))
