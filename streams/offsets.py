"""Where a checkpointed agent's input stands, kept by the agent itself.

Faust's own offset bookkeeping cannot be trusted with a fold that must see each record
once and in order. Around a rebalance its fetcher hands the streams records from before
the seek to the committed offsets, and a batch fetched before the seek can still be
delivered after it; records that then arrive below the fetcher's read position are
dropped, and a jump in offsets is booked as a "gap" that counts as acknowledged: a
stretch of records can be skipped and committed without ever reaching the agent. (Seen
as a worker restarted after a crash folding offsets 0‥46 of a partition, then 66 on.)

So the agents that checkpoint keep their own position per partition — the next offset
to fold, starting from the group's committed offset — and fold a record only when it is
exactly that one. A record below it was folded already (a redelivery) and is passed
over; a record above it means the fetcher skipped some, so the agent passes it over too
and seeks the partition back to its position (again, while the record does not come).
The checkpoint commits these positions
itself, once the outputs and the state of everything below them are durable; Faust
never acknowledges or commits these topics. Kafka offsets of a topic that is neither
compacted nor transactional (the platform's are neither) run without holes, which is
what makes "exactly the next one" the right test.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter

T = TypeVar("T")

log = logging.getLogger(__name__)

PASSED_OVER = Counter(
    "cityops_stream_records_passed_over_total",
    "Input records a checkpointed agent did not fold: redelivered, or past a skip",
    ["topic", "reason"],
)
STALLS = Counter(
    "cityops_stream_stalls_total",
    "Partitions found standing still behind their end offset and sought",
    ["topic"],
)
SEEKS = Counter(
    "cityops_stream_seeks_total",
    "Partitions sought back to the agent's position after the fetcher skipped records",
    ["topic"],
)


class Offsets(Protocol):
    """The consumer group's offsets of one topic."""

    async def committed(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The committed offset of each partition that has one."""
        ...

    async def commit(self, topic: str, offsets: Mapping[int, int]) -> None:
        """Commit ``partition → next offset to read``."""
        ...

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        """Make the fetcher read the partition again from ``offset``."""
        ...

    def assigned(self, topic: str) -> set[int]:
        """The partitions of ``topic`` this worker owns now."""
        ...

    def end(self, topic: str, partition: int) -> int | None:
        """The partition's end offset as last seen by the fetcher, if known."""
        ...


@dataclass
class Position:
    """The next offset to fold of each partition of one topic (see the module docstring)."""

    topic: str
    offsets: Offsets
    #: a partition sought back and still waiting is sought again this often
    reseek_s: float = 1.0
    #: a partition behind its end with nothing delivered this long is sought
    stall_s: float = 5.0
    next: dict[int, int] = field(default_factory=dict)
    sought: dict[int, tuple[int, float]] = field(default_factory=dict)
    #: per owned partition: its position when last watched (None: not yet known), since
    watched: dict[int, tuple[int | None, float]] = field(default_factory=dict)

    async def admit(self, partition: int, offset: int) -> bool:
        """Whether the record at ``offset`` is the next one to fold; if so, it is."""
        expected = self.next.get(partition)
        if expected is None:
            # Asked per partition and only for one this worker owns now: a committed
            # offset read earlier may be behind what another owner has done since.
            committed = await self.offsets.committed(self.topic, [partition])
            # With no committed offset the group starts where the fetcher does.
            expected = self.next[partition] = committed.get(partition, offset)
            log.info(
                "partition position set",
                extra={
                    "topic": self.topic,
                    "partition": partition,
                    "next": expected,
                    "committed": partition in committed,
                    "got": offset,
                },
            )
        if offset == expected:
            self.next[partition] = offset + 1
            if self.sought:
                self.sought.pop(partition, None)
            return True
        if offset < expected:
            PASSED_OVER.labels(self.topic, "redelivered").inc()
            return False
        PASSED_OVER.labels(self.topic, "skipped").inc()
        if partition not in self.sought:
            log.warning(
                "fetcher skipped records; seeking back",
                extra={
                    "topic": self.topic,
                    "partition": partition,
                    "next": expected,
                    "got": offset,
                },
            )
            await self._seek(partition, expected)
        return False

    async def watch(self) -> None:
        """Keep the fetcher delivering (called every few tens of milliseconds).

        A partition sought back and still waiting for the record is sought again every
        ``reseek_s``: a batch the fetcher had in hand when it was sought can still be
        delivered after the seek and move its read position past the records sought
        for. A partition that has stood still for ``stall_s`` behind its end offset,
        with nothing delivered, is sought to its position (the committed offset if it
        never had one): a fetcher left holding a stale read position delivers nothing
        more of that partition otherwise.
        """
        now = time.monotonic()
        for partition, (offset, at) in list(self.sought.items()):
            if now - at >= self.reseek_s and self.next.get(partition) == offset:
                log.info(
                    "still waiting for records sought; seeking again",
                    extra={"topic": self.topic, "partition": partition, "next": offset},
                )
                await self._seek(partition, offset)
        owned = self.offsets.assigned(self.topic)
        for partition in [p for p in self.watched if p not in owned]:
            del self.watched[partition]
        for partition in owned:
            here = self.next.get(partition)
            seen = self.watched.get(partition)
            if seen is None or seen[0] != here:
                self.watched[partition] = (here, now)
                continue
            if now - seen[1] < self.stall_s or partition in self.sought:
                continue
            end = self.offsets.end(self.topic, partition)
            if here is None:
                committed = await self.offsets.committed(self.topic, [partition])
                if partition not in committed or partition in self.next:
                    continue
                here = committed[partition]
            if end is None or here >= end:
                self.watched[partition] = (self.next.get(partition), now)
                continue
            log.warning(
                "fetcher stalled behind the end of a partition; seeking",
                extra={"topic": self.topic, "partition": partition, "next": here, "end": end},
            )
            STALLS.labels(self.topic).inc()
            self.next.setdefault(partition, here)
            self.watched[partition] = (self.next[partition], now)
            await self._seek(partition, self.next[partition])

    async def _seek(self, partition: int, offset: int) -> None:
        self.sought[partition] = (offset, time.monotonic())
        SEEKS.labels(self.topic).inc()
        await self.offsets.seek(self.topic, partition, offset)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked: their position is the committed one again."""
        for p in partitions:
            self.next.pop(p, None)
            self.sought.pop(p, None)
            self.watched.pop(p, None)


class FaustOffsets:
    """:class:`Offsets` of a Faust app's consumer group: committed offsets read with an
    admin client, commits and seeks through the app's consumer."""

    def __init__(self, app: Any, bootstrap: str, group: str) -> None:
        self.app = app
        self.bootstrap = bootstrap
        self.group = group
        self._admin: Any = None

    async def committed(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        from aiokafka import TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient

        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            self._admin = admin
        tps = [TopicPartition(topic, p) for p in partitions]
        got = await _retrying(
            lambda: self._admin.list_consumer_group_offsets(self.group, partitions=tps),
            "committed offsets",
        )
        return {tp.partition: meta.offset for tp, meta in got.items() if meta.offset >= 0}

    async def commit(self, topic: str, offsets: Mapping[int, int]) -> None:
        from faust.types import TP

        # Faust's commit path: only partitions still assigned, the producer flushed
        # first, a commit refused after a rebalance left uncommitted (redone by the
        # partition's next owner from the changelog and the last commit).
        await self.app.consumer._commit_offsets({TP(topic, p): o for p, o in offsets.items()})

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        from faust.types import TP

        # In the consumer's own thread, which also resets Faust's read position.
        try:
            await self.app.consumer.seek_wait({TP(topic, partition): offset})
        except Exception as exc:  # revoked meanwhile: its next owner reads it
            log.warning(
                "seek failed", extra={"topic": topic, "partition": partition, "error": repr(exc)}
            )

    def assigned(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}

    def end(self, topic: str, partition: int) -> int | None:
        from faust.types import TP

        try:
            end = self.app.consumer.highwater(TP(topic, partition))
        except Exception:  # not fetched yet, or no longer assigned
            return None
        return end if isinstance(end, int) and end >= 0 else None

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None


async def _retrying(call: Callable[[], Awaitable[T]], what: str, patience_s: float = 120.0) -> T:
    """``call()``, again after a retriable Kafka error (a node lost, the group's
    coordinator or a leader moving) until ``patience_s`` has passed."""
    from aiokafka.errors import KafkaError, KafkaTimeoutError

    deadline = time.monotonic() + patience_s
    delay = 0.1
    while True:
        try:
            return await call()
        except (KafkaError, TimeoutError) as exc:
            retriable = getattr(exc, "retriable", False) or isinstance(
                exc, KafkaTimeoutError | TimeoutError
            )
            if not retriable or time.monotonic() + delay > deadline:
                raise
            log.warning(f"{what} unavailable; retrying", extra={"error": repr(exc)})
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)


@dataclass
class MemoryOffsets:
    """:class:`Offsets` kept in memory: for agents under test without Kafka."""

    commits: dict[tuple[str, int], int] = field(default_factory=dict)
    seeks: list[tuple[str, int, int]] = field(default_factory=list)
    ends: dict[tuple[str, int], int] = field(default_factory=dict)

    async def committed(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        return {p: self.commits[(topic, p)] for p in partitions if (topic, p) in self.commits}

    async def commit(self, topic: str, offsets: Mapping[int, int]) -> None:
        for p, o in offsets.items():
            self.commits[(topic, p)] = o

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        self.seeks.append((topic, partition, offset))

    def assigned(self, topic: str) -> set[int]:
        return {p for t, p in self.ends if t == topic}

    def end(self, topic: str, partition: int) -> int | None:
        return self.ends.get((topic, partition))


async def caught_up(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    """Whether consumer group ``group`` has committed every record of ``topic`` (its
    ``partitions`` partitions; an empty partition counts as caught up)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    tps = [TopicPartition(topic, p) for p in range(partitions)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        ends = await consumer.end_offsets(tps)
    finally:
        await admin.close()
        await consumer.stop()
    return all(
        ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp]) for tp in tps
    )


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """A topic of ``partitions`` partitions, one replica (tests and benchmarks)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
