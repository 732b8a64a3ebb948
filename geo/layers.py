"""Grid, CIM asset and POI layers: read (GeoJSON, GeoPackage, Shapefile) and validate.

Every layer leaves here in WGS84 with unique string ids and valid geometries of the
right type, or a :class:`LayerError` lists each bad feature by id (or row) and why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from geo.crs import to_storage
from geo.errors import CRSError, GeoError, LayerError


@dataclass(frozen=True)
class LayerSpec:
    """What a layer must hold: its id column, geometry types and required columns."""

    name: str
    id_column: str
    geometry_types: frozenset[str]
    required: tuple[str, ...] = ()
    id_pattern: str | None = None


POLYGONS = frozenset({"Polygon", "MultiPolygon"})
LINES = frozenset({"LineString", "MultiLineString"})
POINTS = frozenset({"Point"})

GRID = LayerSpec("grid", "code", POLYGONS, id_pattern=r"^[0-9]{15}$")
DISTRICTS = LayerSpec("districts", "code", POLYGONS, ("level",))
PIPES = LayerSpec("pipes", "asset_id", LINES, ("network", "material", "diameter_mm", "owner_dept"))
POINT_ASSETS = LayerSpec(
    "point_assets", "asset_id", POINTS | POLYGONS | LINES, ("kind", "owner_dept")
)
VALVES = LayerSpec("valves", "asset_id", POINTS, ("network",))
POIS = LayerSpec("pois", "poi_id", POINTS | POLYGONS, ("kind", "name"))

#: Pipe networks of the CIM asset map.
NETWORKS = frozenset({"gas", "water", "drainage", "heating"})


def read_layer(path: Path | str, spec: LayerSpec, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read a GeoJSON, GeoPackage or Shapefile and validate it against ``spec``."""
    path = Path(path)
    if not path.exists():
        raise GeoError(f"layer file {path} does not exist")
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise GeoError(f"cannot read {path} as a GeoJSON, GeoPackage or Shapefile: {exc}") from exc
    return validate(gdf, spec, source=str(path))


def validate(gdf: gpd.GeoDataFrame, spec: LayerSpec, source: str = "") -> gpd.GeoDataFrame:
    """Check CRS, ids, geometry validity and type; return the layer in WGS84.

    Raises :class:`CRSError` for a missing CRS and :class:`LayerError` listing every
    bad feature otherwise.
    """
    label = f"{spec.name} ({source})" if source else spec.name
    if gdf.crs is None:
        raise CRSError(f"layer {label!r} declares no CRS; declare one (e.g. EPSG:4326)")
    problems: list[str] = []
    missing = [c for c in (spec.id_column, *spec.required) if c not in gdf.columns]
    if missing:
        raise LayerError(label, [f"missing column(s): {', '.join(missing)}"])
    ids = gdf[spec.id_column]

    def name(i: int | np.integer) -> str:
        value = ids.iloc[int(i)]
        return f"feature {value!r}" if pd.notna(value) else f"row {i + 1}"

    for i in np.flatnonzero(ids.isna().to_numpy()):
        problems.append(f"row {i + 1}: empty {spec.id_column}")
    str_ids = ids.astype(str)
    if spec.id_pattern is not None:
        bad = ~str_ids.str.match(spec.id_pattern) & ids.notna()
        for i in np.flatnonzero(bad.to_numpy()):
            problems.append(f"{name(i)}: {spec.id_column} must match {spec.id_pattern}")
    dup = str_ids.duplicated(keep=False) & ids.notna()
    for value in sorted(set(str_ids[dup])):
        rows = [str(i + 1) for i in np.flatnonzero((str_ids == value).to_numpy())]
        problems.append(f"duplicate {spec.id_column} {value!r} in rows {', '.join(rows)}")
    geoms = gdf.geometry.to_numpy()
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    for i in np.flatnonzero(empty):
        problems.append(f"{name(i)}: no geometry")
    types = shapely.get_type_id(geoms)
    names = np.array(
        [
            "Point",
            "LineString",
            "LinearRing",
            "Polygon",
            "MultiPoint",
            "MultiLineString",
            "MultiPolygon",
            "GeometryCollection",
        ]
    )
    for i in np.flatnonzero(~empty):
        gtype = str(names[types[i]])
        if gtype not in spec.geometry_types:
            allowed = " or ".join(sorted(spec.geometry_types))
            problems.append(f"{name(i)}: geometry is a {gtype}, expected {allowed}")
    invalid = ~empty & ~shapely.is_valid(geoms)
    for i in np.flatnonzero(invalid):
        reason = shapely.is_valid_reason(geoms[i])
        problems.append(f"{name(i)}: invalid geometry ({reason})")
    if problems:
        raise LayerError(label, problems)
    out = to_storage(gdf, label)
    out[spec.id_column] = str_ids.to_numpy()
    return out.reset_index(drop=True)


def write_layer(gdf: gpd.GeoDataFrame, path: Path | str) -> None:
    """Write a layer; the format follows the suffix (.geojson, .gpkg, .shp)."""
    path = Path(path)
    drivers = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG", ".shp": "ESRI Shapefile"}
    driver = drivers.get(path.suffix.lower())
    if driver is None:
        raise GeoError(f"cannot write {path}: use .geojson, .gpkg or .shp")
    gdf.to_file(path, driver=driver, engine="pyogrio")


#: A feature as stored: (id, GeoJSON geometry, properties, (minx, miny, maxx, maxy)).
FeatureRow = tuple[str, dict[str, Any], dict[str, Any], tuple[float, float, float, float]]


def to_rows(gdf: gpd.GeoDataFrame, spec: LayerSpec) -> list[FeatureRow]:
    """A validated WGS84 layer as rows for storage, properties made JSON-plain."""
    geoms = gdf.geometry.to_numpy()
    texts = shapely.to_geojson(geoms)
    bounds = shapely.bounds(geoms)
    frame = pd.DataFrame(gdf.drop(columns=[gdf.geometry.name, spec.id_column]))
    plain = json.loads(frame.to_json(orient="records", date_format="iso")) if len(gdf) else []
    return [
        (str(fid), json.loads(text), p, (float(b[0]), float(b[1]), float(b[2]), float(b[3])))
        for fid, text, p, b in zip(gdf[spec.id_column], texts, plain, bounds, strict=True)
    ]


def from_rows(
    rows: Sequence[tuple[str, dict[str, Any], dict[str, Any]]], spec: LayerSpec
) -> gpd.GeoDataFrame:
    """Stored rows back into a WGS84 layer with ``spec``'s id column."""
    geoms = shapely.from_geojson([json.dumps(g) for _, g, _ in rows]) if rows else []
    frame = pd.DataFrame([{spec.id_column: fid, **props} for fid, _, props in rows])
    if frame.empty:
        frame = pd.DataFrame({spec.id_column: pd.Series([], dtype=str)})
    return gpd.GeoDataFrame(frame, geometry=list(geoms), crs="EPSG:4326")
