"""Pieces the benchmarks share: a scratch database (and the stack's free_port)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from cityops.settings import Settings
from cityops.stack.common import free_port

__all__ = ["free_port", "scratch_database"]


@contextmanager
def scratch_database(settings: Settings, prefix: str) -> Iterator[str]:
    """A new database beside the platform's for one run, dropped afterwards; its DSN."""
    base = settings.db_dsn.get_secret_value()
    name = f"{prefix}_{secrets.token_hex(3)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
