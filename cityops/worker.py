"""``cityops worker``: the Faust stream worker (detect agent) for the configured cities."""

from __future__ import annotations

import asyncio

import faust

from cityops.settings import Settings


def run_worker(settings: Settings, app_id: str, offset_reset: str) -> None:
    from ingest.registry import Registry, load_now, watch
    from streams.app import create_app

    dsn = settings.db_dsn.get_secret_value()
    # Loaded before consuming, so the first readings already find their devices.
    registry: Registry = load_now(dsn, settings.cities)
    app, _ = create_app(
        settings.kafka_bootstrap, registry, app_id=app_id, offset_reset=offset_reset
    )

    @app.task  # type: ignore[untyped-decorator]  # faust is untyped
    async def keep_registry_current() -> None:
        await watch(dsn, registry, settings.cities, asyncio.Event())

    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
