"""The rollup job of the plain path: 1-minute and 1-hour buckets, refreshed from the readings.

The writer logs the time range of every batch per city (``rollup_pending``). A refresh
takes the ranges that start before the new watermark (a minute behind the database's
clock), recomputes their 1-minute buckets from the readings and their 1-hour buckets from
the 1-minute ones — whole buckets, replacing what was there, so a replayed batch or a
refresh run twice changes nothing — and moves the watermark on, all in one transaction.
What lies past the watermark stays pending; queries aggregate it from the readings
(:func:`store.queries.rollup_rows`). Readings that arrive late for a bucket already
materialized log their range like any other and are folded in by the next refresh.

One refresh runs at a time per database (an advisory lock); on TimescaleDB, continuous
aggregates do all this and :func:`refresh` does nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from store.migrate import PLAIN, backend

LOCK_ID = 0x0C17_0B6  # advisory lock key of the refresh
LAG = timedelta(minutes=1)
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)

# Whole buckets replace what was there; a bucket that comes out the same is not rewritten.
_REPLACE = """
ON CONFLICT (city, device_id, metric, bucket) DO UPDATE SET
    min = EXCLUDED.min, max = EXCLUDED.max, sum = EXCLUDED.sum, count = EXCLUDED.count,
    last_ts = EXCLUDED.last_ts, last = EXCLUDED.last
WHERE (r.min, r.max, r.sum, r.count, r.last_ts, r.last)
      IS DISTINCT FROM (EXCLUDED.min, EXCLUDED.max, EXCLUDED.sum, EXCLUDED.count,
                        EXCLUDED.last_ts, EXCLUDED.last)
"""

_REFRESH_1M = (
    """
INSERT INTO readings_1m AS r (bucket, city, device_id, metric, min, max, sum, count, last_ts, last)
SELECT date_trunc('minute', ts), city, device_id, metric, min(value), max(value), sum(value),
       count(*), max(ts), (array_agg(value ORDER BY ts DESC))[1]
FROM readings WHERE city = %(city)s AND ts >= %(lo)s AND ts < %(hi)s
GROUP BY 1, 2, 3, 4
"""
    + _REPLACE
)

_REFRESH_1H = (
    """
INSERT INTO readings_1h AS r (bucket, city, device_id, metric, min, max, sum, count, last_ts, last)
SELECT date_trunc('hour', bucket), city, device_id, metric, min(min), max(max), sum(sum),
       sum(count)::bigint, max(last_ts), (array_agg(last ORDER BY last_ts DESC))[1]
FROM readings_1m WHERE city = %(city)s AND bucket >= %(lo)s AND bucket < %(hi)s
GROUP BY 1, 2, 3, 4
"""
    + _REPLACE
)


@dataclass(frozen=True)
class Refresh:
    """What one refresh did: ranges recomputed, 1-minute buckets written, new watermark."""

    ran: bool
    ranges: int = 0
    minute_rows: int = 0
    hour_rows: int = 0
    watermark: datetime | None = None


def refresh(conn: psycopg.Connection[Any], lag: timedelta = LAG) -> Refresh:
    """Fold the pending ranges before the new watermark into the rollups (plain path)."""
    if backend(conn) != PLAIN:
        return Refresh(ran=False)
    with conn.transaction():
        locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_ID,)).fetchone()
        if not locked or not locked[0]:
            return Refresh(ran=False)
        row = conn.execute(
            "SELECT greatest(materialized_until, date_trunc('minute', now() - %s))"
            " FROM rollup_watermark FOR UPDATE",
            (lag,),
        ).fetchone()
        assert row is not None  # noqa: S101  # the migration inserts the one row
        mark: datetime = row[0]
        taken = conn.execute(
            "DELETE FROM rollup_pending WHERE lo < %s RETURNING city, lo, hi", (mark,)
        ).fetchall()
        rest = [(city, mark, hi) for city, lo, hi in taken if hi >= mark]
        if rest:
            conn.cursor().executemany(
                "INSERT INTO rollup_pending (city, lo, hi) VALUES (%s, %s, %s)",
                merge(rest, timedelta(0)),
            )
        ranges = merge([(c, lo, min(hi, mark)) for c, lo, hi in taken], MINUTE)
        minute_rows = hour_rows = 0
        for city, lo, hi in ranges:
            lo_m = _floor(lo, MINUTE)
            hi_m = min(_floor(hi, MINUTE) + MINUTE, mark)
            minute_rows += conn.execute(
                _REFRESH_1M, {"city": city, "lo": lo_m, "hi": hi_m}
            ).rowcount
            lo_h = _floor(lo_m, HOUR)
            hour_rows += conn.execute(
                _REFRESH_1H, {"city": city, "lo": lo_h, "hi": min(_ceil(hi_m, HOUR), mark)}
            ).rowcount
        conn.execute("UPDATE rollup_watermark SET materialized_until = %s", (mark,))
    return Refresh(True, len(ranges), minute_rows, hour_rows, mark)


def merge(
    spans: Iterable[tuple[str, datetime, datetime]], gap: timedelta
) -> list[tuple[str, datetime, datetime]]:
    """Per city, the union of ``spans`` as disjoint ranges; ranges within ``gap`` join."""
    out: list[tuple[str, datetime, datetime]] = []
    for city, lo, hi in sorted(spans):
        if out and out[-1][0] == city and lo <= out[-1][2] + gap:
            out[-1] = (city, out[-1][1], max(hi, out[-1][2]))
        else:
            out.append((city, lo, hi))
    return out


def _floor(t: datetime, width: timedelta) -> datetime:
    return t - (t - t.replace(minute=0, second=0, microsecond=0)) % width


def _ceil(t: datetime, width: timedelta) -> datetime:
    floor = _floor(t, width)
    return floor if floor == t else floor + width
