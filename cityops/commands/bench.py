"""Benchmarks."""

from __future__ import annotations

from pathlib import Path
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
@click.option(
    "--platform",
    type=click.Choice(["cityops", "ctwing", "iotda", "onenet", "hik-isc", "isapi"]),
    default=None,
    help="push: push as this platform does, to its connector (default: our own envelope).",
)
@click.option(
    "--plain",
    is_flag=True,
    help="push: serve and push plain HTTP, as behind a TLS-terminating proxy (default: "
    "HTTPS end to end).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="push: `push serve` processes (default 2).",
)
@click.option(
    "--real",
    is_flag=True,
    help="detect: judge detection on public labelled data sets (shared/datasets, or "
    "CITYOPS_DATASETS) by their published metrics, beside trivial references.",
)
@click.option("--short", is_flag=True, help="detect --real: the first 60,000 rows of long sets.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="detect --real: score this CSV instead (one piece of equipment: a time column, "
    "a label column, every other numeric column a metric).",
)
@click.option("--label", default="label", show_default=True, help="--csv: the label column.")
@click.option(
    "--time", "time_col", default="time", show_default=True, help="--csv: the time column."
)
@click.option("--time-format", default=None, help="--csv: strftime format of the times.")
@click.option(
    "--learn",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="--csv: a file of normal rows to learn from first (repeatable).",
)
@click.option(
    "--scoring",
    type=click.Choice(["events", "rows"]),
    default="rows",
    show_default=True,
    help="--csv: events (BATADAL's S) or rows (row-wise F1).",
)
@click.option(
    "--judged-after-days",
    type=float,
    default=0.0,
    show_default=True,
    help="--csv: rows earlier than this after the first are learning time, not scored.",
)
def bench_cmd(
    name: str,
    runs: int | None,
    kafka_brokers: int | None,
    platform: str | None,
    plain: bool,
    workers: int | None,
    real: bool,
    short: bool,
    csv_path: Path | None,
    label: str,
    time_col: str,
    time_format: str | None,
    learn: tuple[Path, ...],
    scoring: str,
    judged_after_days: float,
) -> None:
    """Run benchmark NAME; the last line is one JSON object with its figures."""
    import bench

    names = bench.available()
    if name not in names:
        raise CityOpsError(f"no benchmark {name!r}; choose one of: {', '.join(names)}")
    if real or csv_path is not None:
        if name != "detect":
            raise CityOpsError("--real and --csv are options of `cityops bench detect` only")
        from bench import _detect_real

        datasets = None
        if csv_path is not None:
            datasets = [
                _detect_real.Dataset(
                    csv_path.stem,
                    csv_path,
                    label,
                    time_col,
                    "events" if scoring == "events" else "rows",
                    time_format=time_format,
                    learn=learn,
                    judged_after_days=judged_after_days,
                )
            ]
        try:
            result = {"name": "detect-real", **_detect_real.run(datasets, short=short)}
        except (FileNotFoundError, ValueError) as exc:
            raise CityOpsError(str(exc)) from exc
        click.echo(bench.dumps(result))
        return
    options: dict[str, Any] = {} if runs is None else {"runs": runs}
    if kafka_brokers is not None:
        if name != "e2e":
            raise CityOpsError("--kafka-brokers is an option of `cityops bench e2e` only")
        options["kafka_brokers"] = kafka_brokers
    if platform is not None:
        if name != "push":
            raise CityOpsError("--platform is an option of `cityops bench push` only")
        options["platform"] = platform
    if plain or workers is not None:
        if name != "push":
            raise CityOpsError("--plain and --workers are options of `cityops bench push` only")
        options["tls"] = not plain
        if workers is not None:
            options["workers"] = workers
    click.echo(bench.dumps(bench.run(name, **options)))
