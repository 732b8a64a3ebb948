"""Queries and writes behind the cockpit API: keys, overview, alerts and their lifecycle,
the incident feed, escalation, webhooks and their delivery log, and CIM layers.

Every statement is parameterised; every read takes the caller's cities and filters by them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from lifeline.alerts import OPEN_STATUSES, escalation_due, next_status
from lifeline.roles import PLATFORM_ADMIN, ROLES
from lifeline.vocabulary import (
    LIFELINE_OF_KIND,
    LIFELINE_OF_TYPE,
    LIFELINES,
    Severity,
)
from store import queries
from store.events import append_feed

KEY_PREFIX = "cok_"


# --- API keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    role: str
    cities: tuple[str, ...]  # empty for a platform admin: every city


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    conn: psycopg.Connection[Any], name: str, role: str, cities: Sequence[str]
) -> tuple[ApiKey, str]:
    """A new key; the token (``cok_<id>.<secret>``) is returned once and stored only hashed."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role != PLATFORM_ADMIN and not cities:
        raise ValueError(f"a {role} key needs at least one city")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    cities = () if role == PLATFORM_ADMIN else tuple(sorted(set(cities)))
    conn.execute(
        "INSERT INTO api_keys (key_id, secret_hash, name, role, cities)"
        " VALUES (%s, %s, %s, %s, %s)",
        (key_id, _hash(secret), name, role, list(cities)),
    )
    return ApiKey(key_id, name, role, cities), f"{KEY_PREFIX}{key_id}.{secret}"


def verify_key(conn: psycopg.Connection[Any], token: str) -> ApiKey | None:
    """The key a token belongs to, if the token is valid and the key not revoked."""
    if not token.startswith(KEY_PREFIX) or "." not in token:
        return None
    key_id, _, secret = token[len(KEY_PREFIX) :].partition(".")
    row = conn.execute(
        "SELECT secret_hash, name, role, cities FROM api_keys"
        " WHERE key_id = %s AND revoked_at IS NULL",
        (key_id,),
    ).fetchone()
    if row is None or not hmac.compare_digest(row[0], _hash(secret)):
        return None
    return ApiKey(key_id, row[1], row[2], tuple(row[3]))


def issue_ticket(conn: psycopg.Connection[Any], key_id: str, ttl: timedelta) -> str:
    """A one-time ticket standing in for key ``key_id`` for ``ttl``; expired ones go."""
    ticket = secrets.token_urlsafe(24)
    conn.execute("DELETE FROM feed_tickets WHERE expires_at < now()")
    conn.execute(
        "INSERT INTO feed_tickets (ticket_hash, key_id, expires_at) VALUES (%s, %s, now() + %s)",
        (_hash(ticket), key_id, ttl),
    )
    return ticket


def redeem_ticket(conn: psycopg.Connection[Any], ticket: str) -> ApiKey | None:
    """The key a ticket stands in for, once: used, expired or of a revoked key, None."""
    row = conn.execute(
        "WITH t AS (DELETE FROM feed_tickets WHERE ticket_hash = %s"
        "  RETURNING key_id, expires_at)"
        " SELECT k.key_id, k.name, k.role, k.cities FROM t JOIN api_keys k USING (key_id)"
        " WHERE t.expires_at > now() AND k.revoked_at IS NULL",
        (_hash(ticket),),
    ).fetchone()
    return None if row is None else ApiKey(row[0], row[1], row[2], tuple(row[3]))


def revoke_key(conn: psycopg.Connection[Any], key_id: str) -> bool:
    cur = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
        (key_id,),
    )
    return cur.rowcount == 1


def list_keys(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT key_id, name, role, cities, created_at, revoked_at FROM api_keys"
            " ORDER BY created_at"
        ).fetchall()


def known_cities(conn: psycopg.Connection[Any]) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT city FROM devices ORDER BY city")]


# --- overview ---------------------------------------------------------------------------

