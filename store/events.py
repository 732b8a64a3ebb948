"""Anomalies, incidents (with their alerts) and dead letters: idempotent batch upserts."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from lifeline.records import Anomaly, DeviceStatus, Incident

#: an anomaly as the cockpit shows it
ANOMALY_COLUMNS = sql.SQL(
    "anomaly_id, kind, state, device_id, camera_id, asset_id, grid_cell, lon, lat, ts,"
    " detector, severity, score, evidence, message, pictures"
)
#: Advisory lock taken by every writer of ``incident_feed``, so feed ids follow commit order.
FEED_LOCK = 0x0C17_F33D
#: Channel notified (on commit) whenever the feed grows.
FEED_CHANNEL = "cityops_feed"


def append_feed(conn: psycopg.Connection[Any], rows: Sequence[tuple[str, str, str, int]]) -> None:
    """Add (city, incident_id, kind, revision) rows to the feed, within the caller's
    transaction; a revision already in the feed is not added twice."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (FEED_LOCK,))
        cur.executemany(
            "INSERT INTO incident_feed (city, incident_id, kind, revision)"
            " VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (incident_id, revision) WHERE kind = 'incident' DO NOTHING",
            list(rows),
        )
        cur.execute("SELECT pg_notify(%s, '')", (FEED_CHANNEL,))


def upsert_anomalies(conn: psycopg.Connection[Any], anomalies: Sequence[Anomaly]) -> None:
    if not anomalies:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO anomalies AS a (anomaly_id, city, kind, state, device_id, camera_id,
                asset_id, grid_cell, lon, lat, ts, detector, severity, score, evidence, message,
                pictures)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (anomaly_id) DO UPDATE SET state = EXCLUDED.state,
                severity = EXCLUDED.severity, score = EXCLUDED.score,
                evidence = EXCLUDED.evidence, message = EXCLUDED.message, ts = EXCLUDED.ts
            WHERE EXCLUDED.ts >= a.ts AND a.state <> 'cleared'
            """,
            [
                (
                    a.anomaly_id,
                    a.city,
                    a.kind,
                    a.state,
                    a.device_id,
                    a.camera_id,
                    a.asset_id,
                    a.grid_cell,
                    a.lon,
                    a.lat,
                    a.ts,
                    a.detector,
                    a.severity.value,
                    a.score,
                    json.dumps([e.model_dump(mode="json") for e in a.evidence]),
                    a.message,
                    list(a.pictures),
                )
                for a in anomalies
            ],
        )


def upsert_incidents(conn: psycopg.Connection[Any], incidents: Sequence[Incident]) -> None:
    """Keep the newest revision of each incident; open an alert for each new one."""
    if not incidents:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO incidents AS i (incident_id, revision, city, type, severity, status,
                title, anomaly_ids, asset_ids, grid_cells, lon, lat, started_at, updated_at,
                cleared_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (incident_id) DO UPDATE SET revision = EXCLUDED.revision,
                type = EXCLUDED.type, severity = EXCLUDED.severity, status = EXCLUDED.status,
                title = EXCLUDED.title,
                anomaly_ids = EXCLUDED.anomaly_ids, asset_ids = EXCLUDED.asset_ids,
                grid_cells = EXCLUDED.grid_cells, lon = EXCLUDED.lon, lat = EXCLUDED.lat,
                updated_at = EXCLUDED.updated_at, cleared_at = EXCLUDED.cleared_at
            WHERE EXCLUDED.revision > i.revision
            """,
            [
                (
                    i.incident_id,
                    i.revision,
                    i.city,
                    i.type.value,
                    i.severity.value,
                    i.status,
                    i.title,
                    list(i.anomaly_ids),
                    list(i.asset_ids),
                    list(i.grid_cells),
                    i.lon,
                    i.lat,
                    i.started_at,
                    i.updated_at,
                    i.cleared_at,
                )
                for i in incidents
            ],
        )
        cur.executemany(
            """
            WITH a AS (
                INSERT INTO alerts (alert_id, city, status, created_at, updated_at)
                VALUES (%s, %s, 'new', %s, %s) ON CONFLICT DO NOTHING RETURNING alert_id
            )
            INSERT INTO alert_audit (alert_id, from_status, to_status, actor, note)
            SELECT alert_id, NULL, 'new', 'platform', 'incident detected' FROM a
            """,
            [(i.incident_id, i.city, i.started_at, i.updated_at) for i in incidents],
        )
    append_feed(conn, [(i.city, i.incident_id, "incident", i.revision) for i in incidents])


def upsert_device_status(conn: psycopg.Connection[Any], statuses: Sequence[DeviceStatus]) -> None:
    """Keep the newest status message of each device."""
    if not statuses:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO device_status AS d (city, device_id, status, ts, battery_pct, rssi_dbm)
            VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (city, device_id) DO UPDATE SET status = EXCLUDED.status,
                ts = EXCLUDED.ts,
                battery_pct = coalesce(EXCLUDED.battery_pct, d.battery_pct),
                rssi_dbm = coalesce(EXCLUDED.rssi_dbm, d.rssi_dbm)
            WHERE EXCLUDED.ts >= d.ts
            """,
            [(s.city, s.device_id, s.status, s.ts, s.battery_pct, s.rssi_dbm) for s in statuses],
        )


def insert_deadletters(
    conn: psycopg.Connection[Any], letters: Sequence[tuple[int, int, dict[str, Any]]]
) -> None:
    """Dead letters by (partition, offset, record); a replay inserts nothing twice."""
    if not letters:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO deadletters (kafka_partition, kafka_offset, received_at, mqtt_topic,
                                     reason, detail, raw)
            VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
            """,
            [
                (
                    p,
                    o,
                    d.get("received_at"),
                    d.get("mqtt_topic", ""),
                    d.get("reason", "unknown"),
                    d.get("detail", ""),
                    base64.b64decode(d.get("raw_b64", "")),
                )
                for p, o, d in letters
            ],
        )


#: alert states that mean an operator has seen the alert
SEEN = ("acknowledged", "dispatched", "on_site", "resolved", "closed", "false_alarm")


async def acknowledged_series(
    conn: psycopg.AsyncConnection[Any],
    after: int,
    cities: Sequence[str],
    lookback_s: float = 7 * 86400.0,
) -> tuple[list[tuple[str, str, str, float]], int]:
    """The series (city, device, metric) behind alerts an operator has seen since audit
    entry ``after`` (and within ``lookback_s``), with when they were seen (epoch
    seconds), and the last audit entry read."""
    cur = await conn.execute(
        """
        SELECT au.id, an.city, an.device_id, an.evidence -> 0 ->> 'metric',
               extract(epoch FROM au.at)::float8
          FROM alert_audit au
          JOIN incidents i ON i.incident_id = au.alert_id
          JOIN anomalies an ON an.anomaly_id = ANY (i.anomaly_ids)
         WHERE au.id > %(after)s
           AND au.to_status = ANY (%(seen)s)
           AND au.at > now() - make_interval(secs => %(lookback)s)
           AND an.city = ANY (%(cities)s)
           AND an.device_id IS NOT NULL
           AND an.evidence -> 0 ->> 'metric' IS NOT NULL
         ORDER BY au.id
        """,
        {"after": after, "seen": list(SEEN), "lookback": lookback_s, "cities": list(cities)},
    )
    rows = await cur.fetchall()
    last = max((int(r[0]) for r in rows), default=after)
    return [(str(r[1]), str(r[2]), str(r[3]), float(r[4])) for r in rows], last
