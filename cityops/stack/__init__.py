"""``cityops stack up | down | status``: the real local services on 127.0.0.1.

Each service records the pid of the process it started under the stack folder;
``down`` stops exactly those pids and nothing else.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cityops.settings import Settings
from cityops.stack.common import ServiceStatus, StartResult, free_ports
from cityops.stack.kafka import Kafka, default_cache_dir
from cityops.stack.mosquitto import Mosquitto
from cityops.stack.postgres import Postgres
from lifeline.topics import ALL_TOPICS, READINGS


@dataclass
class Stack:
    kafka: Kafka
    mqtt: Mosquitto
    postgres: Postgres

    @classmethod
    def from_settings(cls, settings: Settings) -> Stack:
        stack_dir = settings.stack_dir
        stack_dir.mkdir(parents=True, exist_ok=True)
        stack_dir.chmod(0o755)
        return cls(
            kafka=Kafka(
                settings.kafka_dir or stack_dir,
                settings.kafka_nodes,
                default_cache_dir(),
                settings.kafka_replication,
            ),
            mqtt=Mosquitto(
                stack_dir,
                settings.mqtt_host,
                settings.mqtt_port,
                settings.mqtt_username,
                settings.mqtt_password.get_secret_value(),
                admin=(
                    (settings.mqtt_admin_username, settings.mqtt_admin_password.get_secret_value())
                    if settings.mqtt_admin_password is not None
                    else None
                ),
                flush_period_s=settings.mqtt_flush_period_s,
                cache_dir=default_cache_dir(),
                tls_listen=settings.mqtt_tls_listen,
                cert_listen=settings.mqtt_cert_listen,
                tls_dir=settings.tls_dir,
            ),
            postgres=Postgres(stack_dir, settings.db_parts()),
        )


def up(settings: Settings, log: Callable[[str], None]) -> list[StartResult]:
    """Start every service that is not running yet; return what was done and how long it took."""
    stack = Stack.from_settings(settings)
    results = [stack.postgres.up(log), stack.mqtt.up(log), stack.kafka.up(log)]
    t0 = time.monotonic()
    created = asyncio.run(
        ensure_topics(
            settings.kafka_bootstrap,
            settings.kafka_replication,
            settings.kafka_min_insync,
            settings.readings_partitions,
        )
    )
    if created:
        results[-1].notes.append(f"created topics {', '.join(created)}")
        results[-1].seconds += time.monotonic() - t0
    return results


def down(settings: Settings) -> dict[str, bool]:
    """Stop what ``up`` started (by recorded pid); True where a process was stopped."""
    stack = Stack.from_settings(settings)
    return {
        "kafka": stack.kafka.down(),
        "mqtt": stack.mqtt.down(),
        "postgres": stack.postgres.down(),
    }


def status(settings: Settings) -> dict[str, ServiceStatus]:
    stack = Stack.from_settings(settings)
    return {
        **stack.kafka.status(),
        "mqtt": stack.mqtt.status(),
        "postgres": stack.postgres.status(settings.db_dsn.get_secret_value()),
    }


async def ensure_topics(
    bootstrap: str,
    replication: int = 1,
    min_insync: int = 1,
    readings_partitions: int = READINGS.partitions,
) -> list[str]:
    """Create the platform's topics that do not exist yet, with ``replication`` replicas
    and ``min.insync.replicas`` ``min_insync`` (the readings topic with
    ``readings_partitions`` partitions); return the names created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in ALL_TOPICS if t.name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name=t.name,
                        num_partitions=(
                            readings_partitions if t.name == READINGS.name else t.partitions
                        ),
                        replication_factor=replication,
                        topic_configs={
                            "cleanup.policy": "compact" if t.compacted else "delete",
                            "retention.ms": str(t.retention_hours * 3600 * 1000),
                            "min.insync.replicas": str(min_insync),
                        },
                    )
                    for t in missing
                ]
            )
        return [t.name for t in missing]
    finally:
        await admin.close()


@contextmanager
def scratch_kafka(settings: Settings, nodes: int, log: Callable[[str], None]) -> Iterator[Settings]:
    """A Kafka of ``nodes`` nodes of its own (free ports, a temporary folder) beside the
    stack's, with the platform's topics; yields the settings that point at it (the rest
    of the stack unchanged). Stopped and removed afterwards."""
    base = free_ports(2 * nodes)
    folder = Path(tempfile.mkdtemp(prefix=f"cityops-kafka{nodes}-"))
    scratch = settings.model_copy(
        update={
            "kafka_brokers": nodes,
            "kafka_bootstrap": ",".join(f"127.0.0.1:{base + 2 * i}" for i in range(nodes)),
            "kafka_dir": folder,
        }
    )
    kafka = Stack.from_settings(scratch).kafka
    try:
        kafka.up(log)
        asyncio.run(
            ensure_topics(
                scratch.kafka_bootstrap,
                scratch.kafka_replication,
                scratch.kafka_min_insync,
                scratch.readings_partitions,
            )
        )
        yield scratch
    finally:
        kafka.down()
        shutil.rmtree(folder, ignore_errors=True)
