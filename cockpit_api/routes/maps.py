"""A city's map layers as GeoJSON, simplified for the zoom."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from cockpit_api.deps import BBOX, City, Conn, Svc, bbox
from cockpit_api.layers import bbox_rows
from cockpit_api.models import FeatureCollection
from cockpit_api.services import json_response
from geo.mapout import feature_collection, grid_heat, points_layer
from store import alerts, devices

router = APIRouter(prefix="/v1/cities/{city}/map", tags=["map"])

Layer = Literal["grid-heat", "grid", "assets", "pipes", "pois", "devices", "incidents"]


@router.get("/{layer}", response_model=FeatureCollection)
def map_layer(
    city: City,
    layer: Layer,
    services: Svc,
    c: Conn,
    zoom: Annotated[int | None, Query(ge=0, le=22)] = None,
    bbox_: Annotated[BBOX, Query(alias="bbox")] = None,
    hours: Annotated[float, Query(gt=0, le=24 * 90)] = 24.0,
) -> Response:
    """A GeoJSON FeatureCollection for the map, simplified for ``zoom``."""
    box = bbox(bbox_)
    now = datetime.now(UTC)
    if layer in ("grid", "assets", "pipes", "pois"):
        gdf = bbox_rows(c, city, layer, box)
        props = [col for col in gdf.columns if col != gdf.geometry.name]
        return json_response(feature_collection(gdf, props, zoom))
    if layer == "grid-heat":
        events = c.execute(
            "SELECT grid_cell, severity FROM anomalies WHERE city = %s AND ts >= %s"
            " AND grid_cell IS NOT NULL",
            (city, now - timedelta(hours=hours)),
        ).fetchall()
        grid = bbox_rows(c, city, "grid", box)
        return json_response(grid_heat(grid, [(r[0], r[1]) for r in events], zoom))
    if layer == "devices":
        rows, _ = devices.with_status(
            c, city, now, services.config.online_window, devices.DeviceFilter(limit=10000)
        )
        if box is not None:
            rows = [
                r for r in rows if box[0] <= r["lon"] <= box[2] and box[1] <= r["lat"] <= box[3]
            ]
        props = ["device_id", "family", "kind", "asset_id", "grid_code", "online", "last_status"]
        return json_response(points_layer(rows, props, zoom))
    rows, _ = alerts.list_alerts(
        c,
        alerts.AlertFilter(
            cities=[city],
            statuses=["new", "acknowledged", "dispatched", "on_site"],
            start=now - timedelta(hours=hours),
            bbox=box,
            limit=500,
        ),
    )
    rows = [r for r in rows if r["lon"] is not None]
    props = ["incident_id", "type", "severity", "alert_status", "title", "updated_at"]
    return json_response(points_layer(rows, props, zoom))
