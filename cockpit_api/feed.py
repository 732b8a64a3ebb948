"""The live incident feed: one LISTEN connection per API process, fanned out to clients.

Writers append to ``incident_feed`` and notify on commit; the hub reads what is new and
hands each entry to the subscribers whose cities it belongs to. A client that reconnects
with the last id it saw first gets what it missed from the table, then the live stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from prometheus_client import Counter, Gauge
from psycopg.rows import dict_row

from store.events import FEED_CHANNEL
from store.feed import feed_head, feed_query, feed_since

log = logging.getLogger(__name__)

SUBSCRIBERS = Gauge("cityops_api_feed_subscribers", "Live-feed clients connected")
PUSHED = Counter("cityops_api_feed_events_total", "Feed events pushed to clients")
DROPPED = Counter(
    "cityops_api_feed_slow_clients_total", "Clients disconnected because they fell behind"
)

#: How many entries a slow client may have waiting before it is cut off (it can resume).
QUEUE_LIMIT = 1000


def feed_event(row: dict[str, Any]) -> dict[str, Any]:
    """A feed row as the JSON the clients receive."""
    out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
    out["id"] = out.pop("feed_id")
    return out


@dataclass(eq=False)
class Subscriber:
    cities: tuple[str, ...] | None  # None: every city
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT)
    )

    def wants(self, city: str) -> bool:
        return self.cities is None or city in self.cities


class FeedHub:
    def __init__(
        self,
        dsn: str,
        on_entries: Callable[[list[dict[str, Any]]], None] | None = None,
        poll_s: float = 2.0,
    ) -> None:
        self.dsn = dsn
        self.on_entries = on_entries
        self.poll_s = poll_s
        self.head = 0
        self._subs: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self.head = await asyncio.to_thread(self._head)
        self._task = asyncio.create_task(self._run(), name="feed-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sub in list(self._subs):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)

    def _head(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return feed_head(conn)

    def subscribe(self, cities: Sequence[str] | None) -> Subscriber:
        sub = Subscriber(None if cities is None else tuple(cities))
        self._subs.add(sub)
        SUBSCRIBERS.set(len(self._subs))
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)
        SUBSCRIBERS.set(len(self._subs))

    def backlog(self, after_id: int, cities: Sequence[str] | None) -> list[dict[str, Any]]:
        """Entries after ``after_id`` up to the hub's head, for a resuming client."""
        out: list[dict[str, Any]] = []
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while True:
                rows = [r for r in feed_since(conn, after_id, cities) if r["feed_id"] <= self.head]
                out.extend(feed_event(r) for r in rows)
                if len(rows) < 500:
                    return out
                after_id = rows[-1]["feed_id"]

    async def _run(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                # A second connection reads, since the listening one waits in notifies().
                reader = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                async with conn, reader:
                    await conn.execute(f"LISTEN {FEED_CHANNEL}")
                    await self._drain(reader)
                    listener = asyncio.create_task(self._listen(conn))
                    try:
                        while True:
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(self._wake.wait(), self.poll_s)
                            self._wake.clear()
                            if listener.done():
                                listener.result()
                            await self._drain(reader)
                    finally:
                        listener.cancel()
                        with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                            await listener
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                log.warning("feed connection lost; reconnecting", extra={"error": str(exc)[:200]})
                await asyncio.sleep(1.0)

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async for _ in conn.notifies():
            self._wake.set()

    async def _drain(self, reader: psycopg.AsyncConnection[Any]) -> None:
        while True:
            rows = await _read(reader, self.head)
            if not rows:
                return
            self.head = rows[-1]["feed_id"]
            self._publish(rows)
            if len(rows) < 500:
                return

    def _publish(self, rows: list[dict[str, Any]]) -> None:
        if self.on_entries is not None:
            try:
                self.on_entries(rows)
            except Exception:  # a webhook enqueue failure must not stop the live feed
                log.exception("feed hook failed")
        for row in rows:
            event = feed_event(row)
            for sub in list(self._subs):
                if not sub.wants(row["city"]):
                    continue
                try:
                    sub.queue.put_nowait(event)
                    PUSHED.inc()
                except asyncio.QueueFull:
                    DROPPED.inc()
                    self.unsubscribe(sub)
                    with contextlib.suppress(asyncio.QueueFull):
                        sub.queue.get_nowait()
                        sub.queue.put_nowait(None)


async def _read(conn: psycopg.AsyncConnection[Any], after: int) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(feed_query(by_city=False), {"after": after, "limit": 500})
        return await cur.fetchall()
