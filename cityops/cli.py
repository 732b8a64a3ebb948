"""The ``cityops`` console script: every service and tool is a subcommand."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from cityops import __version__
from cityops.errors import CityOpsError, ConfigError
from cityops.settings import Settings, fresh_env_lines, get_settings
from lifeline.codes import is_city_code
from lifeline.roles import ROLES
from simulators.names import SCENARIOS as SIM_SCENARIOS

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


def load_settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"  CITYOPS_{field.upper()}: {err['msg']}")
        raise ConfigError(
            "the configuration is incomplete or invalid:\n"
            + "\n".join(problems)
            + "\nSet these variables, or run `cityops secrets init` to write a .env "
            "file with fresh secrets for a local stack."
        ) from exc


def echo_err(message: str) -> None:
    click.echo(message, err=True)


vendors_option = click.option(
    "--vendors",
    "vendor_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CITYOPS_VENDOR_DIR",
    show_envvar=True,
    help="Extra folder of vendor mapping files (*.toml).",
)


class CityOpsGroup(click.Group):
    """Turn project errors into a message and exit code 2 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CityOpsError as exc:
            echo_err(f"error: {exc}")
            sys.exit(2)


@click.group(cls=CityOpsGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="cityops")
def main() -> None:
    """CityOps: unified city-operations platform for lifeline monitoring.

    Configuration comes from CITYOPS_* environment variables and the .env file
    (see `cityops config show`).
    """
    from cityops.logs import configure

    configure(os.environ.get("CITYOPS_LOG_LEVEL", "INFO"))


# -- config and secrets -------------------------------------------------------------------


@main.group(context_settings=CONTEXT)
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def config_show(as_json: bool) -> None:
    """Print the effective configuration, secrets hidden."""
    data = load_settings().redacted()
    if as_json:
        click.echo(json.dumps(data))
        return
    for key, value in data.items():
        click.echo(f"CITYOPS_{key.upper():<20} {value}")


@main.group(context_settings=CONTEXT)
def secrets() -> None:
    """Manage the local stack's secrets."""


@secrets.command("init")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".env"),
    envvar="CITYOPS_ENV_FILE",
    show_envvar=True,
    help="File to write.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def secrets_init(env_file: Path, force: bool) -> None:
    """Write an env file with fresh random secrets (kept if it already exists; secrets it
    lacks are added)."""
    if env_file.exists() and not force:
        text = env_file.read_text()
        present = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line}
        missing = [
            line
            for line in fresh_env_lines()
            if "=" in line and line.split("=", 1)[0] not in present
        ]
        if not missing:
            click.echo(f"{env_file} exists; keeping it (use --force to replace)")
            return
        with env_file.open("a") as fh:
            fh.write(("" if text.endswith("\n") or not text else "\n") + "\n".join(missing) + "\n")
        names = ", ".join(line.split("=", 1)[0] for line in missing)
        click.echo(f"{env_file} exists; added {names}")
        return
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(fresh_env_lines()) + "\n")
    click.echo(f"wrote {env_file} with fresh secrets")


# -- stack -----------------------------------------------------------------------------------


@main.group(context_settings=CONTEXT)
def stack() -> None:
    """Run the local stack: Kafka, Mosquitto and PostgreSQL on 127.0.0.1."""


@stack.command("up")
@click.option(
    "--kafka-brokers",
    type=click.IntRange(1, 9),
    default=None,
    help="Kafka nodes to run (default CITYOPS_KAFKA_BROKERS, 1); 3 runs a replicated "
    "cluster. Set CITYOPS_KAFKA_BROKERS to the same for every other command.",
)
def stack_up(kafka_brokers: int | None) -> None:
    """Install what is missing and start every service that is not running."""
    from cityops import stack as stack_mod

    configured = load_settings()
    settings = configured
    if kafka_brokers is not None and kafka_brokers != configured.kafka_brokers:
        first = configured.kafka_bootstrap.split(",")[0]
        settings = Settings(
            _env_file=None,
            **{
                **configured.model_dump(),
                "kafka_brokers": kafka_brokers,
                "kafka_bootstrap": first,
            },
        )
    results = stack_mod.up(settings, log=lambda m: echo_err(f"stack: {m}"))
    for r in results:
        state = "started" if r.started else "running"
        notes = f" ({'; '.join(r.notes)})" if r.notes else ""
        click.echo(f"{r.name:<9} {state:<8} {r.seconds:6.1f} s{notes}")
    if settings is not configured:
        echo_err(
            f"Kafka runs {settings.kafka_brokers} node(s) at {settings.kafka_bootstrap}: set "
            f"CITYOPS_KAFKA_BROKERS={settings.kafka_brokers} in the environment or .env so "
            "that the other commands (and `stack status`, `stack down`) use them"
        )


