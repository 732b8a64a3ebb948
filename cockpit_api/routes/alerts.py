"""Alerts: the filtered list, one alert with its evidence and impact, lifecycle steps."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi import Path as PathParam

from cockpit_api import present
from cockpit_api.auth import Principal, cities_for
from cockpit_api.deps import ALERT_ID, BBOX, Conn, Dispatcher, Lang, Svc, Time, Who, bbox
from cockpit_api.middleware import alerts_key
from cockpit_api.models import ActionBody, AlertDetail, AlertPage
from cockpit_api.models import Alert as AlertAnswer
from cockpit_api.services import json_response
from lifeline.alerts import ACTIONS, STATUSES, TransitionError
from lifeline.codes import GRID_PATTERN, is_city_code
from lifeline.vocabulary import IncidentType, Severity
from store import alerts as store
from store.queries import choose_bucket, series

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


@router.get("", response_model=AlertPage)
async def list_alerts(
    request: Request,
    who: Who,
    language: Lang,
    services: Svc,
    city: Annotated[list[str], Query(description="city codes; default all of the key's")] = [],  # noqa: B006
    type: Annotated[list[IncidentType], Query()] = [],  # noqa: B006
    severity: Annotated[list[Severity], Query()] = [],  # noqa: B006
    status_: Annotated[list[Literal[STATUSES]], Query(alias="status")] = [],  # type: ignore[valid-type]  # noqa: B006
    incident_status: Annotated[list[Literal["open", "cleared"]], Query()] = [],  # noqa: B006
    start: Time | None = None,
    end: Time | None = None,
    bbox_: Annotated[BBOX, Query(alias="bbox")] = None,
    grid_cell: Annotated[str | None, Query(pattern=GRID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Alerts with their incidents, newest change first, filtered and paged."""
    for code in city:
        if not is_city_code(code):
            raise HTTPException(422, detail=f"city {code!r} is not a 6-digit city code")
    f = store.AlertFilter(
        cities=cities_for(who, city),
        types=[t.value for t in type],
        severities=[s.value for s in severity],
        statuses=list(status_),
        incident_statuses=list(incident_status),
        start=start,
        end=end,
        bbox=bbox(bbox_),
        grid_cell=grid_cell,
        limit=limit,
        offset=offset,
    )

    def build() -> dict[str, Any]:
        with services.pool.connection() as c:
            rows, total = store.list_alerts(c, f)
        return {
            "items": [present.alert(r, language) for r in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    key = alerts_key([*request.query_params.multi_items(), ("lang", language)], who.scope_key)
    return await services.cached(key, services.config.list_ttl_s, build)


def visible(c: psycopg.Connection[Any], who: Principal, alert_id: str) -> dict[str, Any]:
    """The alert, if it is in one of the caller's cities; else 404."""
    row = store.get_alert(c, alert_id, who.scope())
    if row is None:
        raise HTTPException(404, detail=f"no alert {alert_id!r} in the cities of this key")
    return row


@router.get("/{alert_id}", response_model=AlertDetail)
def alert_detail(
    who: Who,
    alert_id: ALERT_ID,
    language: Lang,
    services: Svc,
    c: Conn,
    window_min: Annotated[int, Query(ge=1, le=1440, description="readings around it")] = 30,
) -> Response:
    """One alert: its incident, audit trail, anomalies with the readings around them,
    and the impact (zone, isolating valves, affected POIs and grid cells)."""
    row = visible(c, who, alert_id)
    anomalies = store.anomalies_of(c, row["city"], row["anomaly_ids"])
    start = row["started_at"] - timedelta(minutes=window_min)
    end = (row["cleared_at"] or row["updated_at"]) + timedelta(minutes=window_min)
    devices = {ev["device_id"] for a in anomalies for ev in a["evidence"] or []}
    kinds = dict(
        c.execute(
            "SELECT device_id, kind FROM devices WHERE city = %s AND device_id = ANY(%s)",
            (row["city"], sorted(devices)),
        ).fetchall()
    )
    evidence = []
    seen = set()
    # A joint anomaly names the metrics that broke from the others, most first: those
    # are charted first.
    for a in sorted(anomalies, key=lambda a: a["detector"] != "joint"):
        for ev in a["evidence"] or []:
            key = (ev["device_id"], ev["metric"])
            if key in seen:
                continue
            seen.add(key)
            evidence.append(
                {
                    "device_id": key[0],
                    "metric": key[1],
                    "unit": ev.get("unit"),
                    "kind": kinds.get(key[0]),
                    "levels": present.levels(kinds.get(key[0]), key[1]),
                    "bucket_s": choose_bucket(start, end).total_seconds(),
                    "points": present.points(series(c, row["city"], key[0], key[1], start, end)),
                }
            )
    trail = store.audit(c, alert_id)
    out = present.alert(row, language)
    out.update(
        audit=trail,
        anomalies=anomalies,
        evidence=evidence,
        impact=present.impact(row, services.layers),
    )
    return json_response(out)


@router.post("/{alert_id}/actions/{action}", response_model=AlertAnswer)
def act(
    who: Dispatcher,
    alert_id: ALERT_ID,
    language: Lang,
    services: Svc,
    c: Conn,
    action: Annotated[Literal[tuple(ACTIONS)], PathParam()],  # type: ignore[valid-type]
    body: ActionBody | None = None,
) -> Response:
    """A lifecycle step: acknowledge, assign, dispatch, on_site, resolve, close or
    false_alarm. 409 if the alert's status does not allow it, saying what does."""
    body = body or ActionBody()
    try:
        row = store.transition(
            c, alert_id, who.scope(), action, who.actor, body.note, body.department
        )
    except store.NotFound:
        raise HTTPException(
            404, detail=f"no alert {alert_id!r} in the cities of this key"
        ) from None
    except TransitionError as exc:
        raise HTTPException(409, detail=str(exc)) from None
    services.wrote()
    return json_response(present.alert(row, language))
