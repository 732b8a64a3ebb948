"""Load-generating processes for the ingest benchmark: MQTT publishers and a raw
subscriber. Each runs in its own process so the clients do not share a GIL."""

from __future__ import annotations

import os
import threading
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.lean_mqtt import LeanPublisher, publish_packet, utf8
from simulators.publisher import Broker


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


def _iso_us(epoch_us: int) -> bytes:
    """``epoch_us`` as an ISO 8601 UTC time with microseconds."""
    seconds, us = divmod(epoch_us, 1_000_000)
    return b"%s.%06dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode(), us)


def publisher(
    broker: Broker,
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
    client = LeanPublisher(
        broker.host,
        broker.port,
        broker.username,
        broker.password,
        f"bench-pub-{os.getpid()}",
        ca_file,
    )
    topics = [utf8(f"cityops/{city}/sensors/{d}/up") for d in devices]
    heads = [f'{{"v":1,"city":"{city}","device_id":"{d}","ts":"'.encode() for d in devices]
    tail = b'","metric":"ch4","unit":"%LEL","value":'
    n_dev = len(devices)
    last_us = 0

    def make(i: int, packet_id: int) -> bytes:
        nonlocal last_us
        k = i % n_dev
        last_us = max(int(time.time() * 1e6), last_us + 1)
        payload = b"%s%s%s%d.0}" % (heads[k], _iso_us(last_us), tail, i % 20)
        return publish_packet(topics[k], payload, packet_id)

    go.wait()
    t0, t1 = client.publish(count, make, qos, rate)
    client.close()
    results.put(("publisher", t0, t1, count))