@stack.command("down")
def stack_down() -> None:
    """Stop the services this stack started (by recorded pid)."""
    from cityops import stack as stack_mod

    for name, stopped in stack_mod.down(load_settings()).items():
        click.echo(f"{name:<9} {'stopped' if stopped else 'was not running'}")


@stack.command("status")
@click.option("--json", "as_json", is_flag=True, help="Last line: one JSON object.")
def stack_status(as_json: bool) -> None:
    """Say per service its address and whether it answers."""
    from cityops import stack as stack_mod

    statuses = stack_mod.status(load_settings())
    for name, st in statuses.items():
        mark = "ok" if st.ok else "DOWN"
        extra = f" pid {st.pid}" if st.pid else ""
        detail = f" - {st.detail}" if st.detail else ""
        click.echo(f"{name:<9} {mark:<5} {st.address}{extra}{detail}")
    if as_json:
        click.echo(json.dumps({name: st.as_json() for name, st in statuses.items()}))
    if not all(st.ok for st in statuses.values()):
        sys.exit(1)


# -- broker ------------------------------------------------------------------------------


@main.group(context_settings=CONTEXT)
def broker() -> None:
    """The device broker's accounts and certificates (Mosquitto dynamic security)."""


@broker.command("init")
@click.argument("dynsec_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--tls-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also create a device CA and the broker's certificate here (if absent).",
)
@click.option("--host", "hosts", multiple=True, help="Name the broker's certificate is for.")
def broker_init(dynsec_file: Path, tls_dir: Path | None, hosts: tuple[str, ...]) -> None:
    """Write a new broker's dynamic-security file (admin and platform accounts and roles,
    everything else denied) unless it exists; e.g. for a container's first start."""
    from ingest.broker_accounts import initial_config
    from ingest.pki import ensure_ca, ensure_server_cert

    settings = load_settings()
    try:
        admin = settings.mqtt_admin()
    except ValueError as exc:
        raise CityOpsError(str(exc)) from exc
    if dynsec_file.exists():
        click.echo(f"{dynsec_file} exists; keeping it (accounts change through the broker)")
    else:
        dynsec_file.parent.mkdir(parents=True, exist_ok=True)
        config = initial_config(
            admin, (settings.mqtt_username, settings.mqtt_password.get_secret_value())
        )
        fd = os.open(dynsec_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(config, fh, indent=2)
        click.echo(f"wrote {dynsec_file}")
    if tls_dir is not None:
        ensure_server_cert(ensure_ca(tls_dir), tls_dir, list(hosts))
        click.echo(f"CA and broker certificate in {tls_dir}")


@broker.command("accounts")
@click.option("--city", default="", help="Only the devices of this city.")
def broker_accounts(city: str) -> None:
    """Count the accounts the broker holds (devices of a city with --city)."""
    from cityops.onboard import broker_admin

    with broker_admin(load_settings()) as admin:
        names = admin.usernames(f"{city}." if city else "")
    click.echo(json.dumps({"accounts": len(names), "city": city or None}))


# -- demo --------------------------------------------------------------------------------


@main.group(context_settings=CONTEXT)
def demo() -> None:
    """Run the whole platform locally for the demo city."""


@demo.command("up")
def demo_up() -> None:
    """Start the stack, migrate the database and start the platform services."""
    from cityops import demo as demo_mod

    settings = load_settings()
    for line in demo_mod.up(settings, log=lambda m: echo_err(f"demo: {m}")):
        click.echo(line)
    click.echo(
        f"CityOps is up for cities {', '.join(settings.cities)}: MQTT {settings.mqtt_url}, "
        f"Kafka {settings.kafka_bootstrap}; stop it with `cityops demo down`"
    )


@demo.command("down")
def demo_down() -> None:
    """Stop the platform services and the stack."""
    from cityops import demo as demo_mod

    for name, stopped in demo_mod.down(load_settings()).items():
        click.echo(f"{name:<9} {'stopped' if stopped else 'was not running'}")


# -- schemas -----------------------------------------------------------------------------


@main.group(context_settings=CONTEXT)
def schema() -> None:
    """Wire-record schemas."""


@schema.command("export")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    envvar="CITYOPS_SCHEMA_OUT",
    show_envvar=True,
    help="Folder to write the JSON Schemas into.",
)
def schema_export(out: Path) -> None:
    """Write the JSON Schema of every wire record (Reading, VideoEvent, Anomaly, Incident)."""
    from lifeline.records import export_schemas

    for path in export_schemas(out):
        click.echo(str(path))