# Devices with their last status and last reading; the last reading from the 1-minute
# rollup (real-time past its watermark, see store.queries.rollup_rows).
DEVICE_SEEN = sql.SQL("""
    SELECT d.device_id, d.family, d.kind, d.metrics, d.transport, d.asset_id, d.owner_dept,
           d.lon, d.lat, d.grid_code,
           s.status AS last_status, s.ts AS status_ts, s.battery_pct, r.last_ts AS last_reading,
           (coalesce(s.status <> 'offline' AND s.ts >= %(since)s, false)
            OR coalesce(r.last_ts >= %(since)s AND (s.ts IS NULL OR s.status <> 'offline'
                                                   OR r.last_ts > s.ts), false)) AS online
    FROM devices d
    LEFT JOIN device_status s ON s.city = d.city AND s.device_id = d.device_id
    LEFT JOIN (SELECT device_id, max(last_ts) AS last_ts FROM ({rows}) r1
               GROUP BY device_id) r ON r.device_id = d.device_id
    WHERE d.city = %(city)s
""").format(rows=queries.rollup_rows("minute", sql.SQL("r.city = %(city)s")))


def _seen_params(city: str, since: datetime) -> dict[str, Any]:
    start = queries.floor_minute(since)
    return {"city": city, "since": since, "start": start, "end": queries.FOREVER}


def devices(
    conn: psycopg.Connection[Any],
    city: str,
    now: datetime,
    online_window: timedelta,
    *,
    kind: str | None = None,
    online: bool | None = None,
    lifeline: str | None = None,
    grid_cell: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Devices of a city with their status: online when seen (reading or heartbeat)
    within ``online_window`` and not reported offline since; each with its lifeline."""
    query = sql.SQL("SELECT * FROM ({}) x WHERE true").format(DEVICE_SEEN)
    params = _seen_params(city, now - online_window)
    if kind is not None:
        query += sql.SQL(" AND kind = %(kind)s")
        params["kind"] = kind
    if lifeline is not None:
        kinds = [str(k) for k, name in LIFELINE_OF_KIND.items() if name == lifeline]
        if lifeline == "public_safety":
            kinds.append("camera")
        query += sql.SQL(" AND kind = ANY(%(kinds)s)")
        params["kinds"] = kinds
    if grid_cell is not None:
        query += sql.SQL(" AND grid_code = %(grid_cell)s")
        params["grid_cell"] = grid_cell
    if online is not None:
        query += sql.SQL(" AND online = %(online)s")
        params["online"] = online
    query += sql.SQL(" ORDER BY device_id LIMIT %(limit)s OFFSET %(offset)s")
    params.update(limit=max(1, min(limit, 10000)), offset=max(0, offset))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, params).fetchall()
    for row in rows:
        row["lifeline"] = (
            "public_safety"
            if row["kind"] == "camera"
            else LIFELINE_OF_KIND.get(row["kind"], "devices")
        )
    return rows


def overview(
    conn: psycopg.Connection[Any], city: str, now: datetime, online_window: timedelta
) -> dict[str, Any]:
    dev_rows = conn.execute(
        sql.SQL(
            "SELECT kind, count(*), count(*) FILTER (WHERE online) FROM ({}) x GROUP BY kind"
        ).format(DEVICE_SEEN),
        _seen_params(city, now - online_window),
    ).fetchall()
    open_rows = conn.execute(
        "SELECT i.type, i.severity, count(*) FROM alerts a"
        " JOIN incidents i ON i.incident_id = a.alert_id"
        " WHERE a.city = %s AND a.status = ANY(%s) GROUP BY i.type, i.severity",
        (city, list(OPEN_STATUSES)),
    ).fetchall()
    times = conn.execute(
        "SELECT avg(extract(epoch FROM acknowledged_at - created_at)),"
        " avg(extract(epoch FROM resolved_at - created_at)),"
        " count(*) FILTER (WHERE acknowledged_at IS NOT NULL),"
        " count(*) FILTER (WHERE resolved_at IS NOT NULL)"
        " FROM alerts WHERE city = %s AND created_at >= %s",
        (city, now - timedelta(days=30)),
    ).fetchone()
    assert times is not None  # noqa: S101  # an aggregate always returns a row
    total = sum(r[1] for r in dev_rows)
    online = sum(r[2] for r in dev_rows)
    by_sev = {s.value: 0 for s in Severity}
    by_type: dict[str, int] = {}
    lifeline: dict[str, dict[str, Any]] = {
        name: {"devices": 0, "online": 0, "open_incidents": 0, "worst_severity": None}
        for name in LIFELINES
    }
    for kind, n, on in dev_rows:
        entry = lifeline[LIFELINE_OF_KIND.get(kind, "devices")]
        entry["devices"] += n
        entry["online"] += on
    for typ, sev, n in open_rows:
        by_sev[sev] += n
        by_type[typ] = by_type.get(typ, 0) + n
        entry = lifeline[LIFELINE_OF_TYPE.get(typ, "devices")]
        entry["open_incidents"] += n
        worst = entry["worst_severity"]
        if worst is None or Severity(sev).level < Severity(worst).level:
            entry["worst_severity"] = sev
    for entry in lifeline.values():
        entry["status"] = (
            "alarm"
            if entry["worst_severity"] in ("red", "orange")
            else "warning"
            if entry["open_incidents"]
            else "normal"
        )
    return {
        "city": city,
        "at": now,
        "devices": {"total": total, "online": online, "offline": total - online},
        "open_incidents": {
            "total": sum(by_sev.values()),
            "by_severity": by_sev,
            "by_type": by_type,
        },
        "mean_time_to_acknowledge_s": None if times[0] is None else float(times[0]),
        "mean_time_to_resolve_s": None if times[1] is None else float(times[1]),
        "acknowledged_30d": times[2],
        "resolved_30d": times[3],
        "lifelines": lifeline,
    }


def city_known(conn: psycopg.Connection[Any], city: str) -> bool:
    """Whether the platform knows ``city``: it has devices, map layers or alerts."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM devices WHERE city = %(c)s)"
        " OR EXISTS (SELECT 1 FROM cim_features WHERE city = %(c)s)"
        " OR EXISTS (SELECT 1 FROM alerts WHERE city = %(c)s)",
        {"c": city},
    ).fetchone()
    return bool(row and row[0])


