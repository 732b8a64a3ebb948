"""Benchmarks."""

from __future__ import annotations

from typing import Any

import click

from cityops.cli_support import CONTEXT, env_option
from cityops.errors import CityOpsError


@click.command("bench", context_settings=CONTEXT)
@click.argument("name")
@env_option(
    "CITYOPS_BENCH_RUNS",
    "--runs",
    type=int,
    default=None,
    help="Timed repetitions (the median is reported); each benchmark has its own default.",
)
@click.option(
    "--kafka-brokers",
    type=click.IntRange(2, 9),
    default=None,
    help="e2e: also run on a Kafka of this many nodes, started for the run, and report "
    "what replication costs.",
)
def bench_cmd(name: str, runs: int | None, kafka_brokers: int | None) -> None:
    """Run benchmark NAME; the last line is one JSON object with its figures."""
    import bench

    names = bench.available()
    if name not in names:
        raise CityOpsError(f"no benchmark {name!r}; choose one of: {', '.join(names)}")
    options: dict[str, Any] = {} if runs is None else {"runs": runs}
    if kafka_brokers is not None:
        if name != "e2e":
            raise CityOpsError("--kafka-brokers is an option of `cityops bench e2e` only")
        options["kafka_brokers"] = kafka_brokers
    click.echo(bench.dumps(bench.run(name, **options)))