# -- database -----------------------------------------------------------------------------


@main.group(context_settings=CONTEXT)
def db() -> None:
    """The platform database."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply every schema migration not applied yet (safe to re-run)."""
    import psycopg

    from store.migrate import describe, migrate

    dsn = load_settings().db_dsn.get_secret_value()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            applied = migrate(conn)
            path = describe(conn)
    except psycopg.OperationalError as exc:
        raise CityOpsError(
            f"cannot reach the database: {exc}; is `cityops stack up` running?"
        ) from exc
    for m in applied:
        click.echo(f"applied {m.version:04d}_{m.name}")
    if not applied:
        click.echo("schema is up to date")
    click.echo(f"schema: {path}")


@db.command("retention")
@click.option("--city", help="Set this city's retention (with --keep-days) before applying.")
@click.option("--keep-days", type=int, help="Days of readings the city keeps.")
@click.option(
    "--default-days",
    type=int,
    default=400,
    envvar="CITYOPS_RETENTION_DAYS",
    show_envvar=True,
    help="Retention of cities without their own.",
)
def db_retention(city: str | None, keep_days: int | None, default_days: int) -> None:
    """Apply the readings retention of every city (drop old days, delete per city)."""
    from datetime import UTC, datetime

    import psycopg

    from store.retention import apply_retention, set_retention

    if (city is None) != (keep_days is None):
        raise CityOpsError("give --city and --keep-days together")
    with psycopg.connect(load_settings().db_dsn.get_secret_value(), autocommit=True) as conn:
        if city is not None and keep_days is not None:
            set_retention(conn, city, keep_days)
        result = apply_retention(conn, datetime.now(UTC), default_days)
    click.echo(f"dropped {result.dropped_partitions} day(s), deleted {result.deleted_rows} row(s)")


@db.command("rollups")
def db_rollups() -> None:
    """Refresh the 1-minute and 1-hour rollups now (the sink also does, every few seconds).

    On plain PostgreSQL this folds every batch logged since the last refresh into the
    rollups up to a minute ago; on TimescaleDB continuous aggregates refresh themselves.
    """
    import psycopg

    from store import rollups

    with psycopg.connect(load_settings().db_dsn.get_secret_value(), autocommit=True) as conn:
        done = rollups.refresh(conn)
    if not done.ran:
        click.echo("nothing to do: continuous aggregates, or another refresh is running")
        return
    click.echo(
        f"refreshed {done.ranges} range(s): {done.minute_rows} minute and {done.hour_rows}"
        f" hour bucket(s) written; materialized up to {done.watermark}"
    )


# -- ingest -------------------------------------------------------------------------------


