"""``cityops worker``: the Faust stream worker (detect agent) for the configured cities."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust

from cityops.errors import ConfigError
from cityops.settings import Settings


def run_worker(
    settings: Settings,
    app_id: str,
    offset_reset: str,
    rules_file: Path | None = None,
    offline_min_s: float = 120.0,
    liveness_every_s: float = 10.0,
    readings_topic: str | None = None,
) -> None:
    from ingest.registry import Registry, load_now, watch
    from lifeline import topics
    from lifeline.detect.rules import RuleBook, RulesError
    from streams.app import create_app

    rules = None
    if rules_file is not None:
        try:
            rules = RuleBook.load(rules_file)
        except RulesError as exc:
            raise ConfigError(f"the rules file cannot be used: {exc}") from exc

    dsn = settings.db_dsn.get_secret_value()
    # Loaded before consuming, so the first readings already find their devices.
    registry: Registry = load_now(dsn, settings.cities)
    app, _ = create_app(
        settings.kafka_bootstrap,
        registry,
        app_id=app_id,
        offset_reset=offset_reset,
        rules=rules,
        offline_min_s=offline_min_s,
        liveness_every_s=liveness_every_s,
        readings_topic=readings_topic or topics.READINGS.name,
    )

    @app.task  # type: ignore[untyped-decorator]  # faust is untyped
    async def keep_registry_current() -> None:
        await watch(dsn, registry, settings.cities, asyncio.Event())

    worker = faust.Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.execute_from_commandline()
