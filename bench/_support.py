"""Pieces the benchmarks share: a scratch database, the cockpit API as its own process
(and the stack's free_port)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from cityops.settings import Settings
from cityops.stack.common import free_port

__all__ = ["api_server", "free_port", "scratch_database"]


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


@contextmanager
def api_server(dsn: str) -> Iterator[str]:
    """``cityops api serve`` on ``dsn`` as its own process, as deployed (no rate limit,
    warnings only), once it answers; its URL. Stopped afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "CITYOPS_DB_DSN": dsn,
        "CITYOPS_API_PORT": str(port),
        "CITYOPS_API_RATE": "1000000",
        "CITYOPS_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cityops.cli", "api", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"the API exited: {err[-2000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/health", timeout=1),  # noqa: S310  # local URL
        ):
            return
        time.sleep(0.2)
    raise RuntimeError("the API did not answer within 60 s")