@main.command("onboard", context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--city",
    required=True,
    envvar="CITYOPS_ONBOARD_CITY",
    show_envvar=True,
    help="GB/T 2260 code of the city the devices belong to.",
)
@click.option(
    "--crs",
    type=click.Choice(["EPSG:4326", "EPSG:4490", "GCJ-02", "BD-09"]),
    default="EPSG:4326",
    envvar="CITYOPS_ONBOARD_CRS",
    show_envvar=True,
    help="Coordinates of the file (a `crs` column overrides it per row).",
)
@click.option(
    "--grid",
    "grid_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="CITYOPS_GRID_FILE",
    show_envvar=True,
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


@main.command("ingest", context_settings=CONTEXT)
@click.option(
    "--bridges",
    type=int,
    default=1,
    envvar="CITYOPS_INGEST_BRIDGES",
    show_envvar=True,
    help="Bridge processes sharing the subscriptions (MQTT 5 shared subscription).",
)
@click.option(
    "--client-id",
    default="cityops-ingest",
    envvar="CITYOPS_INGEST_CLIENT_ID",
    show_envvar=True,
    help="MQTT client id prefix; keep it stable so persistent sessions survive restarts.",
)
@click.option(
    "--metrics-port",
    type=int,
    default=9310,
    envvar="CITYOPS_INGEST_METRICS_PORT",
    show_envvar=True,
    help="Prometheus metrics port of the first bridge (0: none).",
)
@vendors_option
@click.option(
    "--end-session/--keep-session",
    default=False,
    envvar="CITYOPS_INGEST_END_SESSION",
    show_envvar=True,
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


@main.command("sink", context_settings=CONTEXT)
@click.option(
    "--group",
    default="cityops-sink",
    envvar="CITYOPS_SINK_GROUP",
    show_envvar=True,
    help="Kafka consumer group of the sink.",
)
@click.option(
    "--metrics-port",
    type=int,
    default=9320,
    envvar="CITYOPS_SINK_METRICS_PORT",
    show_envvar=True,
    help="Prometheus metrics port (0: none).",
)
@click.option(
    "--workers",
    type=int,
    default=1,
    envvar="CITYOPS_SINK_WORKERS",
    show_envvar=True,
    help="Sink processes in the consumer group (they split the partitions).",
)
@click.option(
    "--offset-reset",
    type=click.Choice(["earliest", "latest"]),
    default="earliest",
    envvar="CITYOPS_SINK_OFFSET_RESET",
    show_envvar=True,
    help="Where a new consumer group starts reading (earliest: the topics' whole history).",
)
def sink_cmd(group: str, metrics_port: int, workers: int, offset_reset: str) -> None:
    """Write readings, anomalies, incidents and dead letters from Kafka to the store."""
    import psycopg

    from cityops.sink import run_sinks
    from store.migrate import migrate

    settings = load_settings()
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        migrate(conn)
    echo_err(f"sink: writing Kafka topics to the store with {workers} worker(s)")
    run_sinks(
        settings,
        workers=workers,
        group=group,
        metrics_port=metrics_port,
        offset_reset=offset_reset,
    )


@main.command("worker", context_settings=CONTEXT)
@click.option(
    "--app-id",
    default="cityops-streams",
    envvar="CITYOPS_WORKER_APP_ID",
    show_envvar=True,
    help="Faust app id: the consumer group and table topics.",
)
@click.option(
    "--offset-reset",
    type=click.Choice(["earliest", "latest"]),
    default="earliest",
    envvar="CITYOPS_WORKER_OFFSET_RESET",
    show_envvar=True,
    help="Where a new app id starts reading.",
)
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    envvar="CITYOPS_RULES_FILE",
    show_envvar=True,
    help="TOML rules file overriding default thresholds per city or device.",
)
@click.option(
    "--offline-min-s",
    type=float,
    default=120.0,
    envvar="CITYOPS_OFFLINE_MIN_S",
    show_envvar=True,
    help="A device counts as offline after five of its usual gaps, at least this long.",
)
@click.option(
    "--liveness-every-s",
    type=float,
    default=10.0,
    envvar="CITYOPS_LIVENESS_EVERY_S",
    show_envvar=True,
    help="How often silent devices are looked for.",
)
@click.option(
    "--readings-topic",
    default="cityops.readings",
    envvar="CITYOPS_READINGS_TOPIC",
    show_envvar=True,
    help="Kafka topic of readings (another one for a separate replay pipeline).",
)
@click.option(
    "--checkpoint-s",
    type=click.FloatRange(min=0.05),
    default=1.0,
    envvar="CITYOPS_CHECKPOINT_S",
    show_envvar=True,
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


@main.command("detect", context_settings=CONTEXT)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Recorded series: a `timestamp` column and the metric's.",
)
@click.option("--metric", required=True, help="Metric column to score (e.g. ch4, pressure).")
@click.option(
    "--kind",
    default="generic",
    envvar="CITYOPS_DETECT_KIND",
    show_envvar=True,
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
    from lifeline.vocabulary import SensorKind

    kinds = {k.value for k in SensorKind}
    if kind not in kinds:
        raise CityOpsError(f"--kind {kind!r} is not one of {', '.join(sorted(kinds))}")
    counts = detect_csv(csv_path, metric, kind, out)
    click.echo(
        f"scored {counts['scored']} of {counts['rows']} rows; "
        f"{counts['anomalous']} anomalous; wrote {out}"
    )


# -- geo -----------------------------------------------------------------------------------


@main.group(context_settings=CONTEXT)
def api() -> None:
    """The cockpit API and its keys."""


@api.command("serve")
@click.option(
    "--host", default="127.0.0.1", envvar="CITYOPS_API_HOST", show_envvar=True, help="Bind address."
)
@click.option(
    "--port", type=int, default=8400, envvar="CITYOPS_API_PORT", show_envvar=True, help="Port."
)
@click.option(
    "--rate",
    type=float,
    default=50.0,
    envvar="CITYOPS_API_RATE",
    show_envvar=True,
    help="Requests per second allowed per API key (bursts up to 4x).",
)
@click.option(
    "--online-window-min",
    type=float,
    default=15.0,
    envvar="CITYOPS_API_ONLINE_WINDOW_MIN",
    show_envvar=True,
    help="A device seen within this many minutes counts as online.",
)
@click.option(
    "--escalate-every",
    type=click.FloatRange(min=0.1),
    default=15.0,
    envvar="CITYOPS_API_ESCALATE_EVERY_S",
    show_envvar=True,
    help="Seconds between checks for unacknowledged alerts past their deadline (one "
    "replica at a time does the check).",
)
def api_serve(
    host: str, port: int, rate: float, online_window_min: float, escalate_every: float
) -> None:
    """Serve the cockpit API, the live feed and the web cockpit. Run as many replicas
    behind one address as needed: escalation and webhook delivery happen once across
    them, feed tickets and resumes work on any of them; rate limits count per replica."""
    from datetime import timedelta

    import psycopg
    import uvicorn

    from cockpit_api.app import ApiConfig, create_app
    from store.migrate import migrate

    settings = load_settings()
    dsn = settings.db_dsn.get_secret_value()
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    app = create_app(
        ApiConfig(
            dsn=dsn,
            kafka_bootstrap=settings.kafka_bootstrap,
            online_window=timedelta(minutes=online_window_min),
            rate_per_s=rate,
            burst=rate * 4,
            escalate_every_s=escalate_every,
            cities=settings.cities,
            webhook_allow=settings.webhook_allow,
        )
    )
    echo_err(f"api: cockpit on http://{host}:{port}/  (OpenAPI at /docs)")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        ws="websockets-sansio",
        timeout_graceful_shutdown=10,
    )


@api.group("key")
def api_key() -> None:
    """API keys: roles viewer, dispatcher, city_admin, platform_admin."""


@api_key.command("create")
@click.option("--name", required=True, help="Who or what uses the key.")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    required=True,
)
@click.option("--city", "cities", multiple=True, help="A city the key may see (repeatable).")
def api_key_create(name: str, role: str, cities: tuple[str, ...]) -> None:
    """Create a key; the token is printed once and stored only as a hash."""
    import psycopg

    from store.cockpit import create_key

    for city in cities:
        if not is_city_code(city):
            raise CityOpsError(f"--city {city!r} is not a 6-digit GB/T 2260 city code")
    settings = load_settings()
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        try:
            key, token = create_key(conn, name, role, cities)
        except ValueError as exc:
            raise CityOpsError(f"{exc}; add --city CODE") from exc
    echo_err(f"key {key.key_id} ({role}, cities {', '.join(key.cities) or 'all'}); keep the token:")
    click.echo(token)


