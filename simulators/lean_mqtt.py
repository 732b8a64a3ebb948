"""A lean MQTT 5 publishing client for load generation (benchmarks and drills).

The devices of a city are separate machines; in a benchmark or a drill they share this
machine's cores with the broker, Kafka and the bridges. paho spends about 100 µs of CPU
per QoS-1 publish, so paho publishers would take most of the machine and the run would
measure them. This client speaks the same protocol (MQTT 5 CONNECT, PUBLISH at QoS 1
with a packet id, one PUBACK per message, a bounded in-flight window, optionally over
TLS with the broker verified against a CA) with packets built in bulk. It does not
reconnect: a run that loses its connection fails with the count acknowledged so far.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Callable

#: Unacknowledged QoS-1 publishes allowed per client (packet ids are 16 bits).
WINDOW = 2000
#: Messages built and written at once.
CHUNK = 500


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text: str) -> bytes:
    """An MQTT UTF-8 string: two bytes of length, then the bytes."""
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _connect_packet(client_id: str, user: str, password: str, expiry_s: int) -> bytes:
    # Protocol name, version 5, flags (username, password, clean start unless a session
    # is kept), keep-alive 60 s; properties (session expiry when kept); then client id,
    # username, password.
    flags = b"\xc0" if expiry_s else b"\xc2"
    props = b"\x05\x11" + expiry_s.to_bytes(4, "big") if expiry_s else b"\x00"
    body = (
        b"\x00\x04MQTT\x05"
        + flags
        + b"\x00\x3c"
        + props
        + utf8(client_id)
        + utf8(user)
        + utf8(password)
    )
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, packet_id: int) -> bytes:
    """A QoS-1 PUBLISH of ``payload`` to ``topic`` (an MQTT string, see ``utf8``), with no
    properties; ``packet_id`` 0 makes it QoS 0."""
    if packet_id:
        var = topic + packet_id.to_bytes(2, "big") + b"\x00"
        return b"\x32" + _varint(len(var) + len(payload)) + var + payload
    var = topic + b"\x00"
    return b"\x30" + _varint(len(var) + len(payload)) + var + payload


class _Reader:
    """Splits the broker's byte stream into (packet type, body) pairs."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def packets(self) -> list[tuple[int, bytes]]:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the broker closed the connection")
        if isinstance(self.sock, ssl.SSLSocket):
            data += self._drain()
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

    def _drain(self) -> bytes:
        # An SSL socket's recv returns one TLS record, and the broker writes one record
        # per PUBACK: read every record already received, as a client reading its
        # socket's buffer would, so one wake-up sees every acknowledgement that came.
        chunks = []
        self.sock.setblocking(False)
        try:
            while chunk := self.sock.recv(1 << 16):
                chunks.append(chunk)
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        finally:
            self.sock.setblocking(True)
        return b"".join(chunks)


class LeanPublisher:
    """One MQTT 5 connection that publishes messages made on demand, as fast as the
    broker acknowledges them or at a steady rate."""

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        client_id: str,
        ca_file: str | None = None,
        session_expiry_s: int = 0,
    ) -> None:
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ca_file:
            context = ssl.create_default_context(cafile=ca_file)
            sock = context.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.reader = _Reader(sock)
        self.acked = 0
        sock.sendall(_connect_packet(client_id, user, password, session_expiry_s))
        packets: list[tuple[int, bytes]] = []
        while not packets:
            packets = self.reader.packets()
        kind, body = packets[0]
        if kind != 2 or body[1] != 0:
            raise ConnectionError(f"MQTT connect refused (reason 0x{body[1]:02x})")

    def publish(
        self,
        count: int,
        make: Callable[[int, int], bytes],
        qos: int = 1,
        rate: float = 0.0,
        window: int = WINDOW,
    ) -> tuple[float, float]:
        """Publish the packets ``make(i, packet_id)`` for ``i`` in ``range(count)`` (see
        ``publish_packet``; packet id 0 at QoS 0), at most ``window`` unacknowledged, at
        ``rate`` a second when given; return once every PUBACK is in, with the first and
        last publish times (epoch seconds). ``self.acked`` counts the acknowledged."""
        t0 = time.time()
        sent = self.acked = 0
        window = min(window, 65535) if qos else count
        while self.acked < count:
            allowed = count if not rate else min(count, int((time.time() - t0) * rate) + 1)
            room = min(window - (sent - self.acked), allowed - sent, CHUNK)
            if room > 0:
                chunk = [make(i, (i % 65535) + 1 if qos else 0) for i in range(sent, sent + room)]
                self.sock.sendall(b"".join(chunk))
                sent += room
                if not qos:
                    self.acked = sent
                if room == CHUNK and sent - self.acked < window:
                    continue
            if sent > self.acked:
                # Wait for PUBACKs; when paced, no longer than until the next one is due.
                # TLS may hold decrypted bytes that select() cannot see.
                pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
                if not pending:
                    ready, _, _ = select.select([self.sock], [], [], 0.002 if rate else None)
                    if not ready:
                        continue
                for kind, body in self.reader.packets():
                    if kind == 4:  # PUBACK: packet id, then a reason code unless success
                        if len(body) > 2 and body[2] >= 0x80:
                            raise ConnectionError(f"publish refused (reason 0x{body[2]:02x})")
                        self.acked += 1
            elif self.acked < count:
                time.sleep(0.002)  # paced, nothing in flight: the next one is not due yet
        return t0, time.time()

    def close(self) -> None:
        """Disconnect normally (a kept session stays on the broker)."""
        try:
            self.sock.sendall(b"\xe0\x00")
        finally:
            self.sock.close()
