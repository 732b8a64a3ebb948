"""Helpers for talking to the real services in integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from cityops.processes import wait_ready
from cityops.settings import Settings, get_settings
from cityops.stack.common import free_port
from lifeline import codec, topics
from simulators.publisher import DevicePublisher


@contextlib.contextmanager
def push_service(
    db_dsn: str,
    settings: Settings,
    cities: list[str],
    logs: Path,
    vendor_dir: Path | None = None,
) -> Iterator[tuple[str, ssl.SSLContext]]:
    """``cityops push serve`` over HTTPS for ``cities`` (with the vendor mappings and
    event code tables of ``vendor_dir`` too): its URL and a context that trusts the
    stack's certificate, while the block runs."""
    port = free_port()
    env = {
        **os.environ,
        "CITYOPS_DB_DSN": db_dsn,
        "CITYOPS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CITYOPS_CITIES": ",".join(cities),
        **({"CITYOPS_VENDOR_DIR": str(vendor_dir)} if vendor_dir else {}),
    }
    argv = [sys.executable, "-m", "cityops.cli", "push", "serve", "--host", "127.0.0.1"]
    with (logs / "push.log").open("ab") as fh:
        proc = subprocess.Popen(
            [*argv, "--port", str(port)], env=env, stdout=fh, stderr=subprocess.STDOUT
        )
    ca = ssl.create_default_context(cafile=str(settings.tls_dir / "ca.crt"))
    url = f"https://localhost:{port}"
    try:
        wait_ready(url, proc, (logs / "push.log").read_text, ca)
        yield url, ca
    finally:
        proc.terminate()
        proc.wait(30)


def mqtt_publish(
    settings: Settings,
    messages: list[tuple[str, bytes]],
    *,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Publish at QoS 1 and wait until the broker has acknowledged every message."""
    broker = settings.broker()
    if username is not None:
        broker = broker.as_account(username, password or "")
    with DevicePublisher(broker).connect() as pub:
        infos = [pub.publish(topic, payload) for topic, payload in messages]
        if pub.wait(infos, timeout_s=10):
            raise TimeoutError("MQTT publishes not acknowledged within 10 s")


class TailConsumer:
    """Reads a topic from its current end, so a test sees only what it caused."""

    def __init__(self, settings: Settings, topic: str, **kw: object) -> None:
        self.topic = topic
        self.records = []
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, **kw
        )

    async def __aenter__(self) -> TailConsumer:
        await self.consumer.start()
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self.consumer._client.force_metadata_update()
            partitions = self.consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:
            await self.consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def collect(
        self, want: Callable[[bytes, bytes | None], bool], count: int, within: float = 30.0
    ) -> list[tuple[bytes | None, bytes]]:
        """Records (key, value) matching ``want`` until ``count`` arrive or time runs out.

        On the readings topic every reading of a record is one (device id, v1 reading)
        pair, and every record is checked to hold only readings of its own partition."""
        found: list[tuple[bytes | None, bytes]] = []
        deadline = asyncio.get_running_loop().time() + within
        while len(found) < count and asyncio.get_running_loop().time() < deadline:
            batches = await self.consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for rec in records:
                    if rec.value is None:
                        continue
                    for key, value in self._items(tp, rec.key, rec.value):
                        if want(value, key):
                            found.append((key, value))
        return found

    def _items(
        self, tp: TopicPartition, key: bytes | None, value: bytes
    ) -> list[tuple[bytes | None, bytes]]:
        if self.topic != topics.READINGS.name:
            return [(key, value)]
        self.records.append((tp.partition, value))
        parts = len(self.consumer.assignment())
        items = []
        for r in codec.decode(value):
            assert codec.partition_for(r.device_id, parts) == tp.partition, (
                f"reading of {r.device_id} on partition {tp.partition}"
            )
            items.append((r.device_id.encode(), codec.encode(r)))
        return items

    #: the raw records of the readings topic seen by :meth:`collect` (partition, value)
    records: list[tuple[int, bytes]]


async def start_group_at_end(settings: Settings, group: str, names: list[str]) -> None:
    """Commit ``group``'s offsets at the current end of the topics ``names``, so a worker
    of that group reads none of their history (other tests' anomalies, say)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = []
        for name in names:
            parts = consumer.partitions_for_topic(name)
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(name) or set()
            tps += [TopicPartition(name, p) for p in sorted(parts)]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()


def run_in_thread(fn: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def during(
    topic: str, send: Callable[[], object], want: Callable[[bytes], bool], count: int
) -> list[bytes]:
    """The first ``count`` records of ``topic`` that ``want`` takes, of those that come
    while (and 20 s after) ``send`` runs."""

    async def run() -> list[bytes]:
        async with TailConsumer(get_settings(), topic) as tail:
            await asyncio.to_thread(send)
            found = await tail.collect(lambda v, _k: want(v), count, within=20)
        return [v for _k, v in found]

    return asyncio.run(run())