@api_key.command("list")
def api_key_list() -> None:
    """Keys with their role, cities and whether revoked (never the tokens)."""
    import psycopg

    from store.cockpit import list_keys

    settings = load_settings()
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        for k in list_keys(conn):
            state = f"revoked {k['revoked_at']:%Y-%m-%d}" if k["revoked_at"] else "active"
            cities = ",".join(k["cities"]) or "*"
            click.echo(f"{k['key_id']}  {k['role']:<14} {cities:<20} {state:<18} {k['name']}")


@api_key.command("revoke")
@click.argument("key_id")
def api_key_revoke(key_id: str) -> None:
    """Revoke a key (effective within 30 s on running API processes)."""
    import psycopg

    from store.cockpit import revoke_key

    settings = load_settings()
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        if not revoke_key(conn, key_id):
            raise CityOpsError(f"no active key {key_id!r}; see `cityops api key list`")
    click.echo(f"revoked {key_id}")


@main.group(context_settings=CONTEXT)
def cim() -> None:
    """CIM layers (grid, pipes, assets, valves, POIs) of a city for the cockpit."""


@cim.command("load")
@click.option("--city", required=True, help="GB/T 2260 city code.")
@click.option(
    "--layer",
    "layers",
    multiple=True,
    required=True,
    metavar="NAME=FILE",
    help="A layer and its file, e.g. grid=grid.gpkg (grid, pipes, assets, valves, pois, "
    "districts; repeatable).",
)
def cim_load(city: str, layers: tuple[str, ...]) -> None:
    """Validate layer files and store them; a city's layer is replaced as a whole."""
    from cityops.cim import load_layers
    from geo.errors import GeoError

    if not is_city_code(city):
        raise CityOpsError(f"--city {city!r} is not a 6-digit GB/T 2260 city code")
    files = {}
    for item in layers:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise CityOpsError(f"--layer {item!r}: write NAME=FILE, e.g. grid=grid.gpkg")
        if not Path(path).is_file():
            raise CityOpsError(f"--layer {item!r}: no file {path}")
        files[name] = Path(path)
    try:
        counts = load_layers(load_settings(), city, files, echo_err)
    except (GeoError, ValueError) as exc:
        raise CityOpsError(str(exc)) from exc
    for name, n in counts.items():
        click.echo(f"{name:<10} {n} features")


def _duration(text: str) -> Any:
    from datetime import timedelta

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise click.BadParameter(f"{text!r}: write a number and s, m, h or d, e.g. 90m") from None


