"""Readings: bulk, idempotent writes with COPY, the same on both storage paths.

Rows go through COPY into a session-local staging table and are inserted with
``ON CONFLICT DO NOTHING``, so a batch written twice adds nothing. On plain PostgreSQL
the same statement folds exactly the newly inserted rows into the 1-minute and 1-hour
rollup tables, so rollups stay correct under replays too; on TimescaleDB continuous
aggregates do that work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import psycopg

from lifeline.records import Reading
from store.migrate import PLAIN, backend

ReadingRow = tuple[str, str, str, datetime, float, str, list[str]]

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS readings_stage (
    city text, device_id text, metric text, ts timestamptz, value double precision,
    unit text, quality text[]
) ON COMMIT DELETE ROWS
"""

# Binary COPY: several times faster than text for timestamps and floats.
STAGE_TYPES = ["text", "text", "text", "timestamptz", "float8", "text", "text[]"]

_ROLLUP = """
INSERT INTO {table} AS r (bucket, city, device_id, metric, min, max, sum, count, last_ts, last)
SELECT date_trunc('{unit}', ts), city, device_id, metric, min(value), max(value), sum(value),
       count(*), max(ts), (array_agg(value ORDER BY ts DESC))[1]
FROM new GROUP BY 1, 2, 3, 4
ON CONFLICT (city, device_id, metric, bucket) DO UPDATE SET
    min = least(r.min, EXCLUDED.min), max = greatest(r.max, EXCLUDED.max),
    sum = r.sum + EXCLUDED.sum, count = r.count + EXCLUDED.count,
    last = CASE WHEN EXCLUDED.last_ts >= r.last_ts THEN EXCLUDED.last ELSE r.last END,
    last_ts = greatest(r.last_ts, EXCLUDED.last_ts)
"""

# Built from the fixed strings above only; no value is ever formatted into SQL.
_INSERT_PLAIN = (
    "WITH new AS (INSERT INTO readings SELECT * FROM readings_stage ON CONFLICT DO NOTHING"  # noqa: S608
    " RETURNING city, device_id, metric, ts, value),"
    " m AS (" + _ROLLUP.format(table="readings_1m", unit="minute") + "),"
    " h AS (" + _ROLLUP.format(table="readings_1h", unit="hour") + ")"
    " SELECT count(*) FROM new"
)
_INSERT_TIMESCALE = "INSERT INTO readings SELECT * FROM readings_stage ON CONFLICT DO NOTHING"


class ReadingWriter:
    """Writes reading batches on one connection (plain or TimescaleDB path)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.plain = backend(conn) == PLAIN
        self._days: set[date] = set()

    def write(self, rows: Sequence[ReadingRow]) -> int:
        """Write one batch in one transaction; return how many rows were new."""
        if not rows:
            return 0
        with self.conn.transaction():
            return self.write_in_transaction(rows)

    def write_in_transaction(self, rows: Sequence[ReadingRow]) -> int:
        """Write inside the caller's transaction (so other tables commit with it)."""
        conn = self.conn
        if self.plain:
            days = {r[3].date() for r in rows} - self._days
            if days:
                conn.execute("SELECT cityops_ensure_partitions(%s, %s)", (min(days), max(days)))
        conn.execute(_STAGE)
        with conn.cursor().copy(
            "COPY readings_stage (city, device_id, metric, ts, value, unit, quality)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(STAGE_TYPES)
            for row in rows:
                copy.write_row(row)
        if self.plain:
            result = conn.execute(_INSERT_PLAIN).fetchone()
            inserted = int(result[0]) if result else 0
            self._days |= {r[3].date() for r in rows}
        else:
            inserted = conn.execute(_INSERT_TIMESCALE).rowcount
        conn.execute("TRUNCATE readings_stage")
        return inserted


def rows_of(readings: Iterable[Reading]) -> list[ReadingRow]:
    return [
        (r.city, r.device_id, r.metric, r.ts, r.value, r.unit, list(r.quality)) for r in readings
    ]


def write_readings(conn: psycopg.Connection[Any], readings: Iterable[Reading]) -> int:
    """Write readings in one transaction; return how many were new."""
    return ReadingWriter(conn).write(rows_of(readings))


def read_readings(
    conn: psycopg.Connection[Any],
    city: str,
    device_id: str,
    metric: str,
    since: datetime,
    until: datetime,
) -> Sequence[Reading]:
    rows = conn.execute(
        "SELECT city, device_id, ts, metric, value, unit, quality FROM readings"
        " WHERE city = %s AND device_id = %s AND metric = %s AND ts >= %s AND ts < %s"
        " ORDER BY ts",
        (city, device_id, metric, since, until),
    ).fetchall()
    return [
        Reading(city=c, device_id=d, ts=t, metric=m, value=v, unit=u, quality=tuple(q))
        for c, d, t, m, v, u, q in rows
    ]
