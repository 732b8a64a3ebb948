"""Checkpoints of a stateful agent: outputs durable → state durable → input acknowledged.

An agent folds its input with no awaits, keeping each key's state as an object in
memory (the table is its durable copy and the source after a restart or a rebalance),
and hands what the fold produced to a :class:`Checkpoint`: the output records, the keys
whose state changed, the events consumed. A flush, every ``interval_s`` or after
``max_events`` events, or ``output_delay_s`` after the fold produced an output (an
anomaly or an incident waits no longer than that for its checkpoint), does in this order
and waits for each step to be durable:

1. the output records (anomalies, incidents) are in Kafka;
2. the changelog records of the changed keys are in Kafka (and in the table's store);
3. the offsets past the consumed records are committed (the agent's own positions,
   :mod:`streams.offsets`).

A crash between any two steps is safe on replay: outputs have deterministic ids, so a
record sent again is the same record; a state already written makes the replayed input
stale, which the agents skip; the committed offset never passes a record whose state or
outputs are not durable. Revoked partitions drop their pending work; the new owner
redoes it from the committed offsets and the changelog.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

FLUSHES = Counter("cityops_checkpoint_total", "Checkpoints flushed", ["agent"])
FLUSH_SECONDS = Histogram(
    "cityops_checkpoint_seconds",
    "Time to make one checkpoint durable",
    ["agent"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

S = TypeVar("S")


class Out(NamedTuple):
    """A record to produce; ``partition`` None: the key's partition."""

    topic: str
    key: bytes
    value: bytes
    partition: int | None = None


#: Produces records and returns once every one of them is durable (acks=all).
Publish = Callable[[list[Out]], Awaitable[None]]

#: Steps after which a fault plan may end the process (see :class:`FaultPlan`).
STEPS = ("outputs", "state", "offsets")


@dataclass
class FaultPlan:
    """Ends the process (``os._exit``) right after step ``step`` of the ``nth`` checkpoint
    of agent ``agent`` that had outputs: the crash drills' way to stop a worker between
    the steps of a checkpoint. Read from ``CITYOPS_FAULT`` as ``agent:step:nth``."""

    agent: str
    step: str
    nth: int
    seen: int = 0

    @classmethod
    def from_env(cls) -> FaultPlan | None:
        spec = os.environ.get("CITYOPS_FAULT", "")
        if not spec:
            return None
        agent, step, nth = spec.split(":")
        if step not in STEPS:
            raise ValueError(f"CITYOPS_FAULT step must be one of {STEPS}, not {step!r}")
        return cls(agent, step, int(nth))

    def reached(self, agent: str, step: str, had_outputs: bool) -> None:
        if agent != self.agent or not had_outputs:
            return
        if step == STEPS[0]:
            self.seen += 1
        if step == self.step and self.seen == self.nth:
            log.warning("fault plan: exiting", extra={"agent": agent, "after": step})
            logging.shutdown()
            os._exit(137)


@dataclass
class Checkpoint(Generic[S]):
    """Pending work of one agent between checkpoints (see the module docstring)."""

    agent: str
    publish: Publish
    changelog_topic: str
    store: Any  # the table's store: a mapping of key → serialized state
    dumps: Callable[[S], bytes]
    #: commits ``partition → next offset`` of the agent's input
    commit: Callable[[Mapping[int, int]], Awaitable[None]]
    #: a key as the table's changelog holds it (the table's key serializer)
    changelog_key: Callable[[str], bytes] = str.encode
    interval_s: float = 1.0
    max_events: int = 2000
    output_delay_s: float = 0.05
    fault: FaultPlan | None = None
    outputs: list[tuple[int, Out]] = field(default_factory=list)
    dirty: dict[str, tuple[int, S]] = field(default_factory=dict)
    #: the next offset of each partition past the records folded since the last flush
    upto: dict[int, int] = field(default_factory=dict)
    events: int = 0
    last: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def output(self, partition: int, out: Out) -> None:
        self.outputs.append((partition, out))

    def changed(self, key: str, partition: int, state: S) -> None:
        self.dirty[key] = (partition, state)

    def consumed(self, partition: int, offset: int) -> None:
        self.upto[partition] = offset + 1
        self.events += 1

    def due(self) -> bool:
        if not self.events:
            return False
        elapsed = time.monotonic() - self.last
        return (
            self.events >= self.max_events
            or elapsed >= self.interval_s
            or (bool(self.outputs) and elapsed >= self.output_delay_s)
        )

    async def maybe_flush(self) -> None:
        if self.due():
            await self.flush()

    async def flush(self) -> None:
        """Make what is pending durable, in order; one flush at a time."""
        async with self.lock:
            self.last = time.monotonic()
            outputs, dirty, upto = self.outputs, self.dirty, self.upto
            if not (outputs or dirty or upto):
                return
            self.outputs, self.dirty, self.upto, self.events = [], {}, {}, 0
            t0 = time.perf_counter()
            # Serialized now: the objects go on changing while the flush waits.
            changelog = [
                (key, partition, self.dumps(state)) for key, (partition, state) in dirty.items()
            ]
            had_outputs = bool(outputs)
            if outputs:
                await self.publish([out for _p, out in outputs])
            self._fault("outputs", had_outputs)
            if changelog:
                await self.publish(
                    [
                        Out(self.changelog_topic, self.changelog_key(k), v, p)
                        for k, p, v in changelog
                    ]
                )
                for key, _partition, value in changelog:
                    self.store[key] = value
            self._fault("state", had_outputs)
            if upto:
                await self.commit(upto)
            self._fault("offsets", had_outputs)
            FLUSHES.labels(self.agent).inc()
            FLUSH_SECONDS.labels(self.agent).observe(time.perf_counter() - t0)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Forget the pending work of partitions this worker no longer owns."""
        gone = set(partitions)
        if not gone:
            return
        self.outputs = [(p, o) for p, o in self.outputs if p not in gone]
        self.dirty = {k: (p, s) for k, (p, s) in self.dirty.items() if p not in gone}
        self.upto = {p: o for p, o in self.upto.items() if p not in gone}

    def _fault(self, step: str, had_outputs: bool) -> None:
        if self.fault is not None:
            self.fault.reached(self.agent, step, had_outputs)


def kafka_publisher(producer: Callable[[], Any]) -> Publish:
    """A :data:`Publish` over Faust's producer (``app.producer``), taken at call time."""

    async def publish(records: list[Out]) -> None:
        send = producer().send
        futures = [await send(r.topic, r.key, r.value, r.partition, None, None) for r in records]
        await asyncio.gather(*futures)

    return publish
