"""Impact of an incident: its zone, the pipe section to isolate, affected POIs and cells."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import shapely

from geo.crs import gk_zone_epsg, require_geographic, transformer
from geo.network import Isolation, PipeNetwork
from lifeline.impact import zone_radius_m
from lifeline.vocabulary import IncidentType, Severity

#: Segments per quarter circle; keeps a buffer's area within 0.05 % of the circle's.
QUAD_SEGS = 32


def zone(lon: float, lat: float, radius_m: float) -> shapely.Polygon:
    """A circle of ``radius_m`` metres around a WGS84 point, built in its GK zone."""
    metric = gk_zone_epsg(lon)
    x, y = transformer("EPSG:4326", metric).transform(lon, lat)
    circle = shapely.Point(x, y).buffer(radius_m, quad_segs=QUAD_SEGS)
    back = transformer(metric, "EPSG:4326")
    return shapely.transform(circle, lambda c: _apply(back, c))


def _apply(tf: Any, coords: Any) -> Any:
    import numpy as np

    lon, lat = tf.transform(coords[:, 0], coords[:, 1])
    return np.column_stack([lon, lat])


@dataclass(frozen=True)
class Impact:
    zone: shapely.Polygon
    radius_m: float
    isolation: Isolation | None
    pois: gpd.GeoDataFrame
    cells: gpd.GeoDataFrame
    segments: gpd.GeoDataFrame

    def to_geojson(self) -> dict[str, Any]:
        """One FeatureCollection: the zone, the isolated segments, valves, POIs and cells."""
        features: list[dict[str, Any]] = [
            _feature(self.zone, {"role": "zone", "radius_m": self.radius_m})
        ]
        for _, row in self.segments.iterrows():
            features.append(
                _feature(row.geometry, {"role": "isolated_segment", "asset_id": row["asset_id"]})
            )
        for _, row in self.pois.iterrows():
            props = {
                "role": "affected_poi",
                "poi_id": row["poi_id"],
                "kind": row["kind"],
                "name": row["name"],
            }
            features.append(_feature(row.geometry, props))
        for _, row in self.cells.iterrows():
            features.append(_feature(row.geometry, {"role": "affected_cell", "code": row["code"]}))
        summary = {
            "radius_m": self.radius_m,
            "poi_count": len(self.pois),
            "cell_count": len(self.cells),
            "segments": list(self.isolation.segment_ids) if self.isolation else [],
            "valves_to_close": list(self.isolation.valve_ids) if self.isolation else [],
            "isolation_closed": self.isolation.closed if self.isolation else None,
        }
        return {"type": "FeatureCollection", "features": features, "properties": summary}


def _feature(geom: shapely.Geometry, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": json.loads(shapely.to_geojson(geom)),
        "properties": props,
    }


def assess(
    lon: float,
    lat: float,
    incident_type: IncidentType,
    severity: Severity,
    *,
    grid: gpd.GeoDataFrame,
    pois: gpd.GeoDataFrame,
    network: PipeNetwork | None = None,
    pipes: gpd.GeoDataFrame | None = None,
    segment_id: str | None = None,
    radius_m: float | None = None,
) -> Impact:
    """Impact of an incident at a WGS84 point.

    With a ``network`` and the damaged ``segment_id``, the isolated section counts too:
    POIs and cells within the zone around the point or along the isolated pipes.
    """
    require_geographic(grid, "grid")
    require_geographic(pois, "pois")
    radius = radius_m if radius_m is not None else zone_radius_m(incident_type, severity)
    area = zone(lon, lat, radius)
    isolation = None
    segments = gpd.GeoDataFrame({"asset_id": []}, geometry=[], crs="EPSG:4326")
    if network is not None and segment_id is not None and pipes is not None:
        require_geographic(pipes, "pipes")
        isolation = network.isolate(segment_id)
        segments = pipes[pipes["asset_id"].isin(isolation.segment_ids)][["asset_id", "geometry"]]
    footprint = area
    if len(segments):
        metric = gk_zone_epsg(lon)
        corridor = segments.to_crs(metric).buffer(min(radius, 50.0)).union_all()
        footprint = shapely.union(
            area, gpd.GeoSeries([corridor], crs=metric).to_crs("EPSG:4326").iloc[0]
        )
    shapely.prepare(footprint)
    hit_pois = pois[shapely.intersects(footprint, pois.geometry.to_numpy())]
    hit_cells = grid[shapely.intersects(footprint, grid.geometry.to_numpy())]
    return Impact(area, radius, isolation, hit_pois, hit_cells, segments)
