"""A replicated Kafka cluster of three nodes on this machine: every platform topic on
three replicas with min.insync.replicas 2; one node killed -9 in the middle of a leak
loses and doubles nothing, and a worker lost from a two-worker group is taken over."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from cityops import stack
from cityops.drills import run_drills
from cityops.settings import Settings
from lifeline.topics import ALL_TOPICS

pytestmark = pytest.mark.integration


def _six_free_ports() -> int:
    """A port p with p..p+5 free: three nodes, each with its controller on the next."""
    for _ in range(200):
        base = random.randrange(30000, 40000, 2)
        try:
            socks = []
            for port in range(base, base + 6):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no six free ports in a row between 30000 and 40000")


@pytest.fixture(scope="module")
def cluster(live_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Three Kafka nodes of their own beside the stack's Kafka, sharing its Mosquitto
    and PostgreSQL."""
    base = _six_free_ports()
    kafka_dir: Path = tmp_path_factory.mktemp("kafka3")
    settings = live_stack.model_copy(
        update={
            "kafka_brokers": 3,
            "kafka_bootstrap": ",".join(f"127.0.0.1:{base + 2 * i}" for i in range(3)),
            "kafka_dir": kafka_dir,
        }
    )
    kafka = stack.Stack.from_settings(settings).kafka
    try:
        result = kafka.up(lambda _m: None)
        assert result.started
        asyncio.run(
            stack.ensure_topics(
                settings.kafka_bootstrap, settings.kafka_replication, settings.kafka_min_insync
            )
        )
        yield settings
    finally:
        kafka.down()
        shutil.rmtree(kafka_dir, ignore_errors=True)


def test_every_node_answers_and_topics_have_three_replicas_two_in_sync(cluster: Settings) -> None:
    statuses = stack.Stack.from_settings(cluster).kafka.status()
    assert sorted(statuses) == ["kafka-1", "kafka-2", "kafka-3"]
    assert all(st.ok for st in statuses.values()), statuses

    async def describe() -> tuple[list[dict[str, object]], dict[str, str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.kafka_bootstrap)
        await admin.start()
        try:
            topics = await admin.describe_topics([t.name for t in ALL_TOPICS])
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in ALL_TOPICS]
            )
        finally:
            await admin.close()
        isr = {}
        for response in configs:
            for _err, _msg, _type, name, entries in response.resources:
                isr[name] = next(e[1] for e in entries if e[0] == "min.insync.replicas")
        return topics, isr

    topics, isr = asyncio.run(describe())
    assert {t["topic"] for t in topics} == {t.name for t in ALL_TOPICS}
    for topic in topics:
        for partition in topic["partitions"]:  # type: ignore[attr-defined]
            assert len(partition["replicas"]) == 3, (topic["topic"], partition)
            assert sorted(partition["isr"]) == [1, 2, 3], (topic["topic"], partition)
    assert isr == {t.name: "2" for t in ALL_TOPICS}


def test_a_node_killed_mid_leak_and_a_lost_worker_lose_and_repeat_nothing(
    cluster: Settings,
) -> None:
    """kill -9 of the node leading the readings' first partition, back after 10 s:
    every reading stored once, one anomaly and one incident per leaking device, both
    cleared; then of two workers one is killed and the other takes over."""
    result = run_drills(cluster, ["kafka-node", "workers"], short=True)
    table = {row["name"]: row for row in result["table"]}
    assert result["failed"] == 0, result
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    node = table["kafka-node"]
    assert node["sent"] == node["stored"] == 30_000
    assert node["detail"]["killed"] in {"kafka-1", "kafka-2", "kafka-3"}
    assert node["detail"]["rejoined_s"] is not None
    for name in ("kafka-node", "workers"):
        detail = table[name]["detail"]
        assert detail["anomalies"] == detail["incidents"] == detail["expected"] == 50
        assert detail["incidents_cleared"] == 50
        assert detail["longest_pause_stored_s"] is not None
        assert detail["longest_pause_detection_s"] is not None
    statuses = stack.Stack.from_settings(cluster).kafka.status()
    assert all(st.ok for st in statuses.values()), statuses
