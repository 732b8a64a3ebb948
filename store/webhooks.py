"""Dispatcher webhooks of a city, their pending deliveries and the delivery log."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row


def add_webhook(conn: psycopg.Connection[Any], city: str, url: str, name: str) -> dict[str, Any]:
    secret = secrets.token_urlsafe(24)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO webhooks (city, url, secret, name) VALUES (%s, %s, %s, %s)"
            " RETURNING webhook_id, city, url, name, active, created_at, secret",
            (city, url, secret, name),
        ).fetchone()
    assert row is not None  # noqa: S101
    return row


def list_webhooks(conn: psycopg.Connection[Any], cities: Sequence[str]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT webhook_id, city, url, name, active, created_at FROM webhooks"
            " WHERE city = ANY(%s) ORDER BY webhook_id",
            (list(cities),),
        ).fetchall()


def delete_webhook(conn: psycopg.Connection[Any], webhook_id: int, cities: Sequence[str]) -> bool:
    cur = conn.execute(
        "DELETE FROM webhooks WHERE webhook_id = %s AND city = ANY(%s)",
        (webhook_id, list(cities)),
    )
    return cur.rowcount == 1


def enqueue_deliveries(conn: psycopg.Connection[Any], entries: Iterable[dict[str, Any]]) -> int:
    """One pending delivery per active webhook of the entry's city; replays add nothing."""
    rows = [(e["feed_id"], e["incident_id"], e["city"]) for e in entries]
    if not rows:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO webhook_deliveries (webhook_id, city, alert_id, feed_id)"
            " SELECT w.webhook_id, w.city, %(alert)s, %(feed)s FROM webhooks w"
            " WHERE w.city = %(city)s AND w.active"
            " ON CONFLICT (webhook_id, feed_id) DO NOTHING",
            [{"feed": f, "alert": a, "city": c} for f, a, c in rows],
        )
        return max(0, cur.rowcount)


def claim_deliveries(
    conn: psycopg.Connection[Any], now: datetime, limit: int = 20
) -> list[dict[str, Any]]:
    """Due deliveries, pushed back a minute so that another instance does not take them."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "UPDATE webhook_deliveries d SET next_attempt_at = %(now)s + interval '60 seconds'"
            " FROM webhooks w WHERE w.webhook_id = d.webhook_id AND d.delivery_id IN ("
            "  SELECT delivery_id FROM webhook_deliveries WHERE state = 'pending'"
            "  AND next_attempt_at <= %(now)s ORDER BY next_attempt_at LIMIT %(limit)s"
            "  FOR UPDATE SKIP LOCKED)"
            " RETURNING d.delivery_id, d.webhook_id, d.city, d.alert_id, d.feed_id, d.attempts,"
            " w.url, w.secret",
            {"now": now, "limit": limit},
        ).fetchall()


def record_delivery(
    conn: psycopg.Connection[Any],
    delivery_id: int,
    ok: bool,
    status: int | None,
    error: str,
    retry_in: timedelta | None,
) -> None:
    """The outcome of one attempt: delivered, retried after ``retry_in``, or failed."""
    state = "delivered" if ok else ("pending" if retry_in is not None else "failed")
    conn.execute(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, state = %s, last_status = %s,"
        " last_error = %s, delivered_at = CASE WHEN %s THEN now() END,"
        " next_attempt_at = now() + %s WHERE delivery_id = %s",
        (state, status, error[:500], ok, retry_in or timedelta(0), delivery_id),
    )


def delivery_log(
    conn: psycopg.Connection[Any], cities: Sequence[str], alert_id: str | None, limit: int
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"cities": list(cities), "limit": max(1, min(limit, 1000))}
    if alert_id is not None:
        params["alert"] = alert_id
    query = sql.SQL(
        "SELECT delivery_id, webhook_id, city, alert_id, feed_id, state, attempts,"
        " last_status, last_error, created_at, delivered_at, next_attempt_at"
        " FROM webhook_deliveries WHERE city = ANY(%(cities)s){}"
        " ORDER BY delivery_id DESC LIMIT %(limit)s"
    ).format(sql.SQL(" AND alert_id = %(alert)s" if alert_id is not None else ""))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()
