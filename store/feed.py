"""The incident feed: every change of an alert in order, read after an id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from store.alerts import ALERT_SQL


def feed_head(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) FROM incident_feed").fetchone()
    return int(row[0]) if row else 0


def feed_since(
    conn: psycopg.Connection[Any], after_id: int, cities: Sequence[str] | None, limit: int = 500
) -> list[dict[str, Any]]:
    """Feed entries after ``after_id`` with the alert's current state, oldest first."""
    params: dict[str, Any] = {"after": after_id, "limit": limit}
    if cities is not None:
        params["cities"] = list(cities)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(feed_query(cities is not None), params).fetchall()


def feed_query(by_city: bool) -> sql.Composed:
    """Feed entries after ``%(after)s`` (optionally of ``%(cities)s``) with their alerts."""
    return sql.SQL(
        "SELECT f.id AS feed_id, f.kind AS change, x.* FROM incident_feed f"
        " JOIN ({}) x ON x.incident_id = f.incident_id WHERE f.id > %(after)s{}"
        " ORDER BY f.id LIMIT %(limit)s"
    ).format(sql.SQL(ALERT_SQL), sql.SQL(" AND f.city = ANY(%(cities)s)" if by_city else ""))
