"""``cityops sink``: one or several sink processes in one Kafka consumer group."""

from __future__ import annotations

import asyncio

from cityops.processes import run_copies, serving
from cityops.settings import Settings


def run_sinks(
    settings: Settings,
    *,
    workers: int,
    group: str,
    metrics_port: int,
    kinds: dict[str, str] | None = None,
    offset_reset: str = "earliest",
) -> None:
    """Run ``workers`` sink processes splitting the topics' partitions; block until stopped."""
    if workers <= 1:
        asyncio.run(serve(settings, group, metrics_port, kinds, offset_reset))
        return
    run_copies(
        _child,
        [
            (settings, group, metrics_port + i if metrics_port else 0, kinds, offset_reset)
            for i in range(workers)
        ],
        "sink",
    )


def _child(
    settings: Settings,
    group: str,
    metrics_port: int,
    kinds: dict[str, str] | None,
    offset_reset: str,
) -> None:
    from cityops.logs import configure

    configure(settings.log_level)
    asyncio.run(serve(settings, group, metrics_port, kinds, offset_reset))


async def serve(
    settings: Settings,
    group: str,
    metrics_port: int,
    kinds: dict[str, str] | None = None,
    offset_reset: str = "earliest",
) -> None:
    from streams.sink import Sink

    stop = serving(metrics_port, settings.metrics_addr)
    sink = Sink(
        settings.kafka_bootstrap,
        settings.db_dsn.get_secret_value(),
        group_id=group,
        kinds=kinds,
        offset_reset=offset_reset,
    )
    await sink.start()
    try:
        await sink.run(stop)
    finally:
        await sink.stop()
