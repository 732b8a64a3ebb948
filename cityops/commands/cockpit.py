"""The cockpit API and its keys."""

from __future__ import annotations

import click

from cityops.cli_support import CONTEXT, echo_err, env_option, load_settings
from cityops.errors import CityOpsError
from lifeline.codes import is_city_code
from lifeline.roles import ROLES


@click.group(context_settings=CONTEXT)
def api() -> None:
    """The cockpit API and its keys."""


@api.command("serve")
@env_option("CITYOPS_API_HOST", "--host", default="127.0.0.1", help="Bind address.")
@env_option("CITYOPS_API_PORT", "--port", type=int, default=8400, help="Port.")
@env_option(
    "CITYOPS_API_RATE",
    "--rate",
    type=float,
    default=50.0,
    help="Requests per second allowed per API key (bursts up to 4x).",
)
@env_option(
    "CITYOPS_API_ONLINE_WINDOW_MIN",
    "--online-window-min",
    type=float,
    default=15.0,
    help="A device seen within this many minutes counts as online.",
)
@env_option(
    "CITYOPS_API_ESCALATE_EVERY_S",
    "--escalate-every",
    type=click.FloatRange(min=0.1),
    default=15.0,
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
        migrate(conn, settings.timescale)
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

    from store.keys import create_key

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

    from store.keys import list_keys

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

    from store.keys import revoke_key

    settings = load_settings()
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        if not revoke_key(conn, key_id):
            raise CityOpsError(f"no active key {key_id!r}; see `cityops api key list`")
    click.echo(f"revoked {key_id}")
