"""Readings: bulk, idempotent writes with COPY, and reads back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg

from lifeline.records import Reading

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS readings_stage
    (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
"""


def write_readings(conn: psycopg.Connection[Any], readings: Iterable[Reading]) -> int:
    """Write readings in one transaction; return how many were new.

    Rows go through COPY into a session-local staging table and are inserted with
    ``ON CONFLICT DO NOTHING``, so the same batch written twice adds nothing.
    """
    with conn.transaction():
        conn.execute(_STAGE)
        with conn.cursor().copy(
            "COPY readings_stage (city, device_id, metric, ts, value, unit, quality) FROM STDIN"
        ) as copy:
            for r in readings:
                copy.write_row(
                    (r.city, r.device_id, r.metric, r.ts, r.value, r.unit, list(r.quality))
                )
        cur = conn.execute(
            "INSERT INTO readings SELECT * FROM readings_stage ON CONFLICT DO NOTHING"
        )
        return cur.rowcount


def read_readings(
    conn: psycopg.Connection[Any],
    device_id: str,
    metric: str,
    since: datetime,
    until: datetime,
) -> Sequence[Reading]:
    rows = conn.execute(
        "SELECT city, device_id, ts, metric, value, unit, quality FROM readings"
        " WHERE device_id = %s AND metric = %s AND ts >= %s AND ts < %s ORDER BY ts",
        (device_id, metric, since, until),
    ).fetchall()
    return [
        Reading(city=c, device_id=d, ts=t, metric=m, value=v, unit=u, quality=tuple(q))
        for c, d, t, m, v, u, q in rows
    ]
