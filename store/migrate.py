"""Versioned schema migrations: numbered SQL files applied once each, in order.

Each file runs in its own transaction under an advisory lock, so concurrent
``cityops db migrate`` runs are safe and re-running is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

from store.errors import MigrationError

LOCK_ID = 0x0C17_0B5  # advisory lock key for migrations


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    out = []
    for entry in resources.files("store.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append(Migration(int(name[:4]), name[5:-4], entry.read_text()))
    return sorted(out, key=lambda m: m.version)


def migrate(conn: psycopg.Connection[Any]) -> list[Migration]:
    """Apply every migration not yet applied; return those applied now."""
    applied_now: list[Migration] = []
    with conn.transaction():
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
    for migration in available():
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
                    f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                ) from exc
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied_now.append(migration)
    return applied_now
