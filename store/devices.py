"""Device registry: bulk upsert at onboarding, reads for ingest, and devices with their
status (online, last status, last reading) for the API."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from lifeline.devices import Device
from lifeline.kinds import LIFELINE_OF_KIND
from store import queries
from store.errors import Conflict
from store.events import ANOMALY_COLUMNS

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
    "platform_id",
    "imei",
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
                        d.platform_id,
                        d.imei,
                        user,
                        pw_hash,
                    )
                )
        try:
            cur = conn.execute(
                """
            INSERT INTO devices AS d (city, device_id, family, kind, metrics, vendor, asset_id,
                                      owner_dept, lon, lat, grid_code, transport, source,
                                      platform_id, imei, mqtt_username, mqtt_password_hash)
            SELECT city, device_id, family, kind, metrics, vendor, asset_id, owner_dept, lon, lat,
                   grid_code, transport, source, platform_id, imei, mqtt_username,
                   mqtt_password_hash
            FROM devices_stage
            ON CONFLICT (city, device_id) DO UPDATE SET
                family = EXCLUDED.family, kind = EXCLUDED.kind, metrics = EXCLUDED.metrics,
                vendor = EXCLUDED.vendor, asset_id = EXCLUDED.asset_id,
                owner_dept = EXCLUDED.owner_dept, lon = EXCLUDED.lon, lat = EXCLUDED.lat,
                grid_code = EXCLUDED.grid_code, transport = EXCLUDED.transport,
                source = EXCLUDED.source, platform_id = EXCLUDED.platform_id,
                imei = EXCLUDED.imei, updated_at = now(),
                mqtt_username = CASE WHEN EXCLUDED.mqtt_username = '' THEN d.mqtt_username
                                     ELSE EXCLUDED.mqtt_username END,
                mqtt_password_hash = CASE WHEN EXCLUDED.mqtt_password_hash = ''
                                          THEN d.mqtt_password_hash
                                          ELSE EXCLUDED.mqtt_password_hash END
            """
            )
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(
                "a device has the IMEI or platform id of another device of its city "
                f"({exc.diag.message_detail})"
            ) from exc
        conn.execute(f"NOTIFY {DEVICES_CHANNEL}")
        return cur.rowcount


def load_devices(
    conn: psycopg.Connection[Any], cities: Sequence[str] | None = None
) -> list[Device]:
    query = (
        "SELECT city, device_id, family, kind, metrics, vendor, asset_id, owner_dept, lon, lat,"
        " grid_code, transport, source, platform_id, imei FROM devices"
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
def device_seen(ids: bool = False) -> sql.Composed:
    """Devices of ``%(city)s`` with their last status, last reading and whether they
    are online (seen since ``%(since)s``; unknown, NULL, for a camera that has never
    sent a heartbeat or status: it reports events only, and its silence means nothing);
    with ``ids`` only those in ``%(ids)s``, their
    readings looked up alone (a page of a large city costs a page, not the city)."""
    only = sql.SQL(" AND {} = ANY(%(ids)s)") if ids else None
    rows_where: sql.Composable = sql.SQL("r.city = %(city)s")
    devices_where: sql.Composable = sql.SQL("d.city = %(city)s")
    if only is not None:
        rows_where += only.format(sql.SQL("r.device_id"))
        devices_where += only.format(sql.SQL("d.device_id"))
    return sql.SQL("""
    SELECT d.device_id, d.family, d.kind, d.metrics, d.transport, d.asset_id, d.owner_dept,
           d.lon, d.lat, d.grid_code, d.source, d.platform_id, d.imei,
           s.status AS last_status, s.ts AS status_ts, s.battery_pct, r.last_ts AS last_reading,
           CASE WHEN d.family = 'cameras' AND s.ts IS NULL THEN NULL ELSE
           (coalesce(s.status <> 'offline' AND s.ts >= %(since)s, false)
            OR coalesce(r.last_ts >= %(since)s AND (s.ts IS NULL OR s.status <> 'offline'
                                                   OR r.last_ts > s.ts), false)) END AS online
    FROM devices d
    LEFT JOIN device_status s ON s.city = d.city AND s.device_id = d.device_id
    LEFT JOIN (SELECT device_id, max(last_ts) AS last_ts FROM ({rows}) r1
               GROUP BY device_id) r ON r.device_id = d.device_id
    WHERE {devices}
