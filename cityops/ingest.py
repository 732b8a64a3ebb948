"""``cityops ingest``: one or several bridge processes for the configured cities.

Bridges are numbered ``{client_id}-1`` to ``-N``, each with a persistent MQTT session in
one shared-subscription group. The broker keeps routing a share of the traffic to the
session of a bridge that is gone, so a run with fewer bridges than the one before first
empties the sessions left behind (numbers N+1 on, as long as the broker holds one) and
ends them: scaling down loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from cityops.processes import run_copies, serving
from cityops.settings import Settings
from ingest.bridge import BridgeConfig, Decoder

log = logging.getLogger(__name__)


def bridge_config(settings: Settings, client_id: str, topic_filters: Sequence[str]) -> BridgeConfig:
    """A bridge's configuration: the platform's MQTT account and Kafka, these filters."""
    return BridgeConfig(
        mqtt_host=settings.mqtt_host,
        mqtt_port=settings.mqtt_port,
        mqtt_username=settings.mqtt_username,
        mqtt_password=settings.mqtt_password.get_secret_value(),
        kafka_bootstrap=settings.kafka_bootstrap,
        client_id=client_id,
        subscriptions=topic_filters,
    )


def run_bridges(
    settings: Settings,
    *,
    bridges: int,
    client_id: str,
    metrics_port: int,
    vendor_dir: Path | None,
    end_session: bool = False,
) -> None:
    drain = (client_id, bridges + 1)
    if bridges <= 1:
        asyncio.run(serve(settings, f"{client_id}-1", metrics_port, vendor_dir, end_session, drain))
        return
    run_copies(
        _child,
        [
            (
                settings,
                f"{client_id}-{i + 1}",
                metrics_port + i if metrics_port else 0,
                vendor_dir,
                end_session,
                drain if i == 0 else None,
            )
            for i in range(bridges)
        ],
        "bridge",
    )


def _child(
    settings: Settings,
    client_id: str,
    metrics_port: int,
    vendor_dir: Path | None,
    end_session: bool,
    drain: tuple[str, int] | None,
) -> None:
    from cityops.logs import configure

    configure(settings.log_level)
    asyncio.run(serve(settings, client_id, metrics_port, vendor_dir, end_session, drain))


async def serve(
    settings: Settings,
    client_id: str,
    metrics_port: int,
    vendor_dir: Path | None,
    end_session: bool = False,
    drain: tuple[str, int] | None = None,
) -> None:
    """Run one bridge until SIGINT/SIGTERM; ``drain`` = (client id prefix, first number):
    meanwhile empty and end the sessions of bridges numbered from there on."""
    from ingest import metrics
    from ingest.adapters import load_vendors
    from ingest.bridge import Bridge, subscriptions
    from ingest.decode import Decoder
    from lifeline.registry import Registry
    from store.registry import watch

    stop = serving(metrics_port, settings.metrics_addr)
    registry = Registry()
    dsn = settings.db_dsn.get_secret_value()
    watcher = asyncio.create_task(watch(dsn, registry, settings.cities, stop))
    for _ in range(100):
        if len(registry) or watcher.done():
            break
        await asyncio.sleep(0.1)
    metrics.REGISTRY.set(len(registry))
    vendors = load_vendors(*([vendor_dir] if vendor_dir else []))
    config = bridge_config(settings, client_id, subscriptions(settings.cities))
    decoder = Decoder(registry, vendors)
    bridge = Bridge(config, decoder)
    await bridge.start()
    drainer = (
        asyncio.create_task(drain_left_sessions(settings, drain[0], drain[1], decoder))
        if drain
        else None
    )
    log.info(
        "ingest bridging",
        extra={
            "client_id": client_id,
            "devices": len(registry),
            "subscriptions": list(config.subscriptions),
        },
    )
    try:
        await bridge.run(stop)
    finally:
        stop.set()
        if end_session:
            await bridge.leave()
        else:
            await bridge.stop(keep_session=True)
        if drainer is not None:
            await drainer
        await watcher


async def drain_left_sessions(
    settings: Settings, prefix: str, first: int, decode: Decoder, most: int = 64
) -> list[str]:
    """Empty and end the sessions of bridges ``{prefix}-{first}`` on, left by an earlier
    run with more bridges, until a number with no session; return the client ids."""
    from ingest.bridge import Bridge, subscriptions

    drained: list[str] = []
    for number in range(first, first + most):
        client_id = f"{prefix}-{number}"
        config = bridge_config(settings, client_id, subscriptions(settings.cities))
        bridge = Bridge(config, decode, subscribe=False)
        await bridge.start()
        if not bridge.session_present:
            await bridge.stop(keep_session=False)  # ends the empty session just made
            break
        await bridge.leave()
        log.info(
            "drained the session of a bridge gone",
            extra={"client_id": client_id, "messages": bridge.handled},
        )
        drained.append(client_id)
    return drained
