"""Loading the device registry from the store and keeping it current: reloaded on every
devices NOTIFY (onboarding sends one) and every minute."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import psycopg

from lifeline.devices import Device
from lifeline.registry import Registry
from store.devices import DEVICES_CHANNEL, load_devices

log = logging.getLogger(__name__)


async def watch(
    dsn: str,
    registry: Registry,
    cities: Sequence[str],
    stop: asyncio.Event,
    refresh_s: float = 60.0,
) -> None:
    """Load the registry, then reload it on every devices NOTIFY (and every ``refresh_s``).

    Database outages are logged and retried; the last good registry stays in use.
    """
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(f"LISTEN {DEVICES_CHANNEL}")
                await _reload(dsn, registry, cities)
                clock = asyncio.get_running_loop().time
                due = clock() + refresh_s
                while not stop.is_set():
                    changed = False
                    # Short waits, so that a stopping service is not held up here.
                    async for _ in conn.notifies(timeout=1.0, stop_after=1):
                        changed = True
                    if changed or clock() >= due:
                        await _reload(dsn, registry, cities)
                        due = clock() + refresh_s
        except psycopg.Error as exc:
            log.warning("device registry unavailable; retrying", extra={"error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=2.0)


async def _reload(dsn: str, registry: Registry, cities: Sequence[str]) -> None:
    def load() -> list[Device]:
        with psycopg.connect(dsn) as conn:
            return load_devices(conn, cities)

    devices = await asyncio.to_thread(load)
    registry.replace(devices)
    log.info("device registry loaded", extra={"devices": len(devices)})


def load_now(dsn: str, cities: Sequence[str]) -> Registry:
    with psycopg.connect(dsn) as conn:
        return Registry(load_devices(conn, cities))
