"""The local stack is real: Kafka, Mosquitto and PostgreSQL answer and do their jobs."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from cityops import stack
from cityops.settings import Settings
from cityops.stack.mosquitto import mqtt_login
from lifeline.topics import ALL_TOPICS
from tests.conftest import unique_id

pytestmark = pytest.mark.integration


def test_status_json_reports_every_service_ok(live_stack: Settings) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cityops.cli", "stack", "status", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(last) == {"kafka", "mqtt", "postgres"}
    for name, st in last.items():
        assert st["ok"] is True, name
        assert st["address"].startswith("127.0.0.1:")


def test_stack_up_twice_starts_nothing_new(live_stack: Settings) -> None:
    before = {n: s.pid for n, s in stack.status(live_stack).items()}
    results = stack.up(live_stack, log=lambda _m: None)
    assert not any(r.started for r in results)
    after = {n: s.pid for n, s in stack.status(live_stack).items()}
    assert after == before


def test_platform_topics_exist_with_their_partitions(live_stack: Settings) -> None:
    import asyncio

    async def partitions() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=live_stack.kafka_bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([t.name for t in ALL_TOPICS])
        finally:
            await admin.close()
        return {d["topic"]: len(d["partitions"]) for d in described}

    found = asyncio.run(partitions())
    assert found == {t.name: t.partitions for t in ALL_TOPICS}


def test_mosquitto_refuses_anonymous_and_wrong_passwords(live_stack: Settings) -> None:
    host, port = live_stack.mqtt_host, live_stack.mqtt_port
    assert (
        mqtt_login(
            host, port, live_stack.mqtt_username, live_stack.mqtt_password.get_secret_value()
        )
        == 0
    )
    assert mqtt_login(host, port, live_stack.mqtt_username, "wrong") not in (0, -1)
    assert mqtt_login(host, port, "nobody", "") not in (0, -1)


def test_platform_role_owns_the_cityops_database(live_stack: Settings) -> None:
    with psycopg.connect(live_stack.db_dsn.get_secret_value()) as conn:
        db, user = conn.execute("SELECT current_database(), current_user").fetchone() or ("", "")
    assert (db, user) == ("cityops", live_stack.db_parts().user)


def test_platform_role_may_drop_a_scratch_database_being_vacuumed(live_stack: Settings) -> None:
    # DROP DATABASE ... WITH (FORCE) must also end the autovacuum worker that PostgreSQL
    # counts as another role's process; pg_signal_backend is what allows it.
    with psycopg.connect(live_stack.db_dsn.get_secret_value()) as conn:
        row = conn.execute(
            "SELECT pg_has_role(current_user, 'pg_signal_backend', 'MEMBER')"
        ).fetchone()
    assert row == (True,)


@pytest.mark.asyncio
async def test_kafka_transactions_commit_and_abort(live_stack: Settings) -> None:
    topic = unique_id("it-tx")
    producer = AIOKafkaProducer(
        bootstrap_servers=live_stack.kafka_bootstrap, transactional_id=unique_id("tx")
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted")
        await producer.abort_transaction()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=live_stack.kafka_bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        group_id=unique_id("g"),
    )
    await consumer.start()
    try:
        seen: list[bytes] = []
        for _ in range(20):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen.extend(r.value for r in records if r.value is not None)
            if seen:
                break
    finally:
        await consumer.stop()
    assert seen == [b"committed"]