@main.group(context_settings=CONTEXT)
def push() -> None:
    """HTTPS push ingest: readings pushed by carrier IoT platforms and vendor clouds."""


@push.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    envvar="CITYOPS_PUSH_HOST",
    show_envvar=True,
    help="Bind address (0.0.0.0 to take pushes from other machines).",
)
@click.option(
    "--port", type=int, default=8443, envvar="CITYOPS_PUSH_PORT", show_envvar=True, help="Port."
)
@click.option(
    "--plain",
    is_flag=True,
    envvar="CITYOPS_PUSH_PLAIN",
    show_envvar=True,
    help="Serve HTTP, for a TLS-terminating proxy in front (default: HTTPS with the "
    "certificate and key in CITYOPS_MQTT_TLS_DIR).",
)
@vendors_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    envvar="CITYOPS_PUSH_WORKERS",
    show_envvar=True,
    help="Processes sharing the port (each with its own Kafka producer, rate limits and "
    "replay checks).",
)
def push_serve(host: str, port: int, plain: bool, vendor_dir: Path | None, workers: int) -> None:
    """Serve POST /v1/ingest/{city}/push for the configured cities, its own process so
    that ingest load never slows the cockpit API. Run several behind one address for
    more capacity (rate limits and replay checks count per process)."""
    import uvicorn

    from cityops.push import app_from_env, tls_files
    from store.migrate import migrate

    settings = load_settings()
    dsn = settings.db_dsn.get_secret_value()
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    tls = None if plain else tls_files(settings)
    if not plain and tls is None:
        raise CityOpsError(
            f"no server.crt and server.key in {settings.tls_dir}: run `cityops stack up` "
            "once, put the certificate there (CITYOPS_MQTT_TLS_DIR), or serve --plain "
            "behind a TLS proxy"
        )
    scheme = "http" if tls is None else "https"
    echo_err(f"push: {scheme}://{host}:{port}/v1/ingest/{{city}}/push ({workers} process(es))")
    if vendor_dir is not None:
        os.environ["CITYOPS_VENDOR_DIR"] = str(vendor_dir)
    uvicorn.run(
        "cityops.push:app_from_env" if workers > 1 else app_from_env(),
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
        timeout_graceful_shutdown=10,
    )


@push.group("source")
def push_source() -> None:
    """Push sources: a carrier or vendor account of one city, with its key and secret."""


@push_source.command("create")
@click.option("--city", required=True, help="The source's city (6-digit code).")
@click.argument("name")
@click.option(
    "--vendor",
    default=None,
    help="Vendor mapping that says where a report names its device (default: 'device_id').",
)
@click.option("--rate", type=float, default=5000.0, help="Readings a second the source may push.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def push_source_create(
    city: str, name: str, vendor: str | None, rate: float, as_json: bool
) -> None:
    """Create a source; its ingest key and HMAC secret are printed once."""
    import psycopg

    from ingest.adapters import load_vendors
    from store.migrate import migrate
    from store.push_sources import create_source

    if vendor is not None and vendor not in (known := load_vendors()):
        raise CityOpsError(
            f"no vendor mapping named {vendor!r} (known: {', '.join(sorted(known))})"
        )
    with psycopg.connect(load_settings().db_dsn.get_secret_value(), autocommit=True) as conn:
        migrate(conn)
        try:
            source, key = create_source(conn, city, name, vendor, rate)
        except ValueError as exc:
            raise CityOpsError(str(exc)) from exc
    if as_json:
        click.echo(
            json.dumps(
                {
                    "city": source.city,
                    "name": source.name,
                    "key_id": source.key_id,
                    "ingest_key": key,
                    "hmac_secret": source.hmac_secret,
                    "vendor": source.vendor,
                    "rate_per_s": source.rate_per_s,
                }
            )
        )
        return
    click.echo(f"push source {name} of city {city} ({source.key_id})")
    click.echo(f"ingest key:  {key}")
    click.echo(f"hmac secret: {source.hmac_secret}")
    echo_err("Shown once: give both to the source's operator over a secure channel.")