# --- alerts -----------------------------------------------------------------------------

ALERT_SQL = """
    SELECT i.incident_id, i.revision, i.city, i.type, i.severity, i.status AS incident_status,
           i.title, i.anomaly_ids, i.asset_ids, i.grid_cells, i.lon, i.lat, i.started_at,
           i.updated_at, i.cleared_at, a.status AS alert_status, a.assigned_dept,
           a.escalation_level, a.created_at, a.updated_at AS alert_updated_at,
           a.acknowledged_at, a.resolved_at,
           (SELECT count(*) FROM alert_audit u WHERE u.alert_id = a.alert_id) AS changes
    FROM alerts a JOIN incidents i ON i.incident_id = a.alert_id
"""


@dataclass(frozen=True)
class AlertFilter:
    cities: Sequence[str] | None  # None: every city
    types: Sequence[str] = ()
    severities: Sequence[str] = ()
    statuses: Sequence[str] = ()
    incident_statuses: Sequence[str] = ()
    start: datetime | None = None
    end: datetime | None = None
    bbox: tuple[float, float, float, float] | None = None
    grid_cell: str | None = None
    limit: int = 50
    offset: int = 0


def list_alerts(conn: psycopg.Connection[Any], f: AlertFilter) -> tuple[list[dict[str, Any]], int]:
    """One page of alerts (newest change first) and how many match in all."""
    where = ["true"]
    params: dict[str, Any] = {}
    if f.cities is not None:
        where.append("a.city = ANY(%(cities)s)")
        params["cities"] = list(f.cities)
    for column, values, key in (
        ("i.type", f.types, "types"),
        ("i.severity", f.severities, "sev"),
        ("a.status", f.statuses, "status"),
        ("i.status", f.incident_statuses, "istatus"),
    ):
        if values:
            where.append(f"{column} = ANY(%({key})s)")
            params[key] = list(values)
    if f.start is not None:
        where.append("i.updated_at >= %(start)s")
        params["start"] = f.start
    if f.end is not None:
        where.append("i.started_at < %(end)s")
        params["end"] = f.end
    if f.bbox is not None:
        where.append("i.lon BETWEEN %(w)s AND %(e)s AND i.lat BETWEEN %(s)s AND %(n)s")
        params.update(dict(zip(("w", "s", "e", "n"), f.bbox, strict=True)))
    if f.grid_cell is not None:
        where.append("%(cell)s = ANY(i.grid_cells)")
        params["cell"] = f.grid_cell
    clause = " AND ".join(where)
    params.update(limit=max(1, min(f.limit, 500)), offset=max(0, f.offset))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            sql.SQL(
                "{} WHERE {} ORDER BY greatest(i.updated_at, a.updated_at) DESC, i.incident_id"
                " LIMIT %(limit)s OFFSET %(offset)s"
            ).format(sql.SQL(ALERT_SQL), sql.SQL(clause)),
            params,
        ).fetchall()
        count = cur.execute(
            sql.SQL(
                "SELECT count(*) AS n FROM alerts a JOIN incidents i"
                " ON i.incident_id = a.alert_id WHERE {}"
            ).format(sql.SQL(clause)),
            params,
        ).fetchone()
    return rows, int(count["n"]) if count else 0


