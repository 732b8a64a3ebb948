"""Recording and replay (``cityops record``, ``cityops replay``): capture traffic to JSONL,
and play recorded readings back over MQTT in time order, each device with its own
credentials.

Recorded from Kafka, a line is a canonical record (reading or video event); recorded
from MQTT, a line is the raw message: ``{"topic", "received_at", "payload"}`` with the
payload as JSON when it is JSON, else base64 under ``payload_b64``. Replay takes either,
or a CSV of readings (``device_id, ts, metric, value, unit``).
"""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from simulators.errors import RecordingError
from simulators.publisher import Broker, Publishers, read_credentials


@dataclass(frozen=True)
class Message:
    ts: datetime
    device_id: str
    topic: str | None  # None: the device's own publish topic
    payload: bytes


def _parse_ts(text: str, where: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RecordingError(f"{where}: {text!r} is not an ISO 8601 time") from None
    if ts.tzinfo is None:
        raise RecordingError(f"{where}: {text!r} has no time zone")
    return ts


def read_recording(path: Path, city: str) -> list[Message]:
    """The messages of a JSONL or CSV recording, in time order."""
    out: list[Message] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as fh:
            for i, row in enumerate(csv.DictReader(fh), start=2):
                where = f"{path}:{i}"
                try:
                    body = {
                        "v": 1,
                        "city": city,
                        "device_id": row["device_id"],
                        "ts": row["ts"],
                        "metric": row["metric"],
                        "value": float(row["value"]),
                        "unit": row["unit"],
                    }
                except (KeyError, ValueError) as exc:
                    raise RecordingError(
                        f"{where}: needs device_id, ts, metric, value (a number), unit: {exc}"
                    ) from None
                out.append(
                    Message(_parse_ts(row["ts"], where), row["device_id"], None, orjson.dumps(body))
                )
    else:
        with path.open() as fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{i}"
                try:
                    d = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RecordingError(f"{where}: not JSON ({exc})") from None
                out.append(_message(d, city, where))
    out.sort(key=lambda m: m.ts)
    return out


def _message(d: dict[str, Any], city: str, where: str) -> Message:
    if "topic" in d:  # raw MQTT
        parts = str(d["topic"]).split("/")
        if len(parts) != 5 or parts[0] != "cityops":
            raise RecordingError(f"{where}: {d['topic']!r} is not a cityops device topic")
        raw = (
            base64.b64decode(d["payload_b64"])
            if "payload_b64" in d
            else orjson.dumps(d.get("payload"))
        )
        ts = _parse_ts(str(d.get("received_at")), where)
        return Message(ts, parts[3], str(d["topic"]), raw)
    if "camera_id" in d:
        body = {**d, "city": city}
        return Message(_parse_ts(str(d.get("ts")), where), d["camera_id"], None, orjson.dumps(body))
    if "device_id" in d and "metric" in d:
        body = {**d, "city": city}
        return Message(_parse_ts(str(d.get("ts")), where), d["device_id"], None, orjson.dumps(body))
    raise RecordingError(f"{where}: neither a reading, a video event nor a raw MQTT message")


def retimed(messages: list[Message], end: datetime) -> list[Message]:
    """The recording moved in time so that its last message is at ``end``; timestamps
    inside the payloads move with it."""
    if not messages:
        return messages
    shift = end - messages[-1].ts
    out = []
    for m in messages:
        try:
            body = orjson.loads(m.payload)
        except orjson.JSONDecodeError:
            out.append(Message(m.ts + shift, m.device_id, m.topic, m.payload))
            continue
        if isinstance(body, dict) and isinstance(body.get("ts"), str):
            moved = _parse_ts(body["ts"], "payload") + shift
            body["ts"] = moved.isoformat().replace("+00:00", "Z")
        out.append(Message(m.ts + shift, m.device_id, m.topic, orjson.dumps(body)))
    return out


def replay(
    broker: Broker,
    city: str,
    recording: Path,
    credentials: Path,
    speed: float,
    *,
    shift: bool = True,
    show_progress: bool = True,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    if speed <= 0:
        raise RecordingError("--speed must be above 0, e.g. 10x")
    messages = read_recording(recording, city)
    if not messages:
        raise RecordingError(f"{recording} holds no messages")
    span = messages[-1].ts - messages[0].ts
    if shift:
        # The recording is moved so that it ends when the replay does: each message's
        # time is then never after the moment it is published.
        messages = retimed(messages, datetime.now(UTC) + span / speed)
    creds = read_credentials(credentials, city)
    unknown = sorted({m.device_id for m in messages} - set(creds))
    if unknown:
        raise RecordingError(
            f"{len(unknown)} device(s) of the recording have no credentials in {credentials}, "
            f"e.g. {unknown[:3]}; onboard them first"
        )
    pubs = Publishers(broker, creds)
    pubs.connect(sorted({m.device_id for m in messages}), show_progress)
    stop = stop or threading.Event()
    wall0, first = time.monotonic(), messages[0].ts
    infos = []
    try:
        for m in tqdm(messages, desc=f"replay x{speed:g}", unit="msg", disable=not show_progress):
            due = wall0 + (m.ts - first).total_seconds() / speed
            if pubs.idle(due - time.monotonic(), stop):
                break
            topic = m.topic or pubs.creds[m.device_id].topic
            infos.append(pubs.publish_to(m.device_id, topic, m.payload))
            if len(infos) >= 1000:
                pubs.wait(infos)
                infos.clear()
        pubs.wait(infos)
    finally:
        pubs.close()
    return {"messages": len(messages), "span_s": span.total_seconds(), "speed": speed}


def record_kafka(
    bootstrap: str, city: str, out: Path, duration: timedelta, from_beginning: bool
) -> int:
    """Readings and video events of ``city`` from Kafka into JSONL, for ``duration``."""
    from aiokafka import AIOKafkaConsumer

    from lifeline import topics

    async def run() -> int:
        consumer = AIOKafkaConsumer(
            topics.READINGS.name,
            topics.VIDEO.name,
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            group_id=None,
        )
        await consumer.start()
        n = 0
        bar = tqdm(desc="record kafka", unit="msg")
        try:
            deadline = time.monotonic() + duration.total_seconds()
            with out.open("ab") as fh:
                while time.monotonic() < deadline:
                    batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                    for tp, recs in batch.items():
                        for rec in recs:
                            for line in _lines(tp.topic, rec.value, city):
                                fh.write(line + b"\n")
                                n += 1
                                bar.update()
        finally:
            bar.close()
            await consumer.stop()
        return n

    return asyncio.run(run())


def record_mqtt(broker: Broker, city: str, out: Path, duration: timedelta) -> int:
    """Every message of ``city``'s device topics, raw, into JSONL, for ``duration``."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    lines: list[bytes] = []
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        entry: dict[str, Any] = {
            "topic": msg.topic,
            "received_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        try:
            entry["payload"] = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            entry["payload_b64"] = base64.b64encode(msg.payload).decode()
        with lock:
            lines.append(orjson.dumps(entry))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(broker.username, broker.password)
    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.subscribe(f"cityops/{city}/#", qos=1)
    client.loop_start()
    try:
        for _ in tqdm(range(int(duration.total_seconds())), desc="record mqtt", unit="s"):
            time.sleep(1)
    finally:
        client.disconnect()
        client.loop_stop()
    with out.open("ab") as fh, lock:
        for line in lines:
            fh.write(line + b"\n")
    return len(lines)


def _lines(topic: str, value: bytes | None, city: str) -> list[bytes]:
    """The JSONL lines of one Kafka record of ``city``: a line per reading of a reading
    or batch record, the record itself for a video event."""
    from lifeline import codec, topics
    from lifeline.errors import RecordError

    if value is None:
        return []
    if topic == topics.READINGS.name:
        try:
            return [codec.encode(r) for r in codec.decode(value) if r.city == city]
        except RecordError:
            return []
    return [value.rstrip()] if _city_of(value) == city else []


def _city_of(value: bytes) -> str | None:
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return body.get("city") if isinstance(body, dict) else None
