"""``cityops worker``: the Faust stream worker (detect agent) for the configured cities."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import faust
from aiokafka.errors import KafkaError

from cityops.errors import ConfigError
from cityops.logs import configure
from cityops.settings import Settings


def run_worker(
    settings: Settings,
    app_id: str,
    offset_reset: str,
    rules_file: Path | None = None,
    offline_min_s: float = 120.0,
    liveness_every_s: float = 10.0,
    readings_topic: str | None = None,
    checkpoint_s: float = 1.0,
) -> None:
    from lifeline import topics
    from lifeline.detect.rules import RuleBook, RulesError
    from lifeline.registry import Registry
    from store.registry import load_now, watch
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

    async def acknowledged(after: int) -> tuple[list[tuple[str, str, str, float]], int]:
        import psycopg

        from store.events import acknowledged_series

        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                return await acknowledged_series(conn, after, settings.cities)
        except psycopg.Error as exc:
            logging.getLogger(__name__).warning(
                "acknowledgements unavailable; retrying", extra={"error": str(exc)}
            )
            return [], after

    topic = readings_topic or topics.READINGS.name
    # The topic's own partition count (CITYOPS_READINGS_PARTITIONS when the stack made
    # it): the detect table and its changelog are partitioned like it.
    partitions = asyncio.run(topic_partitions(settings.kafka_bootstrap, topic))
    app, agents = create_app(
        settings.kafka_bootstrap,
        registry,
        app_id=app_id,
        offset_reset=offset_reset,
        rules=rules,
        offline_min_s=offline_min_s,
        liveness_every_s=liveness_every_s,
        readings_topic=topic,
        readings_partitions=partitions,
        checkpoint_s=checkpoint_s,
        acknowledged=acknowledged,
        replication_factor=settings.kafka_replication,
        data_dir=settings.worker_data,
    )

    asyncio.run(
        ensure_changelogs(
            settings.kafka_bootstrap,
            {
                f"{app_id}-detect-state-changelog": partitions,
                f"{app_id}-correlate-state-changelog": topics.ANOMALIES.partitions,
            },
            settings.kafka_replication,
            settings.kafka_min_insync,
        )
    )

    @app.task  # type: ignore[untyped-decorator]  # faust is untyped
    async def keep_registry_current() -> None:
        await watch(dsn, registry, settings.cities, asyncio.Event())

    # asyncio's own loop: uvloop measured no faster here (bench detect, 1,000,000 readings:
    # 33.4k and 33.1k readings/s against 35.8k and 34.9k); the cost is in Python code.
    worker = _Worker(app, loglevel=settings.log_level.lower(), quiet=True)
    worker.checkpoints = agents.checkpoint
    worker.offsets = agents.offsets
    worker.execute_from_commandline()


class _Worker(faust.Worker):
    """Faust's worker, logging as every CityOps service does: JSON lines on stderr at
    the configured level (Faust would put colour logs on stdout and, below INFO, lower
    the root logger to DEBUG for its progress spinner); asked to stop, it checkpoints
    first, so that the offsets of what it consumed are committed before it leaves."""

    checkpoints: list[Any] = []  # noqa: RUF012  # set once per worker, before it starts
    offsets: Any = None

    async def _stop_on_signal(self, signal: Any) -> None:
        for cp in self.checkpoints:
            try:
                await asyncio.wait_for(cp.flush(), timeout=10)
            except (TimeoutError, KafkaError) as exc:
                # Not committed: the next owner of the partitions does it again.
                logging.getLogger(__name__).warning(
                    "final checkpoint failed", extra={"error": repr(exc)}
                )
        close = getattr(self.offsets, "close", None)
        if close is not None:
            await close()
        await super()._stop_on_signal(signal)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        configure(logging.getLevelName(level or logging.INFO))


async def topic_partitions(bootstrap: str, topic: str) -> int:
    """How many partitions ``topic`` has; a clear error when it does not exist."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    found = len(described.get("partitions") or ())
    if not found:
        raise ConfigError(
            f"Kafka at {bootstrap} has no topic {topic}: `cityops stack up` creates the "
            "platform's topics"
        )
    return found


async def ensure_changelogs(
    bootstrap: str, partitions: dict[str, int], replication: int = 1, min_insync: int = 1
) -> None:
    """Create the tables' changelog topics (name → partitions; ``replication`` replicas,
    ``min.insync.replicas`` ``min_insync``) before Faust starts, and wait until the
    broker's metadata shows all their partitions: a topic Faust creates itself can show
    zero partitions for a moment, which it takes for a partition mismatch and stops."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    names = list(partitions)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            # Another worker of the group may create them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            n,
                            partitions[n],
                            replication,
                            topic_configs={
                                "cleanup.policy": "compact",
                                "min.insync.replicas": str(min_insync),
                            },
                        )
                        for n in missing
                    ]
                )
        found: dict[str, int] = {}
        for _ in range(100):
            described = await admin.describe_topics(names)
            found = {t["topic"]: len(t.get("partitions", ())) for t in described}
            if found == partitions:
                return
            if any(found.get(n, 0) not in (0, partitions[n]) for n in names):
                break
            await asyncio.sleep(0.1)
        raise ConfigError(
            f"the changelog topics have {found} partitions where {partitions} are needed; "
            "after the readings topic grew, delete the worker's changelog topics (its "
            "series learn afresh) and start it again"
        )
    finally:
        await admin.close()