def get_alert(
    conn: psycopg.Connection[Any], incident_id: str, cities: Sequence[str] | None
) -> dict[str, Any] | None:
    """The alert of an incident, if it is in one of ``cities`` (None: any city)."""
    params: dict[str, Any] = {"id": incident_id}
    query = f"{ALERT_SQL} WHERE a.alert_id = %(id)s"
    if cities is not None:
        query += " AND a.city = ANY(%(cities)s)"
        params["cities"] = list(cities)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchone()


def audit(conn: psycopg.Connection[Any], incident_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT from_status, to_status, actor, note, at FROM alert_audit"
            " WHERE alert_id = %s ORDER BY id",
            (incident_id,),
        ).fetchall()


def anomalies_of(
    conn: psycopg.Connection[Any], city: str, anomaly_ids: Sequence[str]
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT anomaly_id, kind, state, device_id, camera_id, asset_id, grid_cell, lon, lat,"
            " ts, detector, severity, score, evidence, message FROM anomalies"
            " WHERE city = %s AND anomaly_id = ANY(%s) ORDER BY ts",
            (city, list(anomaly_ids)),
        ).fetchall()


class NotFound(LookupError):
    pass


def transition(
    conn: psycopg.Connection[Any],
    incident_id: str,
    cities: Sequence[str] | None,
    action: str,
    actor: str,
    note: str,
    department: str | None = None,
) -> dict[str, Any]:
    """Apply a lifecycle action in one transaction: row lock, check, update, audit, feed.

    Raises ``NotFound`` (unknown or another city's alert) or ``TransitionError``.
    """
    with conn.transaction():
        params: dict[str, Any] = {"id": incident_id}
        query = "SELECT city, status FROM alerts WHERE alert_id = %(id)s"
        if cities is not None:
            query += " AND city = ANY(%(cities)s)"
            params["cities"] = list(cities)
        row = conn.execute(query + " FOR UPDATE", params).fetchone()
        if row is None:
            raise NotFound(incident_id)
        city, current = row
        new = next_status(action, current)
        if action == "assign" and not department:
            from lifeline.alerts import TransitionError

            raise TransitionError("assign needs the department to assign the alert to")
        conn.execute(
            "UPDATE alerts SET status = %(new)s, updated_at = now(),"
            " assigned_dept = coalesce(%(dept)s, assigned_dept),"
            " acknowledged_at = CASE WHEN acknowledged_at IS NULL AND %(new)s <> 'new'"
            "   THEN now() ELSE acknowledged_at END,"
            " resolved_at = CASE WHEN %(new)s IN ('resolved', 'false_alarm')"
            "   AND resolved_at IS NULL THEN now() ELSE resolved_at END"
            " WHERE alert_id = %(id)s",
            {"new": new, "dept": department, "id": incident_id},
        )
        text = note if action != "assign" else f"assigned to {department}. {note}".strip()
        conn.execute(
            "INSERT INTO alert_audit (alert_id, from_status, to_status, actor, note)"
            " VALUES (%s, %s, %s, %s, %s)",
            (incident_id, current, new, actor, text),
        )
        append_feed(conn, [(city, incident_id, "alert", 0)])
    found = get_alert(conn, incident_id, None)
    assert found is not None  # noqa: S101  # just updated
    return found


