"""``cityops demo up | down``: the local stack plus the platform services, for one demo city.

Platform services run as background ``cityops`` subcommands whose pids are kept
under ``<stack>/services``; ``demo down`` stops exactly those, then the stack.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from cityops import stack
from cityops.errors import StackError
from cityops.settings import Settings
from cityops.stack.common import read_pid, spawn, stop_pid, tail
from store.migrate import migrate


@dataclass(frozen=True)
class PlatformService:
    name: str
    argv: tuple[str, ...]


SERVICES = (
    PlatformService("ingest", ("ingest",)),
    PlatformService("sink", ("sink",)),
    PlatformService("worker", ("worker",)),
    PlatformService("api", ("api", "serve")),
    # The demo city's NB-IoT sensors arrive through their carrier platform's push.
    PlatformService("push", ("push", "serve")),
    # The demo city's devices, each with its own credentials: the last hour played
    # at 60x (incidents within a minute), then real time with a scenario now and then.
    PlatformService(
        "simulator",
        (
            "simulate",
            "--city",
            "320100",
            "--credentials",
            "{demo}/credentials-320100.csv",
            "--duration",
            "60m",
            "--speed",
            "60",
            "--follow",
            "--truth",
            "{demo}/truth.jsonl",
            "--push-tokens",
            "{demo}/push-tokens-320100.json",
        ),
    ),
)


def _cityops() -> list[str]:
    return [sys.executable, "-m", "cityops.cli"]


def services_dir(settings: Settings) -> Path:
    path = settings.stack_dir / "services"
    path.mkdir(parents=True, exist_ok=True)
    return path


def up(settings: Settings, log: Callable[[str], None]) -> list[str]:
    """Bring up the stack, migrate the database and start the platform services."""
    lines = []
    for r in stack.up(settings, log):
        lines.append(f"{r.name:<9} {'started' if r.started else 'running'} ({r.seconds:.1f} s)")
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        applied = migrate(conn, settings.timescale)
    lines.append(f"database  {len(applied)} migration(s) applied")
    lines.append(_demo_city(settings, log))
    folder = services_dir(settings)
    for svc in SERVICES:
        pid_file, log_file = folder / f"{svc.name}.pid", folder / f"{svc.name}.log"
        if read_pid(pid_file, "cityops.cli") is not None:
            lines.append(f"{svc.name:<9} running")
            continue
        log(f"starting {svc.name}")
        demo_dir = str(settings.stack_dir / "demo")
        argv = [a.replace("{demo}", demo_dir) for a in svc.argv]
        pid = spawn([*_cityops(), *argv], log_file, pid_file, cwd=Path.cwd())
        # A service that dies in its first seconds is reported with its log, not left silent.
        time.sleep(3)
        if read_pid(pid_file, "cityops.cli") is None:
            raise StackError(
                f"{svc.name} exited at start; last lines of {log_file}:\n{tail(log_file)}"
            )
        lines.append(f"{svc.name:<9} started (pid {pid}, log {log_file})")
    lines.extend(_cockpit_access(settings))
    return lines


def _cockpit_access(settings: Settings) -> list[str]:
    """A dispatcher key for the demo city, kept in a 0600 file, and the cockpit's URL."""
    import os

    from simulators.demo_city import DEMO_CITY
    from store.keys import create_key, verify_key

    key_file = settings.stack_dir / "demo" / "cockpit-key"
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        token = key_file.read_text().strip() if key_file.exists() else ""
        if not token or verify_key(conn, token) is None:
            _, token = create_key(conn, "demo operator", "dispatcher", [DEMO_CITY])
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.touch(mode=0o600)
            key_file.write_text(token + "\n")
    host = os.environ.get("CITYOPS_API_HOST", "127.0.0.1")
    port = os.environ.get("CITYOPS_API_PORT", "8400")
    return [
        f"cockpit   http://{host}:{port}/  (OpenAPI: http://{host}:{port}/docs)",
        f"push      {settings.push_url}/v1/ingest/{DEMO_CITY}/ctwing/ctwing (CTWing: gas "
        "wells), .../onenet/onenet (OneNET: manhole covers), .../iotda/huawei (IoTDA: "
        "drain levels) and .../hik-isc/isc (iSecure Center: the cameras' events; "
        "`cityops push source list`)",
        f"key       {token}  (dispatcher of {DEMO_CITY}; kept in {key_file})",
    ]


