"""Shared fixtures. Integration fixtures talk to the real local stack and fail,
never skip, when a service is missing: start it with `cityops stack up`."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from cityops.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def settings() -> Settings:
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture(scope="session")
def live_stack(settings: Settings) -> Settings:
    """The real Kafka, Mosquitto and PostgreSQL, all answering."""
    from cityops import stack

    statuses = stack.status(settings)
    down = [f"{n} ({s.address}: {s.detail})" for n, s in statuses.items() if not s.ok]
    if down:
        pytest.fail(
            "services of the local stack are not answering: "
            + ", ".join(down)
            + "; start them with `cityops stack up` (the README's test command does)"
        )
    return settings


@pytest.fixture(scope="session")
def db_dsn(live_stack: Settings) -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped afterwards."""
    import psycopg
    from psycopg import sql

    from store.migrate import migrate

    base = live_stack.db_dsn.get_secret_value()
    name = f"cityops_test_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    yield dsn
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED} is missing; CI always lays ../shared beside the clone")
        pytest.skip(f"{SHARED} is absent (the shared folder is laid beside the clone in CI)")
    return SHARED


def unique_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"
