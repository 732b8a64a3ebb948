"""Versioned schema migrations: numbered SQL files applied once each, in order.

A version may come in two variants, ``NNNN_name.timescale.sql`` and
``NNNN_name.plain.sql``: the TimescaleDB one is used when the server offers the
extension, the plain-PostgreSQL one otherwise. Each file runs in its own
transaction under an advisory lock, so concurrent runs are safe and re-running is a
no-op. ``timescale="off"`` (``CITYOPS_TIMESCALE=off``) forces the plain path.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import psycopg

from store.errors import MigrationError

LOCK_ID = 0x0C17_0B5  # advisory lock key for migrations
PLAIN, TIMESCALE, COMMON = "plain", "timescale", "common"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    variant: str
    sql: str


def available(variant: str) -> list[Migration]:
    """The migrations to apply on a server of ``variant`` (plain or timescale)."""
    by_version: dict[int, Migration] = {}
    for entry in resources.files("store.migrations").iterdir():
        name = entry.name
        if not (name.endswith(".sql") and name[:4].isdigit()):
            continue
        stem = name[5:-4]
        kind = COMMON
        for v in (PLAIN, TIMESCALE):
            if stem.endswith(f".{v}"):
                kind, stem = v, stem[: -len(v) - 1]
        if kind not in (COMMON, variant):
            continue
        version = int(name[:4])
        if version in by_version and by_version[version].name != stem:
            raise MigrationError(f"two migrations share version {version:04d}")
        by_version[version] = Migration(version, stem, kind, entry.read_text())
    return [by_version[v] for v in sorted(by_version)]


#: ``auto``: TimescaleDB where the server offers it; ``off``: always plain PostgreSQL.
Mode = Literal["auto", "off"]


def timescale_available(conn: psycopg.Connection[Any], mode: Mode = "auto") -> bool:
    return timescale_check(conn, mode)[0]


def timescale_check(conn: psycopg.Connection[Any], mode: Mode = "auto") -> tuple[bool, str]:
    """Whether a new schema may use TimescaleDB, and why: the extension must be
    installed *and* preloaded (``shared_preload_libraries``), unless ``mode`` is off."""
    if mode == "off":
        return False, "CITYOPS_TIMESCALE=off"
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if row is None:
        return False, "the timescaledb extension is not installed on the server"
    preload = conn.execute("SHOW shared_preload_libraries").fetchone()
    libraries = {lib.strip() for lib in str(preload[0] if preload else "").split(",")}
    if "timescaledb" not in libraries:
        return False, "timescaledb is installed but not in shared_preload_libraries"
    return True, "timescaledb is installed and preloaded"


def describe(conn: psycopg.Connection[Any], mode: Mode = "auto") -> str:
    """Which path the schema took, in words (``cityops db migrate`` prints it)."""
    if not _any_applied(conn):
        return "no schema yet"
    if backend(conn) == TIMESCALE:
        return "TimescaleDB (hypertables, continuous aggregates, policies)"
    return f"plain PostgreSQL (declarative rollups); {timescale_check(conn, mode)[1]}"


def backend(conn: psycopg.Connection[Any]) -> str:
    """``timescale`` when the schema was built on TimescaleDB, else ``plain``."""
    row = conn.execute(
        "SELECT variant FROM schema_migrations WHERE variant <> %s LIMIT 1", (COMMON,)
    ).fetchone()
    return str(row[0]) if row else PLAIN


def migrate(conn: psycopg.Connection[Any], timescale: Mode = "auto") -> list[Migration]:
    """Apply every migration not yet applied; return those applied now. A new schema
    takes TimescaleDB where ``timescale`` allows and the server offers it; an existing
    one keeps the path it took."""
    applied_now: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL,"
            " variant text NOT NULL DEFAULT 'common',"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        chosen = backend(conn) if _any_applied(conn) else None
    variant = chosen or (TIMESCALE if timescale_available(conn, timescale) else PLAIN)
    for migration in available(variant):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
            ).fetchone()
            if done:
                continue
            try:
                conn.execute(migration.sql.encode())
            except psycopg.Error as exc:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} ({migration.variant}) "
                    f"failed: {exc}"
                ) from exc
            conn.execute(
                "INSERT INTO schema_migrations (version, name, variant) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.variant),
            )
            applied_now.append(migration)
    return applied_now


def _any_applied(conn: psycopg.Connection[Any]) -> bool:
    return conn.execute("SELECT 1 FROM schema_migrations LIMIT 1").fetchone() is not None
