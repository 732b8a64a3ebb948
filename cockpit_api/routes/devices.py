"""Devices and cameras of a city with their status, one metric's series, and a camera's
latest events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi import Path as PathParam

from cockpit_api import present
from cockpit_api.deps import City, Conn, Svc, Time
from cockpit_api.models import CameraEvents, DevicePage, Lifeline, Series
from cockpit_api.services import json_response
from lifeline.codes import GRID_PATTERN
from store import devices as store
from store.queries import choose_bucket, series

router = APIRouter(prefix="/v1/cities/{city}/devices", tags=["devices"])


@router.get("", response_model=DevicePage)
def list_devices(
    city: City,
    services: Svc,
    c: Conn,
    kind: str | None = None,
    online: bool | None = None,
    lifeline: Annotated[Lifeline | None, Query()] = None,
    grid_cell: Annotated[str | None, Query(pattern=GRID_PATTERN)] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="the start of a device id or an asset id, in any case",
        ),
    ] = None,
    sort: Annotated[store.DeviceSort, Query()] = "device_id",
    limit: Annotated[int, Query(ge=1, le=10000)] = 500,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """A page of the devices and cameras with their status (online when seen recently)
    and lifeline, filtered by kind, lifeline, status, grid cell and the start of an id;
    ``total`` is how many the filter holds in all."""
    rows, total = store.with_status(
        c,
        city,
        datetime.now(UTC),
        services.config.online_window,
        store.DeviceFilter(
            kind=kind,
            online=online,
            lifeline=lifeline,
            grid_cell=grid_cell,
            q=q,
            sort=sort,
            limit=limit,
            offset=offset,
        ),
    )
    return json_response({"items": rows, "total": total, "limit": limit, "offset": offset})


@router.get("/{device_id}/series", response_model=Series)
def device_series(
    city: City,
    c: Conn,
    device_id: Annotated[str, PathParam(min_length=1, max_length=64)],
    metric: Annotated[str, Query(min_length=1, max_length=32)],
    start: Time | None = None,
    end: Time | None = None,
    bucket_s: Annotated[int | None, Query(ge=1, le=86400 * 7)] = None,
) -> Response:
    """Bucketed series (min/max/avg/last/count) of one metric; the bucket follows
    the range unless given."""
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=6)
    if start >= end:
        raise HTTPException(422, detail="start must be before end")
    if bucket_s:
        bucket = timedelta(seconds=bucket_s)
        if (end - start) / bucket > 10_000:
            raise HTTPException(
                422, detail="more than 10,000 buckets: widen bucket_s or narrow the range"
            )
    else:
        bucket = choose_bucket(start, end)
        if (end - start) / bucket > 10_000:  # longer than the widest bucket covers
            bucket = timedelta(seconds=-(-(end - start).total_seconds() // 10_000))
    points = series(c, city, device_id, metric, start, end, bucket)
    found = c.execute(
        "SELECT kind, metrics ->> %s FROM devices WHERE city = %s AND device_id = %s",
        (metric, city, device_id),
    ).fetchone()
    kind, unit = found if found else (None, None)
    return json_response(
        {
            "device_id": device_id,
            "metric": metric,
            "kind": kind,
            "unit": unit,
            "levels": present.levels(kind, metric),
            "start": start,
            "end": end,
            "bucket_s": bucket.total_seconds(),
            "points": present.points(points),
        }
    )


@router.get("/{device_id}/events", response_model=CameraEvents)
def camera_events(
    city: City,
    c: Conn,
    device_id: Annotated[str, PathParam(min_length=1, max_length=64)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """A camera's latest video events, newest first, with their pictures (mapped or
    ``unmapped``: an event whose code the city's table does not name is listed too)."""
    found = c.execute(
        "SELECT family FROM devices WHERE city = %s AND device_id = %s", (city, device_id)
    ).fetchone()
    if found is None:
        raise HTTPException(404, detail=f"city {city} has no device {device_id!r}")
    if found[0] != "cameras":
        raise HTTPException(
            422, detail=f"{device_id} is a sensor: its readings are at /devices/{{id}}/series"
        )
    rows = store.camera_events(c, city, device_id, limit)
    return json_response({"device_id": device_id, "items": rows})
