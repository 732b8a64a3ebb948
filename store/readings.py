"""Readings: bulk, idempotent writes with COPY, the same on both storage paths.

A batch is COPYed straight into the readings table; the primary key turns a reading
already stored into an error, and then the batch goes through a session-local staging
table and ``INSERT ... ON CONFLICT DO NOTHING`` instead, so a batch written twice adds
nothing. After such a replay the writer stays on the staging path until a batch comes
through without a reading it already had.

The rollups are not kept by the writer: on plain PostgreSQL every batch logs the time
range it covered per city, for the rollup job (:mod:`store.rollups`); on TimescaleDB
continuous aggregates do that work.
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
_COLUMNS = "(city, device_id, metric, ts, value, unit, quality)"
_COPY_DIRECT = f"COPY readings {_COLUMNS} FROM STDIN (FORMAT BINARY)"
_COPY_STAGE = f"COPY readings_stage {_COLUMNS} FROM STDIN (FORMAT BINARY)"

# Binary COPY: several times faster than text for timestamps and floats.
STAGE_TYPES = ["text", "text", "text", "timestamptz", "float8", "text", "text[]"]

_INSERT_NEW = "INSERT INTO readings SELECT * FROM readings_stage ON CONFLICT DO NOTHING"


class ReadingWriter:
    """Writes reading batches on one connection (plain or TimescaleDB path)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.plain = backend(conn) == PLAIN
        self._days: set[date] = set()
        #: False after a batch held readings already stored (a replay is under way).
        self.direct = True

    def write(self, rows: Sequence[ReadingRow]) -> int:
        """Write one batch in one transaction; return how many rows were new."""
        if not rows:
            return 0
        with self.conn.transaction():
            return self.write_in_transaction(rows)

    def write_in_transaction(self, rows: Sequence[ReadingRow]) -> int:
        """Write inside the caller's transaction (so other tables commit with it)."""
        if not rows:
            return 0
        conn = self.conn
        if self.plain:
            days = {r[3].date() for r in rows} - self._days
            if days:
                conn.execute("SELECT cityops_ensure_partitions(%s, %s)", (min(days), max(days)))
                self._days |= days
        inserted = self._copy_direct(rows) if self.direct else None
        if inserted is None:
            inserted = self._insert_new(rows)
            self.direct = inserted == len(rows)
        if self.plain:
            conn.cursor().executemany(
                "INSERT INTO rollup_pending (city, lo, hi) VALUES (%s, %s, %s)", _ranges(rows)
            )
        return inserted

    def _copy_direct(self, rows: Sequence[ReadingRow]) -> int | None:
        """COPY the batch into the table; None (and nothing written) if any was stored."""
        try:
            with (
                self.conn.transaction(),
                self.conn.cursor().copy(_COPY_DIRECT) as copy,
            ):
                copy.set_types(STAGE_TYPES)
                for row in rows:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            self.direct = False
            return None
        return len(rows)

    def _insert_new(self, rows: Sequence[ReadingRow]) -> int:
        conn = self.conn
        conn.execute(_STAGE)
        with conn.cursor().copy(_COPY_STAGE) as copy:
            copy.set_types(STAGE_TYPES)
            for row in rows:
                copy.write_row(row)
        inserted = conn.execute(_INSERT_NEW).rowcount
        conn.execute("TRUNCATE readings_stage")
        return inserted


def _ranges(rows: Sequence[ReadingRow]) -> list[tuple[str, datetime, datetime]]:
    """(city, earliest, latest) reading time of a batch, per city."""
    spans: dict[str, tuple[datetime, datetime]] = {}
    for city, _d, _m, ts, *_ in rows:
        span = spans.get(city)
        if span is None:
            spans[city] = (ts, ts)
        elif ts < span[0]:
            spans[city] = (ts, span[1])
        elif ts > span[1]:
            spans[city] = (span[0], ts)
    return [(city, lo, hi) for city, (lo, hi) in spans.items()]


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
