"""Onboarding and the pipeline's services: ingest, sink, worker, and detection over a recording."""

from __future__ import annotations

from pathlib import Path

import click

from cityops.cli_support import CONTEXT, echo_err, env_option, load_settings, vendors_option
from cityops.errors import CityOpsError


@click.command("onboard", context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@env_option(
    "CITYOPS_ONBOARD_CITY",
    "--city",
    required=True,
    help="GB/T 2260 code of the city the devices belong to.",
)
@env_option(
    "CITYOPS_ONBOARD_CRS",
    "--crs",
    type=click.Choice(["EPSG:4326", "EPSG:4490", "GCJ-02", "BD-09"]),
    default="EPSG:4326",
    help="Coordinates of the file (a `crs` column overrides it per row).",
)
@env_option(
    "CITYOPS_GRID_FILE",
    "--grid",
    "grid_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Unit-grid layer to place devices on.",
)
@click.option(
    "--assets",
    "asset_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Asset layers (pipes with `network`, or assets with `asset_class`).",
)
@click.option(
    "--credentials-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CSV of the new MQTT credentials [credentials-CITY.csv].",
)
@click.option(
    "--rotate-credentials", is_flag=True, help="Issue new passwords to devices onboarded before."
)
@click.option(
    "--client-certs",
    is_flag=True,
    help="Also issue each new device an X.509 client certificate (CN = its MQTT user) for "
    "the broker's certificate listener, beside the CSV with the CA.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def onboard_cmd(  # click passes options positionally
    file: Path,
    city: str,
    crs: str,
    grid_file: Path | None,
    asset_files: tuple[Path, ...],
    credentials_out: Path | None,
    rotate_credentials: bool,
    client_certs: bool,
    quiet: bool,
) -> None:
    """Onboard a city's devices and cameras from GeoJSON or CSV (all rows or none)."""
    from cityops.onboard import onboard
    from geo.errors import GeoError
    from ingest.onboarding import OnboardingError

    settings = load_settings()
    from cityops.onboard import placer_from_files

    try:
        placer = placer_from_files(grid_file, asset_files)
    except GeoError as exc:
        raise CityOpsError(str(exc)) from exc
    out = credentials_out or Path(f"credentials-{city}.csv")
    try:
        result = onboard(
            settings,
            file,
            city,
            crs=crs,
            placer=placer,
            credentials_out=out,
            rotate=rotate_credentials,
            client_certs=client_certs,
            show_progress=not quiet,
        )
    except OnboardingError as exc:
        raise CityOpsError(f"{file}: {exc}") from exc
    click.echo(
        f"onboarded {result.devices} device(s) for city {city}; "
        f"{result.new_credentials} new credential(s)"
        + (f" written to {result.credentials_file}" if result.credentials_file else "")
    )
    if result.tls_bundle is not None:
        click.echo(f"the broker's CA certificate and client certificates: {result.tls_bundle}")


@click.command("ingest", context_settings=CONTEXT)
@env_option(
    "CITYOPS_INGEST_BRIDGES",
    "--bridges",
    type=int,
    default=1,
    help="Bridge processes sharing the subscriptions (MQTT 5 shared subscription).",
)
@env_option(
    "CITYOPS_INGEST_CLIENT_ID",
    "--client-id",
    default="cityops-ingest",
    help="MQTT client id prefix; keep it stable so persistent sessions survive restarts.",
)
@env_option(
    "CITYOPS_INGEST_METRICS_PORT",
    "--metrics-port",
    type=int,
    default=9310,
    help="Prometheus metrics port of the first bridge (0: none).",
)
@vendors_option
@env_option(
    "CITYOPS_INGEST_END_SESSION",
    "--end-session/--keep-session",
    default=False,
    help="On exit, leave for good: unsubscribe, forward what the broker still holds for the "
    "bridges, then end their MQTT sessions, so that their share goes to the bridges that "
    "stay (throw-away client ids). By default a session outlives the bridge for 7 days: a "
    "restart with the same client id picks up what arrived meanwhile, and a restart with "
    "fewer bridges empties and ends the sessions of the ones dropped.",
)
def ingest_cmd(
    bridges: int, client_id: str, metrics_port: int, vendor_dir: Path | None, end_session: bool
) -> None:
    """Run the MQTT -> Kafka bridge for every configured city."""
    from cityops.ingest import run_bridges

    run_bridges(
        load_settings(),
        bridges=bridges,
        client_id=client_id,
        metrics_port=metrics_port,
        vendor_dir=vendor_dir,
        end_session=end_session,
    )


@click.command("sink", context_settings=CONTEXT)
@env_option(
    "CITYOPS_SINK_GROUP",
    "--group",
    default="cityops-sink",
    help="Kafka consumer group of the sink.",
)
@env_option(
    "CITYOPS_SINK_METRICS_PORT",
    "--metrics-port",
    type=int,
    default=9320,
    help="Prometheus metrics port (0: none).",
)
@env_option(
    "CITYOPS_SINK_WORKERS",
    "--workers",
    type=int,
    default=1,
    help="Sink processes in the consumer group (they split the partitions).",
)
@env_option(
    "CITYOPS_SINK_OFFSET_RESET",
    "--offset-reset",
    type=click.Choice(["earliest", "latest"]),
    default="earliest",
    help="Where a new consumer group starts reading (earliest: the topics' whole history).",
)
def sink_cmd(group: str, metrics_port: int, workers: int, offset_reset: str) -> None:
    """Write readings, anomalies, incidents and dead letters from Kafka to the store."""
    import psycopg

    from cityops.sink import run_sinks
    from store.migrate import migrate

    settings = load_settings()
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        migrate(conn, settings.timescale)
    echo_err(f"sink: writing Kafka topics to the store with {workers} worker(s)")
    run_sinks(
        settings,
        workers=workers,
        group=group,
        metrics_port=metrics_port,
        offset_reset=offset_reset,
    )


@click.command("worker", context_settings=CONTEXT)
@env_option(
    "CITYOPS_WORKER_APP_ID",
    "--app-id",
    default="cityops-streams",
    help="Faust app id: the consumer group and table topics.",
)
@env_option(
    "CITYOPS_WORKER_OFFSET_RESET",
    "--offset-reset",
    type=click.Choice(["earliest", "latest"]),
    default="earliest",
    help="Where a new app id starts reading.",
)
@env_option(
    "CITYOPS_RULES_FILE",
    "--rules",
    "rules_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="TOML rules file overriding default thresholds per city or device.",
)
@env_option(
    "CITYOPS_OFFLINE_MIN_S",
    "--offline-min-s",
    type=float,
    default=120.0,
    help="A device counts as offline after five of its usual gaps, at least this long.",
)
@env_option(
    "CITYOPS_LIVENESS_EVERY_S",
    "--liveness-every-s",
    type=float,
    default=10.0,
    help="How often silent devices are looked for.",
)
@env_option(
    "CITYOPS_READINGS_TOPIC",
    "--readings-topic",
    default="cityops.readings",
    help="Kafka topic of readings (another one for a separate replay pipeline).",
)
@env_option(
    "CITYOPS_CHECKPOINT_S",
    "--checkpoint-s",
    type=click.FloatRange(min=0.05),
    default=1.0,
    help="How often anomalies, then state, are made durable and the input acknowledged.",
)
def worker_cmd(
    app_id: str,
    offset_reset: str,
    rules_file: Path | None,
    offline_min_s: float,
    liveness_every_s: float,
    readings_topic: str,
    checkpoint_s: float,
) -> None:
    """Run the stream worker: readings -> detectors -> anomalies -> incidents, and
    offline devices."""
    from cityops.worker import run_worker

    run_worker(
        load_settings(),
        app_id,
        offset_reset,
        rules_file,
        offline_min_s,
        liveness_every_s,
        readings_topic,
        checkpoint_s,
    )


@click.command("detect", context_settings=CONTEXT)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Recorded series: a `timestamp` column and the metric's.",
)
@click.option("--metric", required=True, help="Metric column to score (e.g. ch4, pressure).")
@env_option(
    "CITYOPS_DETECT_KIND",
    "--kind",
    default="generic",
    help="Sensor kind whose rules apply (generic: adaptive baseline only).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output CSV: timestamp, value, anomaly_score, flags, severity.",
)
def detect_cmd(csv_path: Path, metric: str, kind: str, out: Path) -> None:
    """Run the detectors causally over a recorded series (score >= 0.5: would alarm)."""
    from cityops.detect import detect_csv
    from lifeline.kinds import KIND_NAMES

    if kind not in KIND_NAMES:
        raise CityOpsError(f"--kind {kind!r} is not one of {', '.join(sorted(KIND_NAMES))}")
    counts = detect_csv(csv_path, metric, kind, out)
    click.echo(
        f"scored {counts['scored']} of {counts['rows']} rows; "
        f"{counts['anomalous']} anomalous; wrote {out}"
    )
