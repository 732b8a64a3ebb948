"""The load generator's MQTT wire format: what it writes is what the MQTT 5 spec says,
and it reads the broker's packets whatever way the stream is cut."""

from __future__ import annotations

import socket

import pytest

from simulators.lean_mqtt import _connect_packet, _Reader, _varint, publish_packet, utf8


def _remaining_length(packet: bytes) -> tuple[int, int]:
    length, shift, i = 0, 0, 1
    while True:
        byte = packet[i]
        length |= (byte & 0x7F) << shift
        shift += 7
        i += 1
        if not byte & 0x80:
            return length, i


@pytest.mark.parametrize("size", [0, 10, 127, 128, 16_383, 16_384, 300_000])
def test_a_publish_carries_its_remaining_length_topic_packet_id_and_payload(size: int) -> None:
    payload = b"x" * size
    packet = publish_packet(utf8("cityops/320100/sensors/gw-1/up"), payload, 513)
    assert packet[0] == 0x32  # PUBLISH, QoS 1
    length, start = _remaining_length(packet)
    assert length == len(packet) - start
    topic_len = int.from_bytes(packet[start : start + 2], "big")
    topic = packet[start + 2 : start + 2 + topic_len]
    assert topic == b"cityops/320100/sensors/gw-1/up"
    rest = packet[start + 2 + topic_len :]
    assert int.from_bytes(rest[:2], "big") == 513
    assert rest[2] == 0  # no properties
    assert rest[3:] == payload


def test_a_qos0_publish_has_no_packet_id() -> None:
    packet = publish_packet(utf8("t"), b"p", 0)
    assert packet == b"\x30\x05\x00\x01t\x00p"


def test_varint_matches_the_spec_examples() -> None:
    assert _varint(0) == b"\x00"
    assert _varint(127) == b"\x7f"
    assert _varint(128) == b"\x80\x01"
    assert _varint(16_383) == b"\xff\x7f"
    assert _varint(2_097_152) == b"\x80\x80\x80\x01"


def test_connect_keeps_a_session_only_when_asked() -> None:
    fresh = _connect_packet("c", "u", "p", 0)
    kept = _connect_packet("c", "u", "p", 3600)
    _, start = _remaining_length(fresh)
    assert fresh[start + 7] == 0xC2  # username, password, clean start
    assert fresh[start + 10] == 0  # no properties
    _, start = _remaining_length(kept)
    assert kept[start + 7] == 0xC0  # username, password, session kept
    assert kept[start + 10 : start + 16] == b"\x05\x11" + (3600).to_bytes(4, "big")


def test_the_reader_splits_packets_cut_anywhere_in_the_stream() -> None:
    pubacks = b"".join(b"\x40\x02" + i.to_bytes(2, "big") for i in range(1, 301))
    big = publish_packet(utf8("t"), b"y" * 1000, 7)
    stream = pubacks + big
    a, b = socket.socketpair()
    try:
        reader = _Reader(a)
        got: list[tuple[int, bytes]] = []
        for cut in range(0, len(stream), 333):
            b.sendall(stream[cut : cut + 333])
            got += reader.packets()
        assert [kind for kind, _ in got] == [4] * 300 + [3]
        assert [int.from_bytes(body[:2], "big") for _, body in got[:300]] == list(range(1, 301))
        assert got[-1][1].endswith(b"y" * 1000)
        assert reader.buf == b""
    finally:
        a.close()
        b.close()
