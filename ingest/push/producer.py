"""Records of requests that arrive together, produced to Kafka together (``acks=all``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest.decode import Outgoing, batched
from ingest.push.answers import unavailable

log = logging.getLogger(__name__)

#: Seconds to wait for Kafka's acknowledgement before answering 503.
PRODUCE_TIMEOUT_S = 10.0


class GroupProducer:
    """Records of requests that arrive together go to Kafka together. Each request adds
    its records and waits; a flush each loop pass joins the readings of every waiting
    request into batch records (one per partition) and sends them, and each request is
    answered once Kafka has acknowledged its flush (``acks=all``). A thousand single
    reports in flight cost a few Kafka records, not a thousand; a failed flush fails
    exactly the requests it carried."""

    def __init__(self, producer: AIOKafkaProducer, partitions: int) -> None:
        self.producer = producer
        self.partitions = partitions
        self._records: list[Outgoing] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._settling: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._settling, return_exceptions=True)
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(unavailable("the push endpoint is shutting down"))

    async def send(self, records: list[Outgoing]) -> None:
        """Return once ``records`` are in Kafka; raise ``Refused`` (503) otherwise."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._records.extend(records)
        self._waiting.append(waiter)
        self._wake.set()
        await waiter

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # the requests ready in this pass add theirs
            records, waiting = self._records, self._waiting
            self._records, self._waiting = [], []
            try:
                futures = [
                    await self.producer.send(
                        r.topic, value=r.value, key=r.key or None, partition=r.partition
                    )
                    for r in batched(records, self.partitions)
                ]
            except KafkaError as exc:
                _fail(waiting, exc)
                continue
            task = asyncio.create_task(self._settle(futures, waiting))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    async def _settle(self, futures: list[Any], waiting: list[asyncio.Future[None]]) -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*futures), PRODUCE_TIMEOUT_S)
        except (KafkaError, TimeoutError) as exc:
            _fail(waiting, exc)
            return
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)


def _fail(waiting: list[asyncio.Future[None]], exc: BaseException) -> None:
    log.warning("push produce failed", extra={"error": repr(exc)})
    for waiter in waiting:
        if not waiter.done():
            waiter.set_exception(
                unavailable(
                    "the readings could not be stored in Kafka just now; retry the same reports"
                )
            )
