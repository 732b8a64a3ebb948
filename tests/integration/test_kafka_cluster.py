"""A replicated Kafka cluster of three nodes on this machine: every platform topic on
three replicas with min.insync.replicas 2 (the readings topic with the partitions asked
for); one node killed -9 in the middle of a leak loses and doubles nothing, and a worker
lost from a two-worker group is taken over."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from cityops import stack
from cityops.settings import Settings
from drills import run_drills
from lifeline.topics import ALL_TOPICS, READINGS

pytestmark = pytest.mark.integration

READINGS_PARTITIONS = 24


@pytest.fixture(scope="module")
def cluster(live_stack: Settings) -> Iterator[Settings]:
    """Three Kafka nodes of their own beside the stack's Kafka, sharing its Mosquitto
    and PostgreSQL; the readings topic sized for more workers than the default."""
    sized = live_stack.model_copy(update={"readings_partitions": READINGS_PARTITIONS})
    with stack.scratch_kafka(sized, 3, lambda _m: None) as settings:
        yield settings


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
    assert {t["topic"]: len(t["partitions"]) for t in topics} == {  # type: ignore[arg-type]
        t.name: READINGS_PARTITIONS if t is READINGS else t.partitions for t in ALL_TOPICS
    }
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
