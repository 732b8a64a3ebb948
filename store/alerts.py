"""Alerts with their incidents: filtered pages, one alert with its audit trail and
anomalies, lifecycle transitions and escalation.

Every read takes the caller's cities and filters by them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from lifeline.alerts import escalation_due, next_status
from lifeline.vocabulary import Severity
from store.events import ANOMALY_COLUMNS, append_feed

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
            sql.SQL(
                "SELECT {} FROM anomalies WHERE city = %s AND anomaly_id = ANY(%s) ORDER BY ts"
            ).format(ANOMALY_COLUMNS),
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