def escalate_alone(conn: psycopg.Connection[Any], now: datetime) -> list[str] | None:
    """:func:`escalate`, by one API replica at a time (a PostgreSQL advisory lock, let go
    when done or when the replica's connection drops); None when another is at it."""
    row = conn.execute("SELECT pg_try_advisory_lock(hashtext('cityops.escalation'))").fetchone()
    if not (row and row[0]):
        return None
    try:
        return escalate(conn, now)
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext('cityops.escalation'))")


def escalate(conn: psycopg.Connection[Any], now: datetime, limit: int = 200) -> list[str]:
    """Escalate unacknowledged alerts past their severity's deadline; the ids escalated.

    Every open alert is looked at, ``limit`` at a time (oldest first, one transaction
    each): alerts whose deadline has not come never hold back those whose has."""
    done: list[str] = []
    after: tuple[datetime, str] | None = None
    while True:
        with conn.transaction():
            rows = conn.execute(
                "SELECT a.alert_id, a.city, i.severity, a.created_at, a.escalation_level"
                " FROM alerts a JOIN incidents i ON i.incident_id = a.alert_id"
                " WHERE a.status = 'new' AND a.escalation_level < 3"
                " AND (%(after)s::timestamptz IS NULL"
                "      OR (a.created_at, a.alert_id) > (%(after)s, %(after_id)s))"
                " ORDER BY a.created_at, a.alert_id LIMIT %(limit)s"
                " FOR UPDATE OF a SKIP LOCKED",
                {
                    "after": after[0] if after else None,
                    "after_id": after[1] if after else "",
                    "limit": limit,
                },
            ).fetchall()
            feed = []
            for alert_id, city, sev, created, level in rows:
                due = escalation_due(Severity(sev), "new", now - created, level)
                if due is None:
                    continue
                conn.execute(
                    "UPDATE alerts SET escalation_level = %s, updated_at = now()"
                    " WHERE alert_id = %s",
                    (due, alert_id),
                )
                conn.execute(
                    "INSERT INTO alert_audit (alert_id, from_status, to_status, actor, note)"
                    " VALUES (%s, 'new', 'new', 'platform', %s)",
                    (
                        alert_id,
                        f"escalated to level {due}: not acknowledged within "
                        f"{int((now - created).total_seconds() // 60)} min",
                    ),
                )
                feed.append((city, alert_id, "alert", 0))
                done.append(alert_id)
            append_feed(conn, feed)
        if len(rows) < limit:
            return done
        after = (rows[-1][3], rows[-1][0])


# --- feed -------------------------------------------------------------------------------


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


# --- webhooks ---------------------------------------------------------------------------


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


def sign(secret: str, body: bytes) -> str:
    """The ``X-CityOps-Signature`` of a webhook body: hex HMAC-SHA256 with the hook's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- CIM layers -------------------------------------------------------------------------


def store_layer(
    conn: psycopg.Connection[Any],
    city: str,
    layer: str,
    features: Sequence[tuple[str, dict[str, Any], dict[str, Any], tuple[float, ...]]],
) -> int:
    """Replace a city's layer with (feature id, GeoJSON geometry, properties, bounds)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("DELETE FROM cim_features WHERE city = %s AND layer = %s", (city, layer))
        cur.executemany(
            "INSERT INTO cim_features (city, layer, feature_id, geometry, props,"
            " minx, miny, maxx, maxy) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (city, layer, fid, json.dumps(geom), json.dumps(props, default=str), *bounds)
                for fid, geom, props, bounds in features
            ],
        )
    return len(features)


def load_layer(
    conn: psycopg.Connection[Any],
    city: str,
    layer: str,
    bbox: tuple[float, float, float, float] | None = None,
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    query = "SELECT feature_id, geometry, props FROM cim_features WHERE city = %s AND layer = %s"
    params: list[Any] = [city, layer]
    if bbox is not None:
        query += " AND maxx >= %s AND minx <= %s AND maxy >= %s AND miny <= %s"
        params += [bbox[0], bbox[2], bbox[1], bbox[3]]
    return [(r[0], r[1], r[2]) for r in conn.execute(query + " ORDER BY feature_id", params)]
