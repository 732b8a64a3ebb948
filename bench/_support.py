"""Pieces the benchmarks share: a scratch database and a free local port."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from cityops.settings import Settings


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
