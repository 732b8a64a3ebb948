"""Configuration, secrets, the local stack, the broker, the demo, schemas and the database."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from cityops.cli_support import CONTEXT, echo_err, env_option, load_settings
from cityops.errors import CityOpsError
from cityops.settings import Settings, fresh_env_lines

# -- config and secrets -------------------------------------------------------------------


@click.group(context_settings=CONTEXT)
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


@click.group(context_settings=CONTEXT)
def secrets() -> None:
    """Manage the local stack's secrets."""


@secrets.command("init")
@env_option(
    "CITYOPS_ENV_FILE",
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".env"),
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


@click.group(context_settings=CONTEXT)
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


@click.group(context_settings=CONTEXT)
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


@click.group(context_settings=CONTEXT)
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


@click.group(context_settings=CONTEXT)
def schema() -> None:
    """Wire-record schemas."""


@schema.command("export")
@env_option(
    "CITYOPS_SCHEMA_OUT",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    help="Folder to write the JSON Schemas into.",
)
def schema_export(out: Path) -> None:
    """Write the JSON Schema of every wire record (Reading, VideoEvent, Anomaly, Incident)."""
    from lifeline.records import export_schemas

    for path in export_schemas(out):
        click.echo(str(path))


# -- database -----------------------------------------------------------------------------


@click.group(context_settings=CONTEXT)
def db() -> None:
    """The platform database."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply every schema migration not applied yet (safe to re-run)."""
    import psycopg

    from store.migrate import describe, migrate

    settings = load_settings()
    dsn = settings.db_dsn.get_secret_value()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            applied = migrate(conn, settings.timescale)
            path = describe(conn, settings.timescale)
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
@env_option(
    "CITYOPS_RETENTION_DAYS",
    "--default-days",
    type=int,
    default=400,
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
