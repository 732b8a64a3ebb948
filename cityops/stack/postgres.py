"""PostgreSQL 15 from Debian: a private cluster with database ``cityops`` and its role."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from cityops.errors import StackError
from cityops.settings import DbParts
from cityops.stack.common import (
    ServiceStatus,
    StartResult,
    ensure_debian_packages,
    is_root,
    port_open,
    read_pid,
    run,
    spawn,
    stop_pid,
    tail,
    wait_until,
)

PG_VERSION = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
SERVICE_USER = "postgres"

SERVER_SETTINGS = {
    "shared_buffers": "512MB",
    "work_mem": "32MB",
    "maintenance_work_mem": "256MB",
    "max_connections": "300",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "wal_compression": "on",
    "random_page_cost": "1.1",
    "effective_cache_size": "4GB",
    "log_min_duration_statement": "2000",
    "password_encryption": "scram-sha-256",
}


class Postgres:
    name = "postgres"

    def __init__(self, stack_dir: Path, db: DbParts) -> None:
        self.db = db
        self.host, self.port = db.host, db.port
        self.dir = stack_dir / "postgres"
        self.data = self.dir / "data"
        self.run_dir = self.dir / "run"
        self.log_file = self.dir / "postgres.log"
        self.pid_file = self.data / "postmaster.pid"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def _user(self) -> str | None:
        return SERVICE_USER if is_root() else None

    def _admin_dsn(self) -> str:
        # The cluster's superuser over its private socket (peer authentication).
        user = SERVICE_USER if is_root() else _current_user()
        return f"host={self.run_dir} port={self.port} user={user} dbname=postgres"

    def up(self, log: Callable[[str], None]) -> StartResult:
        t0 = time.monotonic()
        ensure_debian_packages({f"postgresql-{PG_VERSION}": str(PG_BIN / "postgres")}, log)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if is_root():
            self.dir.chmod(0o755)
            for path in (self.dir, self.run_dir):
                shutil.chown(path, SERVICE_USER, SERVICE_USER)
        started = False
        running = read_pid(self.pid_file, str(PG_BIN / "postgres"))
        if running is not None:
            self._write_auth_config()
            os.kill(running, signal.SIGHUP)
        else:
            if port_open(self.host, self.port):
                raise StackError(
                    f"port {self.address} is taken by a process this stack did not start; "
                    "stop it or point CITYOPS_DB_DSN at another port"
                )
            if not (self.data / "PG_VERSION").exists():
                log("initialising the PostgreSQL cluster")
                run(
                    [
                        str(PG_BIN / "initdb"),
                        "-D",
                        str(self.data),
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                        "--auth-local=peer",
                        "--auth-host=scram-sha-256",
                    ],
                    user=self._user,
                )
            self._write_auth_config()
            log(f"starting PostgreSQL on {self.address}")
            options = [f"-c{k}={v}" for k, v in SERVER_SETTINGS.items()]
            spawn(
                [
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-h",
                    self.host,
                    "-k",
                    str(self.run_dir),
                    *options,
                ],
                self.log_file,
                self.dir / "launcher.pid",
                user=self._user,
            )
            started = True
        if not wait_until(self._accepts_admin, timeout=60, interval=0.2):
            raise StackError(
                f"PostgreSQL did not start on {self.address}; last lines of "
                f"{self.log_file}:\n{tail(self.log_file)}"
            )
        self._ensure_role_and_database()
        return StartResult(
            self.name, started, time.monotonic() - t0, [] if started else ["already running"]
        )

    def _write_auth_config(self) -> None:
        """Socket logins by OS identity (root may act as the superuser); TCP by password."""
        (self.data / "pg_hba.conf").write_text(
            "local all all peer map=cityops\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )
        superuser = SERVICE_USER if is_root() else _current_user()
        (self.data / "pg_ident.conf").write_text(
            f"cityops root {superuser}\ncityops {superuser} {superuser}\n"
        )
        if is_root():
            for name in ("pg_hba.conf", "pg_ident.conf"):
                shutil.chown(self.data / name, SERVICE_USER, SERVICE_USER)

    def _accepts_admin(self) -> bool:
        try:
            with psycopg.connect(self._admin_dsn(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _ensure_role_and_database(self) -> None:
        from psycopg import sql

        db = self.db
        with psycopg.connect(self._admin_dsn(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (db.user,)
            ).fetchone()
            verb = "ALTER" if exists else "CREATE"
            # Utility statements take no bind parameters; sql.Literal quotes the password.
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.SQL(verb), sql.Identifier(db.user), sql.Literal(db.password)
                )
            )
            # DROP DATABASE ... WITH (FORCE) on a scratch database also has to end an
            # autovacuum worker there, which PostgreSQL checks as a process of another role.
            conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(db.user)))
            has_db = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (db.dbname,)
            ).fetchone()
            if not has_db:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(db.dbname), sql.Identifier(db.user)
                    )
                )

    def down(self) -> bool:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back and stop cleanly.
        stopped = stop_pid(self.pid_file, str(PG_BIN / "postgres"), timeout=60, sig=signal.SIGINT)
        (self.dir / "launcher.pid").unlink(missing_ok=True)
        return stopped

    def answers(self, dsn: str) -> bool:
        try:
            with psycopg.connect(dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
                return True
        except psycopg.Error:
            return False

    def status(self, dsn: str) -> ServiceStatus:
        pid = read_pid(self.pid_file, str(PG_BIN / "postgres"))
        ok = self.answers(dsn)
        return ServiceStatus(
            self.name,
            ok,
            self.address,
            pid,
            pid is not None,
            "" if ok else "platform role cannot connect",
        )


def _current_user() -> str:
    import getpass

    return getpass.getuser()
