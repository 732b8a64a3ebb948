"""Load-generating processes for the ingest benchmark: MQTT publishers and a raw
subscriber. Each runs in its own process so the clients do not share a GIL."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from functools import partial
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

#: Unacknowledged QoS-1 publishes allowed per publisher (paho fails past 65,535).
WINDOW = 2000


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
) -> None:
    """Publish ``count`` single-reading messages, round-robin over ``devices``."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(WINDOW)
    acked = 0
    cond = threading.Condition()

    def on_publish(*_args: object) -> None:
        nonlocal acked
        with cond:
            acked += 1
            cond.notify()

    def _drained(sent: int) -> bool:
        return sent - acked <= WINDOW // 2

    client.on_publish = on_publish
    client.connect(host, port, keepalive=60)
    client.loop_start()
    topics = [f"cityops/{city}/sensors/{d}/up" for d in devices]
    go.wait()
    t0 = time.time()
    for i in range(count):
        dev = devices[i % len(devices)]
        body = {
            "v": 1,
            "city": city,
            "device_id": dev,
            "ts": datetime.now(UTC).isoformat(),
            "metric": "ch4",
            "value": float(i % 20),
            "unit": "%LEL",
        }
        client.publish(topics[i % len(topics)], json.dumps(body, separators=(",", ":")), qos=qos)
        if qos and i - acked > WINDOW:
            with cond:
                cond.wait_for(partial(_drained, i), timeout=30)
    if qos:
        with cond:
            cond.wait_for(lambda: acked >= count, timeout=120)
    t1 = time.time()
    client.disconnect()
    client.loop_stop()
    results.put(("publisher", t0, t1, count))


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
