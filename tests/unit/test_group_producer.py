"""The push endpoint's group producer: requests that arrive together share Kafka records
(one batch record per partition), each is answered only once its flush is acknowledged,
and a failed flush fails exactly the requests it carried."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from ingest.decode import Outgoing
from ingest.push.answers import Refused
from ingest.push.producer import GroupProducer
from lifeline import codec, topics

PARTITIONS = 4
T0 = datetime(2026, 11, 1, tzinfo=UTC)


class Kafka:
    """Records as Kafka takes them; acknowledgements resolved or failed by the test."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, int | None]] = []
        self.acks: list[asyncio.Future[None]] = []

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> asyncio.Future[None]:
        self.records.append((topic, value, partition))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack


def _reading(device: str, i: int) -> Outgoing:
    value = codec.encode_reading(
        "320100", device, T0 + timedelta(seconds=i), "ch4", float(i), "%LEL", "good"
    )
    return Outgoing(topics.READINGS.name, device.encode(), value)


async def _settle(kafka: Kafka, fail: bool = False) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
        if kafka.acks:
            break
    for ack in kafka.acks:
        if not ack.done():
            if fail:
                ack.set_exception(KafkaTimeoutError())
            else:
                ack.set_result(None)


def test_requests_in_flight_together_share_one_record_per_partition() -> None:
    async def run() -> tuple[Kafka, list[Any]]:
        kafka = Kafka()
        group = GroupProducer(kafka, PARTITIONS)  # type: ignore[arg-type]  # Kafka stands in
        group.start()
        sends = [asyncio.create_task(group.send([_reading(f"gw-{i % 7}", i)])) for i in range(40)]
        await asyncio.sleep(0)
        assert not any(s.done() for s in sends)  # nobody is answered before the ack
        await _settle(kafka)
        results = await asyncio.gather(*sends, return_exceptions=True)
        await group.stop()
        return kafka, results

    kafka, results = asyncio.run(run())
    assert results == [None] * 40
    partitions = [p for _t, _v, p in kafka.records]
    assert len(partitions) == len(set(partitions)) <= PARTITIONS
    readings = [r for _t, v, _p in kafka.records for r in codec.decode(v)]
    assert sorted(r.value for r in readings) == [float(i) for i in range(40)]
    for _t, value, partition in kafka.records:
        assert {codec.partition_for(r.device_id, PARTITIONS) for r in codec.decode(value)} == {
            partition
        }


def test_a_failed_flush_fails_its_requests_and_the_next_one_goes_through() -> None:
    async def run() -> tuple[list[Any], list[Any]]:
        kafka = Kafka()
        group = GroupProducer(kafka, PARTITIONS)  # type: ignore[arg-type]  # Kafka stands in
        group.start()
        first = [asyncio.create_task(group.send([_reading("gw-1", i)])) for i in range(3)]
        await _settle(kafka, fail=True)
        failed = await asyncio.gather(*first, return_exceptions=True)
        kafka.acks.clear()
        second = [asyncio.create_task(group.send([_reading("gw-2", i)])) for i in range(3)]
        await _settle(kafka)
        passed = await asyncio.gather(*second, return_exceptions=True)
        await group.stop()
        return failed, passed

    failed, passed = asyncio.run(run())
    assert all(isinstance(f, Refused) and f.status == 503 for f in failed), failed
    assert all(f.headers["Retry-After"] == "5" for f in failed if isinstance(f, Refused))
    assert passed == [None, None, None]


@pytest.mark.parametrize("dead_letters", [1, 3])
def test_dead_letters_travel_as_they_are(dead_letters: int) -> None:
    async def run() -> Kafka:
        kafka = Kafka()
        group = GroupProducer(kafka, PARTITIONS)  # type: ignore[arg-type]  # Kafka stands in
        group.start()
        letters = [
            Outgoing(topics.DEADLETTER.name, b"push/320100/ctwing", b'{"reason": "x"}')
            for _ in range(dead_letters)
        ]
        task = asyncio.create_task(group.send([_reading("gw-1", 1), *letters]))
        await _settle(kafka)
        await task
        await group.stop()
        return kafka

    kafka = asyncio.run(run())
    assert [t for t, _v, _p in kafka.records].count(topics.DEADLETTER.name) == dead_letters
