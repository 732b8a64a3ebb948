"""Read queries for the API and analysts, the same over both storage paths.

Every filter is a bound parameter; table and column names come only from fixed
tables in this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

#: Bucket widths offered for series, smallest first.
BUCKETS = (
    timedelta(seconds=10),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(days=1),
)
MAX_POINTS = 1000
ORIGIN = datetime.fromisoformat("2000-01-01T00:00:00+00:00")
SEVERITIES = ("red", "orange", "yellow", "blue")


def choose_bucket(start: datetime, end: datetime, max_points: int = MAX_POINTS) -> timedelta:
    """The smallest bucket that keeps a series within ``max_points`` points."""
    span = end - start
    for bucket in BUCKETS:
        if span / bucket <= max_points:
            return bucket
    return BUCKETS[-1]


@dataclass(frozen=True)
class Point:
    bucket: datetime
    min: float
    max: float
    avg: float
    last: float
    count: int


def _source(bucket: timedelta) -> str | None:
    """The rollup (``minute`` or ``hour``) to aggregate a bucket of this width from; None
    for the readings themselves."""
    if bucket >= timedelta(hours=1):
        return "hour"
    if bucket >= timedelta(minutes=1):
        return "minute"
    return None


_ROLLUP_TABLES = {"minute": "readings_1m", "hour": "readings_1h"}
#: Past every bucket: an open end for :func:`rollup_rows`.
FOREVER = datetime.fromisoformat("9999-01-01T00:00:00+00:00")


def rollup_rows(unit: str, where: sql.Composable) -> sql.Composed:
    """A subquery (alias it) of the ``unit`` rollup's rows matching ``where`` with buckets
    in [``%(start)s``, ``%(end)s``): the rollup table's before the materialization
    watermark, the readings aggregated on the fly after it — complete at any moment, as
    TimescaleDB's real-time aggregates are (there the watermark is at infinity).

    ``where`` may use ``r.city``, ``r.device_id`` and ``r.metric``.
    """
    table = sql.Identifier(_ROLLUP_TABLES[unit])
    mark = sql.SQL("(SELECT materialized_until FROM rollup_watermark)")
    return sql.SQL(
        "SELECT bucket, city, device_id, metric, min, max, sum, count, last_ts, last"
        " FROM {table} r WHERE {where} AND r.bucket >= %(start)s AND r.bucket < %(end)s"
        " AND r.bucket < {mark}"
        " UNION ALL"
        " SELECT date_trunc({unit}, r.ts), r.city, r.device_id, r.metric, min(r.value),"
        " max(r.value), sum(r.value), count(*), max(r.ts),"
        " (array_agg(r.value ORDER BY r.ts DESC))[1]"
        " FROM readings r WHERE {where}"
        " AND r.ts >= greatest({mark}, date_trunc({unit}, %(start)s::timestamptz))"
        " AND date_trunc({unit}, r.ts) >= %(start)s AND date_trunc({unit}, r.ts) < %(end)s"
        " GROUP BY 1, 2, 3, 4"
    ).format(table=table, where=where, mark=mark, unit=sql.Literal(unit))


def _series_query(bucket: timedelta, where: sql.Composable) -> sql.Composed:
    unit = _source(bucket)
    if unit is None:
        return sql.SQL(
            "SELECT date_bin(%(bucket)s, ts, %(origin)s) AS b, min(value), max(value),"
            " avg(value), (array_agg(value ORDER BY ts DESC))[1], count(*)"
            " FROM readings r WHERE {where} AND r.ts >= %(start)s AND r.ts < %(end)s"
            " GROUP BY b ORDER BY b"
        ).format(where=where)
    return sql.SQL(
        "SELECT date_bin(%(bucket)s, bucket, %(origin)s) AS b, min(min), max(max),"
        " sum(sum) / sum(count), (array_agg(last ORDER BY last_ts DESC))[1],"
        " sum(count)::bigint FROM ({rows}) r GROUP BY b ORDER BY b"
    ).format(rows=rollup_rows(unit, where))


def series(
    conn: psycopg.Connection[Any],
    city: str,
    device_id: str,
    metric: str,
    start: datetime,
    end: datetime,
    bucket: timedelta | None = None,
) -> list[Point]:
    """Bucketed series of one device's metric; the bucket follows the range if not given."""
    width = bucket or choose_bucket(start, end)
    query = _series_query(
        width, sql.SQL("r.city = %(city)s AND r.device_id = %(device)s AND r.metric = %(metric)s")
    )
    rows = conn.execute(
        query,
        {
            "bucket": width,
            "origin": ORIGIN,
            "start": start,
            "end": end,
            "city": city,
            "device": device_id,
            "metric": metric,
        },
    ).fetchall()
    return [Point(*row) for row in rows]


def cell_series(
    conn: psycopg.Connection[Any],
    city: str,
    grid_code: str,
    metric: str,
    start: datetime,
    end: datetime,
    bucket: timedelta | None = None,
) -> list[Point]:
    """Bucketed series over every device of a grid cell."""
    width = bucket or choose_bucket(start, end)
    where = sql.SQL(
        "r.city = %(city)s AND r.metric = %(metric)s AND r.device_id = ANY(ARRAY("
        "SELECT device_id FROM devices"
        " WHERE city = %(city)s AND grid_code = %(cell)s))"
    )
    rows = conn.execute(
        _series_query(width, where),
        {
            "bucket": width,
            "origin": ORIGIN,
            "start": start,
            "end": end,
            "metric": metric,
            "city": city,
            "cell": grid_code,
        },
    ).fetchall()
    return [Point(*row) for row in rows]