def down(settings: Settings) -> dict[str, bool]:
    folder = services_dir(settings)
    stopped = {
        svc.name: stop_pid(folder / f"{svc.name}.pid", "cityops.cli", timeout=20)
        for svc in SERVICES
    }
    time.sleep(0.1)
    stopped.update(stack.down(settings))
    return stopped


def _demo_city(settings: Settings, log: Callable[[str], None]) -> str:
    """Onboard the demo city (layers, sensors and cameras) unless it is onboarded already."""
    from cityops.cim import load_layers
    from cityops.onboard import broker_admin, onboard, placer_from_files
    from ingest.broker_accounts import device_username
    from simulators.city import build_city
    from simulators.demo_city import (
        DEMO_CITY,
        demo_devices,
        ensure_push_sources,
        platform_ids,
        transport_of,
        write_demo_city,
    )
    from store.devices import existing_ids

    folder = settings.stack_dir / "demo"
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        ensure_push_sources(conn, DEMO_CITY, folder / f"push-tokens-{DEMO_CITY}.json")
        known = existing_ids(conn, DEMO_CITY)
        pushed = {
            r[0]: (r[1], r[2] or "")
            for r in conn.execute(
                "SELECT device_id, source, platform_id FROM devices"
                " WHERE city = %s AND transport = 'http'",
                (DEMO_CITY,),
            ).fetchall()
        }
        layers = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT layer FROM cim_features WHERE city = %s", (DEMO_CITY,)
            ).fetchall()
        }
    mapped = {"grid", "pipes", "assets", "pois", "valves"} <= layers
    rows = demo_devices(build_city(county="320102", blocks=3), DEMO_CITY)
    wanted = {row[0] for row in rows}
    over_mqtt = {row[0] for row in rows if transport_of(row[1])[0] == "mqtt"}
    by_push = {
        row[0]: (transport_of(row[1])[1], platform_ids(row[0], row[1])[0])
        for row in rows
        if row[0] not in over_mqtt
    }
    # Stored devices whose accounts the broker lacks (a new broker), or that report
    # another way than the demo city says (an earlier version), are onboarded anew.
    with broker_admin(settings) as admin:
        on_broker = admin.usernames(f"{DEMO_CITY}.")
    accounts_missing = not {device_username(DEMO_CITY, d) for d in over_mqtt} <= on_broker
    accounts_missing |= pushed != by_push
    if not accounts_missing and known and mapped and wanted <= set(known):
        return f"city      {DEMO_CITY} has {len(known)} devices onboarded"
    log(f"building and onboarding the demo city {DEMO_CITY}")
    files = write_demo_city(folder)
    load_layers(
        settings,
        DEMO_CITY,
        files.layers(),
        log,
    )
    if not accounts_missing and wanted <= set(known):
        return f"city      {DEMO_CITY} has {len(known)} devices onboarded; CIM layers stored"
    placer = placer_from_files(files.grid, [files.pipes, files.assets])
    result = onboard(
        settings,
        files.devices,
        DEMO_CITY,
        crs="EPSG:4326",
        placer=placer,
        credentials_out=folder / f"credentials-{DEMO_CITY}.csv",
        # A demo city from an earlier version gains its new devices, and every device
        # fresh credentials: the simulator needs them all in one file.
        rotate=bool(known) or accounts_missing,
        show_progress=False,
    )
    return (
        f"city      {DEMO_CITY}: {result.devices} devices onboarded; layers and "
        f"credentials in {folder}"
    )
