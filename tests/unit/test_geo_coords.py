"""GCJ-02 / BD-09 conversions, GK zones and CRS checks."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from geo.chinese import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    to_wgs84,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from geo.crs import gk_zone_epsg, require_crs, to_storage
from geo.errors import CRSError

GEOD = Geod(ellps="WGS84")

# Published WGS84 → GCJ-02 pairs (lon, lat) of the widely used reference implementations.
WGS_GCJ = [
    ((121.5272106, 31.1774276), (121.531541859215, 31.17530398364597)),  # Shanghai
    ((113.912316, 22.543847), (113.9171764808363, 22.540796131694766)),  # Shenzhen
    ((116.377817, 39.911954), (116.38404722455657, 39.91334545536069)),  # Beijing
    ((116.404, 39.915), (116.41024449916938, 39.91640428150164)),
]


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    return float(GEOD.inv(lon1, lat1, lon2, lat2)[2])


@pytest.mark.parametrize(("wgs", "gcj"), WGS_GCJ)
def test_wgs84_to_gcj02_matches_published_pairs(
    wgs: tuple[float, float], gcj: tuple[float, float]
) -> None:
    lon, lat = wgs84_to_gcj02(*wgs)
    assert float(lon) == pytest.approx(gcj[0], abs=1e-9)
    assert float(lat) == pytest.approx(gcj[1], abs=1e-9)


@pytest.mark.parametrize(("wgs", "gcj"), WGS_GCJ)
def test_exact_inverse_recovers_wgs84_to_a_millimetre(
    wgs: tuple[float, float], gcj: tuple[float, float]
) -> None:
    lon, lat = gcj02_to_wgs84(*gcj)
    assert metres(float(lon), float(lat), *wgs) < 0.001


def test_gcj02_to_bd09_matches_published_pair() -> None:
    lon, lat = gcj02_to_bd09(116.404, 39.915)
    assert (float(lon), float(lat)) == pytest.approx((116.41036949371029, 39.92133699351021))
    # The published one-step inverse is within centimetres of the exact one.
    back = bd09_to_gcj02(116.404, 39.915)
    assert metres(float(back[0]), float(back[1]), 116.39762729119315, 39.90865673957631) < 0.1


def test_gcj02_offset_across_jiangsu_is_hundreds_of_metres() -> None:
    lon, lat = wgs84_to_gcj02(118.7969, 32.0603)  # Nanjing
    assert 300 < metres(118.7969, 32.0603, float(lon), float(lat)) < 700


def test_no_offset_outside_china() -> None:
    lon, lat = wgs84_to_gcj02(2.3522, 48.8566)
    assert (float(lon), float(lat)) == (2.3522, 48.8566)


jiangsu = st.tuples(st.floats(116.3, 121.9), st.floats(30.7, 35.1))


@settings(max_examples=300)
@given(jiangsu)
def test_gcj02_round_trip_is_under_a_centimetre(point: tuple[float, float]) -> None:
    g = wgs84_to_gcj02(*point)
    w = gcj02_to_wgs84(*g)
    assert metres(float(w[0]), float(w[1]), *point) < 0.01


@settings(max_examples=300)
@given(jiangsu)
def test_bd09_round_trip_is_under_a_centimetre(point: tuple[float, float]) -> None:
    b = wgs84_to_bd09(*point)
    w = bd09_to_wgs84(*b)
    assert metres(float(w[0]), float(w[1]), *point) < 0.01


def test_conversions_are_vectorised() -> None:
    lon = np.linspace(118.5, 119.2, 1000)
    lat = np.linspace(31.2, 32.6, 1000)
    w = to_wgs84(*wgs84_to_gcj02(lon, lat), "GCJ-02")
    assert np.max(np.abs(w[0] - lon)) < 1e-9
    assert np.max(np.abs(w[1] - lat)) < 1e-9
    with pytest.raises(CRSError, match="unknown input CRS"):
        to_wgs84(lon, lat, "EPSG:3857")


@pytest.mark.parametrize(
    ("lon", "epsg"),
    [(118.79, "EPSG:4549"), (120.62, "EPSG:4549"), (117.18, "EPSG:4548"), (121.8, "EPSG:4550")],
)
def test_gk_zone_follows_longitude(lon: float, epsg: str) -> None:
    assert gk_zone_epsg(lon) == epsg


def test_gk_zone_outside_china_raises() -> None:
    with pytest.raises(CRSError, match="outside"):
        gk_zone_epsg(10.0)


def test_crs_checks_raise_on_mismatch_and_missing() -> None:
    pts = gpd.GeoDataFrame(geometry=[shapely.Point(118.8, 32.0)], crs="EPSG:4549")
    with pytest.raises(CRSError, match="EPSG:4549 but EPSG:4326"):
        require_crs(pts, "EPSG:4326", "devices")
    with pytest.raises(CRSError, match="no CRS"):
        require_crs(gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)]), "EPSG:4326", "devices")
    # CGCS2000 counts as WGS84 within centimetres.
    require_crs(pts.set_crs("EPSG:4490", allow_override=True), "EPSG:4326", "devices")
    assert to_storage(pts.set_crs("EPSG:4490", allow_override=True), "x").crs == "EPSG:4326"