def latest(
    conn: psycopg.Connection[Any], city: str, since: datetime
) -> list[tuple[str, str, datetime, float]]:
    """(device, metric, time, value) of each device's latest reading since ``since``."""
    query = sql.SQL(
        "SELECT DISTINCT ON (device_id, metric) device_id, metric, last_ts, last"
        " FROM ({rows}) r ORDER BY device_id, metric, bucket DESC"
    ).format(rows=rollup_rows("minute", sql.SQL("r.city = %(city)s")))
    return conn.execute(
        query, {"city": city, "start": floor_minute(since), "end": FOREVER}
    ).fetchall()


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


@dataclass(frozen=True)
class EventFilter:
    """Filters shared by anomaly and incident listings; all optional but the city."""

    city: str
    start: datetime | None = None
    end: datetime | None = None
    severities: Sequence[str] = ()
    statuses: Sequence[str] = ()
    types: Sequence[str] = ()
    grid_cell: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    limit: int = 100
    offset: int = 0


def _where(
    f: EventFilter, time_col: str, kind_col: str, status_col: str, cell_expr: str
) -> tuple[sql.Composed, dict[str, Any]]:
    parts: list[sql.Composable] = [sql.SQL("city = %(city)s")]
    params: dict[str, Any] = {
        "city": f.city,
        "limit": max(1, min(f.limit, 1000)),
        "offset": max(0, f.offset),
    }
    if f.start is not None:
        parts.append(sql.SQL("{} >= %(start)s").format(sql.Identifier(time_col)))
        params["start"] = f.start
    if f.end is not None:
        parts.append(sql.SQL("{} < %(end)s").format(sql.Identifier(time_col)))
        params["end"] = f.end
    if f.severities:
        parts.append(sql.SQL("severity = ANY(%(sev)s)"))
        params["sev"] = list(f.severities)
    if f.statuses:
        parts.append(sql.SQL("{} = ANY(%(status)s)").format(sql.Identifier(status_col)))
        params["status"] = list(f.statuses)
    if f.types:
        parts.append(sql.SQL("{} = ANY(%(types)s)").format(sql.Identifier(kind_col)))
        params["types"] = list(f.types)
    if f.grid_cell is not None:
        parts.append(sql.SQL(cell_expr))  # a fixed expression of this module
        params["cell"] = f.grid_cell
    if f.bbox is not None:
        parts.append(sql.SQL("lon BETWEEN %(w)s AND %(e)s AND lat BETWEEN %(s)s AND %(n)s"))
        params.update(dict(zip(("w", "s", "e", "n"), f.bbox, strict=True)))
    return sql.SQL(" AND ").join(parts), params


def anomalies(conn: psycopg.Connection[Any], f: EventFilter) -> list[dict[str, Any]]:
    where, params = _where(f, "ts", "kind", "state", "grid_cell = %(cell)s")
    return _page(
        conn,
        "SELECT anomaly_id, city, kind, state, device_id, camera_id, asset_id, grid_cell, lon,"
        " lat, ts, detector, severity, score, evidence, message, pictures FROM anomalies"
        " WHERE {} ORDER BY ts DESC, anomaly_id",
        where,
        params,
    )


def incidents(conn: psycopg.Connection[Any], f: EventFilter) -> list[dict[str, Any]]:
    where, params = _where(f, "updated_at", "type", "status", "%(cell)s = ANY(grid_cells)")
    return _page(
        conn,
        "SELECT incident_id, revision, city, type, severity, status, title, anomaly_ids,"
        " asset_ids, grid_cells, lon, lat, started_at, updated_at, cleared_at FROM incidents"
        " WHERE {} ORDER BY updated_at DESC, incident_id",
        where,
        params,
    )


def _page(
    conn: psycopg.Connection[Any], query: str, where: sql.Composable, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """One page (``%(limit)s``, ``%(offset)s``) of ``query`` with ``where`` filled in."""
    paged = sql.SQL(query + " LIMIT %(limit)s OFFSET %(offset)s").format(where)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(paged, params).fetchall()


def cell_rollup(
    conn: psycopg.Connection[Any], city: str, metric: str, start: datetime, end: datetime
) -> list[tuple[str, float, float, int]]:
    """(grid cell, mean, max, samples) of a metric per cell over a range (hourly rollup)."""
    query = sql.SQL(
        "SELECT d.grid_code, sum(r.sum) / sum(r.count), max(r.max), sum(r.count)::bigint"
        " FROM ({rows}) r JOIN devices d ON d.city = r.city AND d.device_id = r.device_id"
        " WHERE d.grid_code IS NOT NULL GROUP BY d.grid_code ORDER BY d.grid_code"
    ).format(rows=rollup_rows("hour", sql.SQL("r.city = %(city)s AND r.metric = %(metric)s")))
    return conn.execute(
        query, {"city": city, "metric": metric, "start": start, "end": end}
    ).fetchall()