""").format(rows=queries.rollup_rows("minute", rows_where), devices=devices_where)


DEVICE_SEEN = device_seen()


def seen_params(city: str, since: datetime) -> dict[str, Any]:
    start = queries.floor_minute(since)
    return {"city": city, "since": since, "start": start, "end": queries.FOREVER}


#: the orders a device list may be sorted in (``-`` for descending)
DeviceSort = Literal[
    "device_id", "-device_id", "kind", "grid_code", "online", "last_reading", "-last_reading"
]
#: the orders that need every device's status worked out
STATUS_SORTS = frozenset({"online", "last_reading", "-last_reading"})
#: each order in SQL; the device id breaks ties
DEVICE_SORTS: dict[DeviceSort, sql.Composable] = {
    "device_id": sql.SQL("device_id"),
    "-device_id": sql.SQL("device_id DESC"),
    "kind": sql.SQL("kind, device_id"),
    "grid_code": sql.SQL("grid_code NULLS LAST, device_id"),
    "online": sql.SQL("online, device_id"),
    "last_reading": sql.SQL("last_reading NULLS FIRST, device_id"),
    "-last_reading": sql.SQL("last_reading DESC NULLS LAST, device_id"),
}


@dataclass(frozen=True, kw_only=True)
class DeviceFilter:
    """Which devices of a city a list holds, in what order, and which page of them:
    ``q`` is the start of a device id, an asset id, a platform's id of the device (any
    case) or its IMEI."""

    kind: str | None = None
    online: bool | None = None
    lifeline: str | None = None
    grid_cell: str | None = None
    q: str | None = None
    sort: DeviceSort = "device_id"
    limit: int = 1000
    offset: int = 0


def with_status(
    conn: psycopg.Connection[Any],
    city: str,
    now: datetime,
    online_window: timedelta,
    f: DeviceFilter = DeviceFilter(),  # frozen: one shared default is safe
) -> tuple[list[dict[str, Any]], int]:
    """A page of the devices of a city with their status, and how many the filter
    holds in all: online when seen (reading or heartbeat) within ``online_window`` and
    not reported offline since; each with its lifeline."""
    where: sql.Composable = sql.SQL("")
    params = seen_params(city, now - online_window)
    if f.kind is not None:
        where += sql.SQL(" AND kind = %(kind)s")
        params["kind"] = f.kind
    if f.lifeline is not None:
        kinds = [str(k) for k, name in LIFELINE_OF_KIND.items() if name == f.lifeline]
        if f.lifeline == "public_safety":
            kinds.append("camera")
        where += sql.SQL(" AND kind = ANY(%(kinds)s)")
        params["kinds"] = kinds
    if f.grid_cell is not None:
        where += sql.SQL(" AND grid_code = %(grid_cell)s")
        params["grid_cell"] = f.grid_cell
    if f.q:
        where += sql.SQL(
            " AND (lower(device_id) LIKE %(q)s ESCAPE '\\'"
            " OR lower(asset_id) LIKE %(q)s ESCAPE '\\'"
            " OR lower(platform_id) LIKE %(q)s ESCAPE '\\'"
            " OR imei LIKE %(q)s ESCAPE '\\')"
        )
        escaped = f.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["q"] = escaped + "%"
    order = DEVICE_SORTS.get(f.sort)
    if order is None:
        raise ValueError(f"sort by one of {', '.join(DEVICE_SORTS)}, not {f.sort!r}")
    page = sql.SQL(" ORDER BY {} LIMIT %(limit)s OFFSET %(offset)s").format(order)
    params.update(limit=max(1, min(f.limit, 10000)), offset=max(0, f.offset))
    with conn.cursor(row_factory=dict_row) as cur:
        if f.online is None and f.sort not in STATUS_SORTS:
            # Filtered and ordered by what the devices table holds: count there, pick
            # the page there, and work out the status of the page's devices only.
            found = cur.execute(
                sql.SQL("SELECT count(*) AS total FROM devices WHERE city = %(city)s") + where,
                params,
            ).fetchone()
            total = int(found["total"]) if found else 0
            ids = cur.execute(
                sql.SQL("SELECT device_id FROM devices WHERE city = %(city)s") + where + page,
                params,
            ).fetchall()
            params["ids"] = [r["device_id"] for r in ids]
            query = sql.SQL("SELECT * FROM ({}) x ORDER BY {}").format(device_seen(True), order)
            rows = cur.execute(query, params).fetchall() if ids else []
        else:
            if f.online is not None:
                where += sql.SQL(" AND online = %(online)s")
                params["online"] = f.online
            query = (
                sql.SQL("SELECT *, count(*) OVER () AS total FROM ({}) x WHERE true").format(
                    DEVICE_SEEN
                )
                + where
                + page
            )
            rows = cur.execute(query, params).fetchall()
            if rows:
                total = int(rows[0].pop("total"))
            else:  # a page past the end: count what the filter holds
                count = sql.SQL("SELECT count(*) AS total FROM ({}) x WHERE true")
                counted = cur.execute(count.format(DEVICE_SEEN) + where, params).fetchone()
                total = int(counted["total"]) if counted else 0
            for row in rows:
                row.pop("total", None)
    for row in rows:
        row["lifeline"] = (
            "public_safety"
            if row["kind"] == "camera"
            else LIFELINE_OF_KIND.get(row["kind"], "devices")
        )
    return rows, total


def camera_events(
    conn: psycopg.Connection[Any], city: str, camera_id: str, limit: int = 50
) -> list[dict[str, Any]]:
    """A camera's latest events (as the anomalies they raised), newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL(
                "SELECT {} FROM anomalies WHERE city = %s AND camera_id = %s"
                " ORDER BY ts DESC, anomaly_id LIMIT %s"
            ).format(ANOMALY_COLUMNS),
            (city, camera_id, limit),
        ).fetchall()
