"""Device registry: bulk upsert at onboarding, reads for ingest, and devices with their
status (online, last status, last reading) for the API."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from lifeline.devices import Device
from lifeline.kinds import LIFELINE_OF_KIND
from store import queries

#: NOTIFY channel raised whenever devices change, so ingest reloads its registry.
DEVICES_CHANNEL = "cityops_devices"

_COLUMNS = (
    "city",
    "device_id",
    "family",
    "kind",
    "metrics",
    "vendor",
    "asset_id",
    "owner_dept",
    "lon",
    "lat",
    "grid_code",
    "transport",
    "source",
    "mqtt_username",
    "mqtt_password_hash",
)


@dataclass(frozen=True)
class Credential:
    """A device's MQTT account as stored (hash only)."""

    city: str
    device_id: str
    family: str
    username: str
    password_hash: str


def existing_ids(conn: psycopg.Connection[Any], city: str) -> set[str]:
    rows = conn.execute("SELECT device_id FROM devices WHERE city = %s", (city,)).fetchall()
    return {r[0] for r in rows}


def upsert_devices(
    conn: psycopg.Connection[Any],
    devices: Sequence[Device],
    credentials: dict[str, tuple[str, str]],
) -> int:
    """Insert or update ``devices`` in one transaction; return rows written.

    ``credentials`` maps device id → (username, password hash) for devices whose
    credentials are (re)issued; other existing devices keep theirs.
    """
    with conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE devices_stage (LIKE devices INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        with conn.cursor().copy(f"COPY devices_stage ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for d in devices:
                user, pw_hash = credentials.get(d.device_id, ("", ""))
                copy.write_row(
                    (
                        d.city,
                        d.device_id,
                        d.family,
                        d.kind,
                        json.dumps(d.metrics),
                        d.vendor,
                        d.asset_id,
                        d.owner_dept,
                        d.lon,
                        d.lat,
                        d.grid_code,
                        d.transport,
                        d.source,
                        user,
                        pw_hash,
                    )
                )
        cur = conn.execute(
            """
            INSERT INTO devices AS d (city, device_id, family, kind, metrics, vendor, asset_id,
                                      owner_dept, lon, lat, grid_code, transport, source,
                                      mqtt_username, mqtt_password_hash)
            SELECT city, device_id, family, kind, metrics, vendor, asset_id, owner_dept, lon, lat,
                   grid_code, transport, source, mqtt_username, mqtt_password_hash
            FROM devices_stage
            ON CONFLICT (city, device_id) DO UPDATE SET
                family = EXCLUDED.family, kind = EXCLUDED.kind, metrics = EXCLUDED.metrics,
                vendor = EXCLUDED.vendor, asset_id = EXCLUDED.asset_id,
                owner_dept = EXCLUDED.owner_dept, lon = EXCLUDED.lon, lat = EXCLUDED.lat,
                grid_code = EXCLUDED.grid_code, transport = EXCLUDED.transport,
                source = EXCLUDED.source, updated_at = now(),
                mqtt_username = CASE WHEN EXCLUDED.mqtt_username = '' THEN d.mqtt_username
                                     ELSE EXCLUDED.mqtt_username END,
                mqtt_password_hash = CASE WHEN EXCLUDED.mqtt_password_hash = ''
                                          THEN d.mqtt_password_hash
                                          ELSE EXCLUDED.mqtt_password_hash END
            """
        )
        conn.execute(f"NOTIFY {DEVICES_CHANNEL}")
        return cur.rowcount


def load_devices(
    conn: psycopg.Connection[Any], cities: Sequence[str] | None = None
) -> list[Device]:
    query = (
        "SELECT city, device_id, family, kind, metrics, vendor, asset_id, owner_dept, lon, lat,"
        " grid_code, transport, source FROM devices"
    )
    params: tuple[Any, ...] = ()
    if cities is not None:
        query += " WHERE city = ANY(%s)"
        params = (list(cities),)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    return [Device.model_validate(r) for r in rows]


def load_credentials(conn: psycopg.Connection[Any], city: str) -> list[Credential]:
    rows = conn.execute(
        "SELECT city, device_id, family, mqtt_username, mqtt_password_hash FROM devices"
        " WHERE city = %s ORDER BY device_id",
        (city,),
    ).fetchall()
    return [Credential(*r) for r in rows]


# Devices with their last status and last reading; the last reading from the 1-minute
# rollup (real-time past its watermark, see store.queries.rollup_rows).
DEVICE_SEEN = sql.SQL("""
    SELECT d.device_id, d.family, d.kind, d.metrics, d.transport, d.asset_id, d.owner_dept,
           d.lon, d.lat, d.grid_code,
           s.status AS last_status, s.ts AS status_ts, s.battery_pct, r.last_ts AS last_reading,
           (coalesce(s.status <> 'offline' AND s.ts >= %(since)s, false)
            OR coalesce(r.last_ts >= %(since)s AND (s.ts IS NULL OR s.status <> 'offline'
                                                   OR r.last_ts > s.ts), false)) AS online
    FROM devices d
    LEFT JOIN device_status s ON s.city = d.city AND s.device_id = d.device_id
    LEFT JOIN (SELECT device_id, max(last_ts) AS last_ts FROM ({rows}) r1
               GROUP BY device_id) r ON r.device_id = d.device_id
    WHERE d.city = %(city)s
""").format(rows=queries.rollup_rows("minute", sql.SQL("r.city = %(city)s")))


def seen_params(city: str, since: datetime) -> dict[str, Any]:
    start = queries.floor_minute(since)
    return {"city": city, "since": since, "start": start, "end": queries.FOREVER}


def with_status(
    conn: psycopg.Connection[Any],
    city: str,
    now: datetime,
    online_window: timedelta,
    *,
    kind: str | None = None,
    online: bool | None = None,
    lifeline: str | None = None,
    grid_cell: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Devices of a city with their status: online when seen (reading or heartbeat)
    within ``online_window`` and not reported offline since; each with its lifeline."""
    query = sql.SQL("SELECT * FROM ({}) x WHERE true").format(DEVICE_SEEN)
    params = seen_params(city, now - online_window)
    if kind is not None:
        query += sql.SQL(" AND kind = %(kind)s")
        params["kind"] = kind
    if lifeline is not None:
        kinds = [str(k) for k, name in LIFELINE_OF_KIND.items() if name == lifeline]
        if lifeline == "public_safety":
            kinds.append("camera")
        query += sql.SQL(" AND kind = ANY(%(kinds)s)")
        params["kinds"] = kinds
    if grid_cell is not None:
        query += sql.SQL(" AND grid_code = %(grid_cell)s")
        params["grid_cell"] = grid_cell
    if online is not None:
        query += sql.SQL(" AND online = %(online)s")
        params["online"] = online
    query += sql.SQL(" ORDER BY device_id LIMIT %(limit)s OFFSET %(offset)s")
    params.update(limit=max(1, min(limit, 10000)), offset=max(0, offset))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    for row in rows:
        row["lifeline"] = (
            "public_safety"
            if row["kind"] == "camera"
            else LIFELINE_OF_KIND.get(row["kind"], "devices")
        )
    return rows
