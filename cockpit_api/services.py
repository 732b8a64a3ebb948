"""What one cockpit API process holds while it runs: the connection pool, the key cache
and rate limiter, the live feed and webhook dispatcher, the map layers, the response
cache, and the escalation loop. One instance lives on ``app.state.services``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from fastapi import Response
from psycopg_pool import ConnectionPool, PoolClosed

from cockpit_api.auth import KeyCache, RateLimiter
from cockpit_api.cache import ResponseCache
from cockpit_api.config import ApiConfig
from cockpit_api.feed import FeedHub
from cockpit_api.layers import LayerCache
from cockpit_api.webhooks import Dispatcher
from store.alerts import escalate_alone
from store.keys import ApiKey, verify_key

log = logging.getLogger(__name__)


def dumps(data: Any) -> bytes:
    """A JSON body as the API writes it (datetimes as RFC 3339)."""
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=str)


class Services:
    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self.pool = ConnectionPool(
            config.dsn,
            min_size=2,
            max_size=config.pool_size,
            kwargs={"autocommit": True},
            open=False,
            name="cockpit",
        )
        self.keys = KeyCache(self._verify)
        self.limiter = RateLimiter(config.rate_per_s, config.burst)
        self.dispatcher = Dispatcher(config.dsn, allow=config.webhook_allow)
        self.hub = FeedHub(config.dsn, on_entries=self.dispatcher.enqueue)
        self.layers = LayerCache(self.pool.connection)
        self.cache = ResponseCache()
        #: lifecycle changes made by this process, ahead of their feed entry
        self.writes = 0
        self._inflight: dict[tuple[object, ...], asyncio.Future[bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def _verify(self, token: str) -> ApiKey | None:
        with self.pool.connection() as conn:
            return verify_key(conn, token)

    async def start(self) -> None:
        await asyncio.to_thread(self.pool.open, True, 10.0)
        if self.config.background:
            await self.hub.start()
            await self.dispatcher.start()
            self._tasks.append(asyncio.create_task(self._escalation(), name="escalation"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.hub.stop()
        await self.dispatcher.stop()
        await asyncio.to_thread(self.pool.close)

    async def _escalation(self) -> None:
        while True:
            await asyncio.sleep(self.config.escalate_every_s)
            try:
                done = await asyncio.to_thread(self._escalate)
                if done:
                    log.info("alerts escalated", extra={"alerts": done})
            except (psycopg.Error, PoolClosed) as exc:
                log.warning("escalation check failed", extra={"error": str(exc)[:200]})

    def _escalate(self) -> list[str]:
        with self.pool.connection() as conn:
            return escalate_alone(conn, datetime.now(UTC)) or []

    # --- cached reads -------------------------------------------------------------------

    def version(self) -> tuple[int, int]:
        """What cached answers are valid for: the feed's head and this process's writes."""
        return (self.hub.head, self.writes)

    def wrote(self) -> None:
        """An alert changed here: cached answers are stale before its feed entry comes."""
        self.writes += 1

    async def cached(
        self, key: tuple[object, ...], ttl_s: float, build: Callable[[], Any]
    ) -> Response:
        """The cached body for ``key`` at the current version, built once however many
        requests ask for it at the same moment."""
        at = self.version()
        body = self.cache.get(key, at)
        if body is not None:
            return Response(body, media_type="application/json")
        flight = self._inflight.get((key, at))
        if flight is not None:
            return Response(await asyncio.shield(flight), media_type="application/json")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[(key, at)] = future
        try:
            body = await asyncio.to_thread(lambda: dumps(build()))
            self.cache.put(key, at, ttl_s, body)
            future.set_result(body)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited failure is not reported
            raise
        finally:
            del self._inflight[(key, at)]
        return Response(body, media_type="application/json")


def json_response(data: Any, status_code: int = 200) -> Response:
    return Response(dumps(data), status_code=status_code, media_type="application/json")


async def readiness(services: Services) -> dict[str, bool]:
    """Whether the database and Kafka both answer."""
    return {
        "database": await asyncio.to_thread(_db_ok, services.pool),
        "kafka": await _kafka_ok(services.config.kafka_bootstrap),
    }


def _db_ok(pool: ConnectionPool[Any]) -> bool:
    try:
        with pool.connection(timeout=2.0) as c:
            c.execute("SELECT 1")
    except (psycopg.Error, OSError, TimeoutError) as exc:
        log.warning("readiness: database", extra={"error": str(exc)[:200]})
        return False
    return True


async def _kafka_ok(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 4)
        await asyncio.wait_for(admin.describe_cluster(), 4)
    except Exception as exc:  # any failure to reach the broker means not ready
        log.warning("readiness: kafka", extra={"error": str(exc)[:200]})
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return True
