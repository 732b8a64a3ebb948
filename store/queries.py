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


def _source(bucket: timedelta) -> tuple[str, str]:
    """(table, time column) to aggregate a bucket of this width from."""
    if bucket >= timedelta(hours=1):
        return "readings_1h", "bucket"
    if bucket >= timedelta(minutes=1):
        return "readings_1m", "bucket"
    return "readings", "ts"


def _series_query(bucket: timedelta, where: sql.Composable) -> sql.Composed:
    table, col = _source(bucket)
    select: sql.Composable
    if table == "readings":
        select = sql.SQL(
            "SELECT date_bin(%(bucket)s, ts, %(origin)s) AS b, min(value), max(value),"
            " avg(value), (array_agg(value ORDER BY ts DESC))[1], count(*)"
            " FROM readings r"
        )
    else:
        select = sql.SQL(
            "SELECT date_bin(%(bucket)s, {col}, %(origin)s) AS b, min(min), max(max),"
            " sum(sum) / sum(count), (array_agg(last ORDER BY last_ts DESC))[1],"
            " sum(count)::bigint FROM {table} r"
        ).format(col=sql.Identifier(col), table=sql.Identifier(table))
    time_col = sql.Identifier("r", col)
    return sql.SQL(
        "{select} WHERE {where} AND {t} >= %(start)s AND {t} < %(end)s GROUP BY b ORDER BY b"
    ).format(select=select, where=where, t=time_col)


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
    return conn.execute(
        "SELECT DISTINCT ON (device_id, metric) device_id, metric, last_ts, last"
        " FROM readings_1m WHERE city = %s AND bucket >= date_trunc('minute', %s::timestamptz)"
        " ORDER BY device_id, metric, bucket DESC",
        (city, since),
    ).fetchall()


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
    query = sql.SQL(
        "SELECT anomaly_id, city, kind, state, device_id, camera_id, asset_id, grid_cell, lon,"
        " lat, ts, detector, severity, score, evidence, message FROM anomalies WHERE {}"
        " ORDER BY ts DESC, anomaly_id LIMIT %(limit)s OFFSET %(offset)s"
    ).format(where)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query, params).fetchall()


def incidents(conn: psycopg.Connection[Any], f: EventFilter) -> list[dict[str, Any]]:
    where, params = _where(f, "updated_at", "type", "status", "%(cell)s = ANY(grid_cells)")
    query = sql.SQL(
        "SELECT incident_id, revision, city, type, severity, status, title, anomaly_ids,"
        " asset_ids, grid_cells, lon, lat, started_at, updated_at, cleared_at FROM incidents"
        " WHERE {} ORDER BY updated_at DESC, incident_id LIMIT %(limit)s OFFSET %(offset)s"
    ).format(where)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query, params).fetchall()


def cell_rollup(
    conn: psycopg.Connection[Any], city: str, metric: str, start: datetime, end: datetime
) -> list[tuple[str, float, float, int]]:
    """(grid cell, mean, max, samples) of a metric per cell over a range (hourly rollup)."""
    return conn.execute(
        "SELECT d.grid_code, sum(r.sum) / sum(r.count), max(r.max), sum(r.count)::bigint"
        " FROM readings_1h r JOIN devices d ON d.city = r.city AND d.device_id = r.device_id"
        " WHERE r.city = %s AND r.metric = %s AND r.bucket >= %s AND r.bucket < %s"
        " AND d.grid_code IS NOT NULL GROUP BY d.grid_code ORDER BY d.grid_code",
        (city, metric, start, end),
    ).fetchall()
