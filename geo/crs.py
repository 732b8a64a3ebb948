"""CRS policy: what is stored, what is metric, and checks at every boundary."""

from __future__ import annotations

from functools import lru_cache

import geopandas as gpd
import numpy as np
import numpy.typing as npt
from pyproj import CRS, Transformer

from geo.errors import CRSError

WGS84 = "EPSG:4326"
CGCS2000 = "EPSG:4490"
#: Geographic CRSs treated as equal within centimetres.
GEOGRAPHIC = frozenset({WGS84, CGCS2000})
#: EPSG code of the CGCS2000 3-degree GK zone (no zone prefix) with central meridian 75°E.
_GK_FIRST_EPSG, _GK_FIRST_CM, _GK_LAST_CM = 4534, 75, 135

FloatArray = npt.NDArray[np.float64]


def gk_zone_epsg(lon: float) -> str:
    """CGCS2000 3-degree Gauss-Krüger CRS (no zone prefix) whose zone holds ``lon``.

    Nanjing (118.8°E) → zone 40, central meridian 120°E → EPSG:4549.
    """
    cm = 3 * round(lon / 3)
    if not _GK_FIRST_CM <= cm <= _GK_LAST_CM:
        raise CRSError(f"longitude {lon} lies outside the CGCS2000 3-degree GK zones of China")
    return f"EPSG:{_GK_FIRST_EPSG + (cm - _GK_FIRST_CM) // 3}"


def metric_crs_for(gdf: gpd.GeoDataFrame) -> str:
    """The GK zone of a layer's centre; the layer must be geographic."""
    require_geographic(gdf, "layer")
    minx, _, maxx, _ = gdf.total_bounds
    return gk_zone_epsg((minx + maxx) / 2)


def crs_name(crs: object) -> str | None:
    if crs is None:
        return None
    parsed = CRS.from_user_input(crs)
    epsg = parsed.to_epsg()
    return f"EPSG:{epsg}" if epsg else parsed.to_string()


def require_crs(gdf: gpd.GeoDataFrame, expected: str, what: str) -> None:
    """Raise :class:`CRSError` unless ``gdf`` is in ``expected`` (4326 and 4490 are equal)."""
    actual = crs_name(gdf.crs)
    if actual is None:
        raise CRSError(f"{what} has no CRS; declare it (e.g. EPSG:4326)")
    if actual == expected or (actual in GEOGRAPHIC and expected in GEOGRAPHIC):
        return
    raise CRSError(f"{what} is in {actual} but {expected} is required")


def require_geographic(gdf: gpd.GeoDataFrame, what: str) -> None:
    require_crs(gdf, WGS84, what)


def to_storage(gdf: gpd.GeoDataFrame, what: str) -> gpd.GeoDataFrame:
    """Reproject a layer with a declared CRS to WGS84 for storage and exchange."""
    actual = crs_name(gdf.crs)
    if actual is None:
        raise CRSError(f"{what} has no CRS; declare it (e.g. EPSG:4326)")
    if actual == WGS84:
        return gdf
    if actual == CGCS2000:
        return gdf.set_crs(WGS84, allow_override=True)
    return gdf.to_crs(WGS84)


@lru_cache(maxsize=32)
def transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def project(lon: FloatArray, lat: FloatArray, dst: str) -> tuple[FloatArray, FloatArray]:
    """WGS84 lon/lat arrays → x/y (easting/northing) in ``dst``."""
    x, y = transformer(WGS84, dst).transform(lon, lat)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def unproject(x: FloatArray, y: FloatArray, src: str) -> tuple[FloatArray, FloatArray]:
    lon, lat = transformer(src, WGS84).transform(x, y)
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
