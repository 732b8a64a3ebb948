"""HTTPS push ingest and its sources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from cityops.cli_support import CONTEXT, echo_err, env_option, load_settings, vendors_option
from cityops.errors import CityOpsError
from lifeline.platforms import PLATFORMS

PLATFORM_CHOICES = list(PLATFORMS)


@click.group(context_settings=CONTEXT)
def push() -> None:
    """HTTPS push ingest: readings pushed by carrier IoT platforms and vendor clouds."""


@push.command("serve")
@env_option(
    "CITYOPS_PUSH_HOST",
    "--host",
    default="127.0.0.1",
    help="Bind address (0.0.0.0 to take pushes from other machines).",
)
@env_option("CITYOPS_PUSH_PORT", "--port", type=int, default=8443, help="Port.")
@env_option(
    "CITYOPS_PUSH_PLAIN",
    "--plain",
    is_flag=True,
    help="Serve HTTP, for a TLS-terminating proxy in front (default: HTTPS with the "
    "certificate and key in CITYOPS_MQTT_TLS_DIR).",
)
@vendors_option
@env_option(
    "CITYOPS_PUSH_WORKERS",
    "--workers",
    type=click.IntRange(min=1),
    default=1,
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
        migrate(conn, settings.timescale)
    tls = None if plain else tls_files(settings)
    if not plain and tls is None:
        raise CityOpsError(
            f"no server.crt and server.key in {settings.tls_dir}: run `cityops stack up` "
            "once, put the certificate there (CITYOPS_MQTT_TLS_DIR), or serve --plain "
            "behind a TLS proxy"
        )
    from ingest.event_codes import EventCodeError, EventCodes

    try:
        EventCodes.load(*([vendor_dir] if vendor_dir else []))
    except EventCodeError as exc:
        raise CityOpsError(f"video event code table: {exc}") from exc
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
    "--platform",
    type=click.Choice(PLATFORM_CHOICES),
    default="cityops",
    show_default=True,
    help="Who pushes: our own envelope (cityops), or a platform in its own format.",
)
@click.option(
    "--vendor",
    default=None,
    help="Vendor mapping that says where a report names its device (default: 'device_id').",
)
@click.option("--rate", type=float, default=5000.0, help="Readings a second the source may push.")
@click.option(
    "--network",
    "networks",
    multiple=True,
    help="A network (CIDR) the platform pushes from; repeat for several. Requests from "
    "elsewhere are refused (default: from anywhere, with the URL's token).",
)
@click.option(
    "--aes-key",
    default=None,
    help="OneNET: the AES key its console shows for encrypted pushes (omit for plain).",
)
@env_option(
    "CITYOPS_PUSH_URL",
    "--url",
    default="https://127.0.0.1:8443",
    help="The push service's address as the platform reaches it, for the printed URL.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def push_source_create(
    city: str,
    name: str,
    platform: str,
    vendor: str | None,
    rate: float,
    networks: tuple[str, ...],
    aes_key: str | None,
    url: str,
    as_json: bool,
) -> None:
    """Create a source; its ingest key and HMAC secret (and, for a platform that does
    not sign, the URL with its token) are printed once."""
    import psycopg

    from ingest.adapters import load_vendors
    from store.migrate import migrate
    from store.push_sources import create_source, parse_networks

    if vendor is not None and vendor not in (known := load_vendors()):
        raise CityOpsError(
            f"no vendor mapping named {vendor!r} (known: {', '.join(sorted(known))})"
        )
    try:
        nets = parse_networks(networks)
    except ValueError as exc:
        raise CityOpsError(f"{exc}; give --network as 203.0.113.0/24 or an address") from exc
    if aes_key is not None:
        from ingest.push.connectors.onenet import aes_key_bytes

        try:
            aes_key_bytes(aes_key)
        except ValueError as exc:
            raise CityOpsError(f"--aes-key: {exc}; copy it from OneNET's console") from exc
    settings = load_settings()
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        migrate(conn, settings.timescale)
        try:
            source, key, token = create_source(
                conn, city, name, vendor, rate, platform, nets, aes_key
            )
        except ValueError as exc:
            raise CityOpsError(str(exc)) from exc
    endpoint = url.rstrip("/") + (
        f"/v1/ingest/{city}/push"
        if platform == "cityops"
        else f"/v1/ingest/{city}/{platform}/{name}" + (f"?token={token}" if token else "")
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "city": source.city,
                    "name": source.name,
                    "platform": source.platform,
                    "key_id": source.key_id,
                    "ingest_key": key,
                    "hmac_secret": source.hmac_secret,
                    "url": endpoint,
                    "url_token": token,
                    "platform_token": source.platform_secret,
                    "networks": [str(n) for n in source.networks],
                    "vendor": source.vendor,
                    "rate_per_s": source.rate_per_s,
                }
            )
        )
        return
    click.echo(f"push source {name} of city {city} ({source.key_id}, {platform})")
    if platform == "cityops":
        click.echo(f"url:         {endpoint}")
        click.echo(f"ingest key:  {key}")
        click.echo(f"hmac secret: {source.hmac_secret}")
        echo_err("Shown once: give both to the source's operator over a secure channel.")
        return
    click.echo(f"push URL:    {endpoint}")
    if source.platform_secret:
        click.echo(f"token:       {source.platform_secret}")
    if nets:
        click.echo(f"networks:    {', '.join(str(n) for n in nets)}")
    echo_err(
        "Shown once: paste the URL (and the token) into the platform's console, as its "
        "HTTP push / subscription address; they are the source's secrets."
    )


@push_source.command("list")
@click.option("--city", default=None, help="Only this city's sources.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
def push_source_list(city: str | None, as_json: bool) -> None:
    """Sources with their devices, revoked ones too; never a secret."""
    import psycopg

    from store.migrate import migrate
    from store.push_sources import list_sources

    settings = load_settings()
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        migrate(conn, settings.timescale)
        rows = list_sources(conn, city)
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    for r in rows:
        state = f"revoked {r['revoked_at']:%Y-%m-%d %H:%M}" if r["revoked_at"] else "active"
        click.echo(
            f"{r['city']}  {r['name']:<20} {r['key_id']}  {r['platform']:<13} "
            f"{r['devices']:>7} devices  "
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
