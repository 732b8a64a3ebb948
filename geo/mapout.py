"""GeoJSON layers for the cockpit map: grid heat, assets, devices, live incidents.

Geometries are simplified for the requested web-map zoom (half a pixel of tolerance),
so a city-wide view stays light and a street view stays exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo.crs import require_geographic
from lifeline.vocabulary import Severity

#: Zoom at and above which geometries are sent unsimplified.
EXACT_ZOOM = 17


def tolerance_deg(zoom: int | None) -> float:
    """Half a 256-px tile pixel at ``zoom``, in degrees; 0 for exact output."""
    if zoom is None or zoom >= EXACT_ZOOM:
        return 0.0
    return 360.0 / (256 * 2.0**zoom) / 2


def feature_collection(
    gdf: gpd.GeoDataFrame, properties: Sequence[str], zoom: int | None = None
) -> dict[str, Any]:
    """A FeatureCollection of ``gdf`` (WGS84) with the named property columns."""
    require_geographic(gdf, "map layer")
    geoms = gdf.geometry.to_numpy()
    tol = tolerance_deg(zoom)
    if tol > 0:
        geoms = shapely.simplify(geoms, tol, preserve_topology=True)
    texts = shapely.to_geojson(geoms)
    records = gdf[list(properties)].to_dict("records")
    features = [
        {"type": "Feature", "geometry": json.loads(t), "properties": _plain(r)}
        for t, r in zip(texts, records, strict=True)
    ]
    return {"type": "FeatureCollection", "features": features}


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, float) and np.isnan(value):
            out[key] = None
        elif isinstance(value, np.generic):
            out[key] = value.item()
        elif isinstance(value, datetime | pd.Timestamp):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out


def grid_heat(
    grid: gpd.GeoDataFrame,
    events: Iterable[tuple[str, Severity | str]],
    zoom: int | None = None,
    include_empty: bool = False,
) -> dict[str, Any]:
    """Per cell: how many events and the worst severity among them.

    ``events`` are (grid_code, severity) pairs already filtered to the time window.
    """
    counts: dict[str, int] = {}
    worst: dict[str, int] = {}
    for code, sev in events:
        level = Severity(sev).level
        counts[code] = counts.get(code, 0) + 1
        worst[code] = min(worst.get(code, 5), level)
    cells = grid if include_empty else grid[grid["code"].isin(counts)]
    cells = cells[["code", "geometry"]].copy()
    cells["count"] = [counts.get(c, 0) for c in cells["code"]]
    cells["worst_severity"] = [
        Severity.from_level(worst[c]).value if c in worst else None for c in cells["code"]
    ]
    return feature_collection(cells, ["code", "count", "worst_severity"], zoom)


def points_layer(
    rows: Sequence[Mapping[str, Any]], properties: Sequence[str], zoom: int | None = None
) -> dict[str, Any]:
    """Devices or incidents (dicts with lon and lat) as a point FeatureCollection."""
    frame = pd.DataFrame(list(rows), columns=[*properties, "lon", "lat"])
    gdf = gpd.GeoDataFrame(
        frame[list(properties)],
        geometry=gpd.points_from_xy(frame["lon"], frame["lat"]),
        crs="EPSG:4326",
    )
    return feature_collection(gdf, properties, zoom)
