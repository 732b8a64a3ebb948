"""Anomalies, incidents (with their alerts) and dead letters: idempotent batch upserts."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import psycopg

from lifeline.records import Anomaly, Incident


def upsert_anomalies(conn: psycopg.Connection[Any], anomalies: Sequence[Anomaly]) -> None:
    if not anomalies:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO anomalies (anomaly_id, city, kind, state, device_id, camera_id, asset_id,
                grid_cell, lon, lat, ts, detector, severity, score, evidence, message)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (anomaly_id) DO UPDATE SET state = EXCLUDED.state,
                severity = EXCLUDED.severity, score = EXCLUDED.score,
                evidence = EXCLUDED.evidence, message = EXCLUDED.message, ts = EXCLUDED.ts
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
                severity = EXCLUDED.severity, status = EXCLUDED.status, title = EXCLUDED.title,
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