@push_source.command("list")
@click.option("--city", default=None, help="Only this city's sources.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
def push_source_list(city: str | None, as_json: bool) -> None:
    """Sources with their devices, revoked ones too; never a secret."""
    import psycopg

    from store.migrate import migrate
    from store.push_sources import list_sources

    with psycopg.connect(load_settings().db_dsn.get_secret_value(), autocommit=True) as conn:
        migrate(conn)
        rows = list_sources(conn, city)
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    for r in rows:
        state = f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "active"
        click.echo(
            f"{r['city']}  {r['name']:<20} {r['key_id']}  {r['devices']:>7} devices  "
            f"{r['rate_per_s']:g}/s  {r['vendor'] or '-':<12} {state}"
        )


@push_source.command("revoke")
@click.option("--city", required=True, help="The source's city.")
@click.argument("name")
def push_source_revoke(city: str, name: str) -> None:
    """Revoke a source: its key and signatures are refused within seconds."""
    import psycopg

    from store.push_sources import revoke_source

    with psycopg.connect(load_settings().db_dsn.get_secret_value(), autocommit=True) as conn:
        if not revoke_source(conn, city, name):
            raise CityOpsError(f"city {city} has no active push source named {name!r}")
    click.echo(f"revoked push source {name} of city {city}")


@main.command("simulate", context_settings=CONTEXT)
@click.option("--city", required=True, envvar="CITYOPS_SIM_CITY", show_envvar=True)
@click.option(
    "--credentials",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    envvar="CITYOPS_SIM_CREDENTIALS",
    show_envvar=True,
    help="credentials-CITY.csv written by onboarding: each device publishes as itself.",
)
@click.option("--duration", default="60m", show_default=True, help="Simulated window (ends now).")
@click.option(
    "--speed",
    type=float,
    default=60.0,
    envvar="CITYOPS_SIM_SPEED",
    show_envvar=True,
    help="Time compression of the window (60: a simulated minute a second).",
)
@click.option("--interval-s", type=float, default=60.0, help="Reporting interval of the sensors.")
@click.option(
    "--scenarios",
    default=",".join(SIM_SCENARIOS[:-2]),
    help="Comma-separated scenarios to inject: " + ", ".join(SIM_SCENARIOS) + "; '' for none.",
)
@click.option(
    "--truth",
    "truth_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the ground truth of the injected scenarios here (JSONL).",
)
@click.option("--seed", type=int, default=7)
@click.option(
    "--follow/--no-follow",
    default=False,
    help="Go on in real time after the window, injecting a scenario now and then.",
)
def simulate_cmd(
    city: str,
    credentials: Path,
    duration: str,
    speed: float,
    interval_s: float,
    scenarios: str,
    truth_out: Path | None,
    seed: int,
    follow: bool,
) -> None:
    """Play an onboarded city's devices, with scenarios: readings and camera events over
    MQTT, each device as itself; the readings of http devices pushed over HTTPS by their
    source, as a carrier platform does (signed, retried, now and then repeated) to
    CITYOPS_PUSH_URL."""
    from datetime import timedelta

    from cityops.simulate import simulate

    names = [n.strip() for n in scenarios.split(",") if n.strip()]
    result = simulate(
        load_settings(),
        city,
        credentials,
        duration=_duration(duration),
        speed=speed,
        interval=timedelta(seconds=interval_s),
        scenarios=names,
        truth_out=truth_out,
        seed=seed,
        follow=follow,
    )
    click.echo(
        json.dumps(
            {
                "ticks": result.ticks,
                "messages": result.messages,
                "pushed": result.pushed,
                "scenarios": result.scenarios,
                "truth": str(result.truth_file) if result.truth_file else None,
            }
        )
    )


def _speed(text: str) -> float:
    try:
        value = float(text.lower().removesuffix("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: write a factor such as 10x or 0.5") from None
    if value <= 0:
        raise click.BadParameter("the speed must be above 0")
    return value


@main.command("replay", context_settings=CONTEXT)
@click.argument("recording", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--city", required=True)
@click.option(
    "--credentials",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="credentials-CITY.csv of onboarding: each device publishes as itself.",
)
@click.option("--speed", default="1x", help="Playback speed, e.g. 10x.")
@click.option(
    "--shift/--no-shift",
    default=True,
    help="Move the recording in time so that the replay ends now.",
)
def replay_cmd(recording: Path, city: str, credentials: Path, speed: str, shift: bool) -> None:
    """Publish a recording (JSONL or CSV) over MQTT in time order."""
    from cityops.replay import replay

    result = replay(load_settings(), city, recording, credentials, _speed(speed), shift=shift)
    click.echo(json.dumps(result))


@main.command("record", context_settings=CONTEXT)
@click.option("--city", required=True)
@click.option(
    "--source",
    type=click.Choice(["kafka", "mqtt"]),
    default="kafka",
    help="Canonical records from Kafka, or the raw MQTT messages.",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--duration", default="60s", help="How long to record, e.g. 90s or 10m.")
@click.option("--from-beginning", is_flag=True, help="Kafka: start at the oldest record.")
def record_cmd(city: str, source: str, out: Path, duration: str, from_beginning: bool) -> None:
    """Capture a city's readings and video events to JSONL, appended to OUT."""
    from cityops.replay import record_kafka, record_mqtt

    settings = load_settings()
    if source == "kafka":
        n = record_kafka(settings, city, out, _duration(duration), from_beginning)
    else:
        n = record_mqtt(settings, city, out, _duration(duration))
    click.echo(json.dumps({"recorded": n, "out": str(out)}))


@main.command("drill", context_settings=CONTEXT)
@click.argument("names", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (last line).")
@click.option(
    "--short", is_flag=True, help="The shorter variants the test suite runs (e.g. bridge: 10 s)."
)
def drill_cmd(names: tuple[str, ...], as_json: bool, short: bool) -> None:
    """Run drills (security, hostile, mosquitto, mosquitto-crash, bridge, kafka, postgres,
    worker, workers, kafka-node, or all) on the real services. kafka-node needs three
    Kafka nodes (CITYOPS_KAFKA_BROKERS=3); all takes it when the stack has them."""
    from drills import CLUSTER_DRILLS, DRILLS, run_drills

    settings = load_settings()
    chosen = list(names)
    if "all" in names:
        chosen = [n for n in DRILLS if n not in CLUSTER_DRILLS or settings.kafka_brokers >= 3]
    result = run_drills(settings, chosen, short=short)
    if not as_json:
        for row in result["table"]:
            click.echo(
                f"{row['name']:<16} {'ok' if row['ok'] else 'FAILED':<7} sent {row['sent']:>6}"
                f"  stored {row['stored']:>6}  lost {row['lost']}  duplicated {row['duplicated']}"
                f"  recovery {row['recovery_s']} s"
            )
    click.echo(json.dumps(result))
    if result["failed"]:
        sys.exit(1)


@main.command("score", context_settings=CONTEXT)
@click.argument("truth", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--api",
    "api_url",
    default="http://127.0.0.1:8400",
    envvar="CITYOPS_API_URL",
    show_envvar=True,
    help="The cockpit API to read incidents from.",
)
@click.option(
    "--key",
    envvar="CITYOPS_API_KEY",
    show_envvar=True,
    required=True,
    help="An API key that may read the city.",
)
@click.option("--city", required=True)
def score_cmd(truth: Path, api_url: str, key: str, city: str) -> None:
    """Precision, recall and time to detect per incident type against a ground truth."""
    import httpx

    from simulators.score import score

    rows = [json.loads(line) for line in truth.read_text().splitlines() if line.strip()]
    if not rows:
        raise CityOpsError(f"{truth} holds no scenarios")
    start = min(r["start"] for r in rows)
    items: list[dict[str, Any]] = []
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}) as c:
        offset = 0
        while True:
            r = c.get(
                "/v1/alerts",
                params={"city": city, "start": start, "limit": 500, "offset": offset},
            )
            if r.status_code != 200:
                raise CityOpsError(f"the API answered {r.status_code}: {r.text[:300]}")
            page = r.json()
            items.extend(page["items"])
            offset += len(page["items"])
            if offset >= page["total"] or not page["items"]:
                break
    found = [i for i in items if i["started_at"] >= start]
    click.echo(json.dumps(score(rows, found), ensure_ascii=False))


@main.group(context_settings=CONTEXT)
def grid() -> None:
    """The unit grid (单元网格)."""


@grid.command("generate")
@click.option(
    "--communities",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Community polygons with a 12-digit `code` (GeoJSON, GPKG, SHP).",
)
@click.option(
    "--cell",
    "cell_m",
    type=float,
    default=200.0,
    envvar="CITYOPS_GRID_CELL_M",
    show_envvar=True,
    help="Cell size in metres (100-500).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output layer (.geojson, .gpkg or .shp).",
)
def grid_generate(communities: Path, cell_m: float, out: Path) -> None:
    """Cut communities into unit-grid cells with 15-digit codes."""
    from geo.errors import GeoError
    from geo.grid import generate_grid
    from geo.layers import DISTRICTS, LayerSpec, read_layer, write_layer

    spec = LayerSpec("communities", "code", DISTRICTS.geometry_types, id_pattern=r"^[0-9]{12}$")
    try:
        cells = generate_grid(read_layer(communities, spec), cell_m)
        write_layer(cells, out)
    except GeoError as exc:
        raise CityOpsError(str(exc)) from exc
    click.echo(f"wrote {len(cells)} cells to {out}")


# -- benchmarks ------------------------------------------------------------------------------


@main.command("bench", context_settings=CONTEXT)
@click.argument("name")
@click.option(
    "--runs",
    type=int,
    default=None,
    envvar="CITYOPS_BENCH_RUNS",
    show_envvar=True,
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


if __name__ == "__main__":
    main()
