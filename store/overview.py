"""A city at a glance: devices online and offline, open incidents, response times and
the status of each lifeline; which cities the platform knows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from lifeline.alerts import OPEN_STATUSES
from lifeline.kinds import LIFELINE_OF_KIND
from lifeline.vocabulary import LIFELINE_OF_TYPE, LIFELINES, Severity
from store.devices import DEVICE_SEEN, seen_params


def overview(
    conn: psycopg.Connection[Any], city: str, now: datetime, online_window: timedelta
) -> dict[str, Any]:
    dev_rows = conn.execute(
        sql.SQL(
            "SELECT kind, count(*), count(*) FILTER (WHERE online),"
            " count(*) FILTER (WHERE online IS NULL) FROM ({}) x GROUP BY kind"
        ).format(DEVICE_SEEN),
        seen_params(city, now - online_window),
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
    unreported = sum(r[3] for r in dev_rows)
    by_sev = {s.value: 0 for s in Severity}
    by_type: dict[str, int] = {}
    lifeline: dict[str, dict[str, Any]] = {
        name: {"devices": 0, "online": 0, "open_incidents": 0, "worst_severity": None}
        for name in LIFELINES
    }
    for kind, n, on, _ in dev_rows:
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
        "devices": {
            "total": total,
            "online": online,
            "offline": total - online - unreported,
            "unreported": unreported,
        },
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


def known_cities(conn: psycopg.Connection[Any]) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT city FROM devices ORDER BY city")]
