"""Unit grid generation, lookup, placement, impact and map outputs on a synthetic city."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from geo.crs import project, unproject
from geo.errors import GeoError, LayerError
from geo.grid import GridIndex, generate_grid, split_code
from geo.impact import assess, zone
from geo.layers import GRID, PIPES, read_layer, validate, write_layer
from geo.mapout import grid_heat, points_layer, tolerance_deg
from geo.network import PipeNetwork
from geo.placement import AssetIndex, Placer, combine_assets, pipes_to_assets
from lifeline.vocabulary import IncidentType, Severity
from simulators.city import CityLayers, build_city

GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def city() -> CityLayers:
    return build_city()


@pytest.fixture(scope="module")
def index(city: CityLayers) -> GridIndex:
    return GridIndex.build(city.grid)


def test_grid_codes_have_15_digits_and_are_unique(city: CityLayers) -> None:
    codes = city.grid["code"]
    assert codes.str.fullmatch(r"\d{15}").all()
    assert codes.is_unique
    county, street, community, cell = split_code(codes.iloc[0])
    assert county == "320102"
    assert codes.iloc[0] == county + street + community + cell


def test_cells_are_numbered_west_to_east_then_north_to_south(city: CityLayers) -> None:
    one = city.grid[city.grid["code"].str.startswith("320102001001")].copy()
    centres = shapely.point_on_surface(one.geometry.to_numpy())
    one["x"], one["y"] = shapely.get_x(centres), shapely.get_y(centres)
    one = one.sort_values("code")
    first, second = one.iloc[0], one.iloc[1]
    assert first["code"].endswith("001")
    assert second["x"] > first["x"]  # next cell is east in the same row
    assert second["row"] == first["row"]
    last = one.iloc[-1]
    assert last["y"] < first["y"]  # last row is south of the first


def test_grid_covers_communities_without_overlap(city: CityLayers) -> None:
    metric = city.metric_crs
    cells = city.grid.to_crs(metric)
    comm_area = city.communities.to_crs(metric).area.sum()
    assert cells.area.sum() == pytest.approx(comm_area, rel=1e-6)
    assert cells.union_all().area == pytest.approx(comm_area, rel=1e-6)


def test_point_in_known_cell_gets_its_code(city: CityLayers, index: GridIndex) -> None:
    cell = city.grid.iloc[123]
    pt = cell.geometry.representative_point()
    assert index.cell_codes([pt.x], [pt.y])[0] == cell["code"]
    assert index.cell_codes([0.0], [0.0])[0] == ""


def test_lookup_agrees_with_spatial_join(city: CityLayers, index: GridIndex) -> None:
    rng = np.random.default_rng(3)
    minx, miny, maxx, maxy = city.grid.total_bounds
    lon = rng.uniform(minx - 0.01, maxx + 0.01, 20000)
    lat = rng.uniform(miny - 0.01, maxy + 0.01, 20000)
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    joined = gpd.sjoin(pts, city.grid[["code", "geometry"]], how="left", predicate="within")
    joined = joined[~joined.index.duplicated()]
    expected = joined["code"].fillna("").to_numpy()
    assert (index.cell_codes(lon, lat) == expected).all()


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_placement_survives_a_crs_round_trip(fx: float, fy: float) -> None:
    city = _CITY
    minx, miny, maxx, maxy = city.grid.total_bounds
    lon = np.array([minx + fx * (maxx - minx)])
    lat = np.array([miny + fy * (maxy - miny)])
    x, y = project(lon, lat, city.metric_crs)
    lon2, lat2 = unproject(x, y, city.metric_crs)
    idx = _INDEX
    assert idx.cell_codes(lon, lat)[0] == idx.cell_codes(lon2, lat2)[0] or _near_edge(lon, lat)


_CITY = build_city(blocks=2)
_INDEX = GridIndex.build(_CITY.grid)


def _near_edge(lon: np.ndarray, lat: np.ndarray) -> bool:
    pt = shapely.Point(float(lon[0]), float(lat[0]))
    return bool(_CITY.grid.boundary.distance(pt).min() < 1e-9)


def test_generate_grid_rejects_bad_cell_sizes_and_codes(city: CityLayers) -> None:
    with pytest.raises(GeoError, match="100-500 m"):
        generate_grid(city.communities, 50)
    bad = city.communities.copy()
    bad.loc[0, "code"] = "12345"
    with pytest.raises(LayerError, match="not 12 digits"):
        generate_grid(bad, 200)


def test_nearest_asset_of_the_matching_class_within_reach(city: CityLayers) -> None:
    assets = combine_assets(pipes_to_assets(city.pipes), city.point_assets)
    placer = Placer(GridIndex.build(city.grid), AssetIndex.build(assets))
    gas = city.pipes[city.pipes["network"] == "gas"].iloc[10]
    mid = gas.geometry.interpolate(0.5, normalized=True)
    placed = placer.place([mid.x], [mid.y], ("gas_pipe",), max_distance_m=20)
    assert placed["asset_id"].iloc[0] == gas["asset_id"]
    assert placed["asset_distance_m"].iloc[0] < 0.01
    assert len(placed["grid_code"].iloc[0]) == 15
    assert placed["county"].iloc[0] == "320102"
    # 6 m north of a water pipe the nearest gas pipe is further than 1 m: nothing.
    far = placer.place([mid.x], [mid.y + 0.0005], ("gas_pipe",), max_distance_m=1)
    assert far["asset_id"].iloc[0] is None
    assert np.isnan(far["asset_distance_m"].iloc[0])


def test_nearest_matches_exact_shapely_nearest(city: CityLayers) -> None:
    assets = pipes_to_assets(city.pipes)
    idx = AssetIndex.build(assets)
    rng = np.random.default_rng(5)
    minx, miny, maxx, maxy = city.grid.total_bounds
    lon, lat = rng.uniform(minx, maxx, 3000), rng.uniform(miny, maxy, 3000)
    _, dist = idx.nearest(lon, lat, ("water_pipe",), max_distance_m=100)
    water = assets[assets["asset_class"] == "water_pipe"].to_crs(idx.metric_crs)
    x, y = project(lon, lat, idx.metric_crs)
    tree = shapely.STRtree(water.geometry.to_numpy())
    (pi, _), d = tree.query_nearest(
        shapely.points(x, y), max_distance=100, return_distance=True, all_matches=False
    )
    ref = np.full(lon.size, np.nan)
    ref[pi] = d
    assert np.allclose(np.nan_to_num(ref, nan=-1), np.nan_to_num(dist, nan=-1), atol=1e-6)


def test_buffer_area_is_within_a_tenth_of_a_percent(city: CityLayers) -> None:
    for radius in (50.0, 300.0, 1000.0):
        circle = zone(118.78, 32.04, radius)
        area, _ = GEOD.geometry_area_perimeter(circle)
        assert abs(abs(area) - np.pi * radius**2) / (np.pi * radius**2) < 0.001


def test_gas_leak_impact_lists_section_valves_pois_and_cells(city: CityLayers) -> None:
    gas = city.pipes[city.pipes["network"] == "gas"]
    network = PipeNetwork(gas, city.valves[city.valves["network"] == "gas"])
    seg = gas[gas["asset_id"] == "GA-H001-001"].iloc[0]
    mid = seg.geometry.interpolate(0.5, normalized=True)
    impact = assess(
        mid.x,
        mid.y,
        IncidentType.GAS_LEAK,
        Severity.ORANGE,
        grid=city.grid,
        pois=city.pois,
        network=network,
        pipes=gas,
        segment_id="GA-H001-001",
    )
    assert impact.radius_m == 300
    assert impact.isolation is not None
    assert "GA-H001-001" in impact.isolation.segment_ids
    assert impact.isolation.closed
    assert len(impact.isolation.valve_ids) == 8
    out = impact.to_geojson()
    roles = {f["properties"]["role"] for f in out["features"]}
    assert {"zone", "isolated_segment", "affected_cell"} <= roles
    assert out["properties"]["valves_to_close"] == list(impact.isolation.valve_ids)
    assert len(impact.cells) >= 1


def test_isolating_an_unknown_segment_raises(city: CityLayers) -> None:
    gas = city.pipes[city.pipes["network"] == "gas"]
    with pytest.raises(GeoError, match="not in this network"):
        PipeNetwork(gas).isolate("nope")


def test_grid_heat_counts_and_keeps_the_worst_severity(city: CityLayers) -> None:
    a, b = city.grid["code"].iloc[0], city.grid["code"].iloc[1]
    heat = grid_heat(city.grid, [(a, "yellow"), (a, Severity.RED), (b, "blue")], zoom=12)
    by_code = {f["properties"]["code"]: f["properties"] for f in heat["features"]}
    assert by_code[a] == {"code": a, "count": 2, "worst_severity": "red"}
    assert by_code[b]["worst_severity"] == "blue"
    assert len(heat["features"]) == 2


def test_low_zoom_simplifies_and_high_zoom_is_exact(city: CityLayers) -> None:
    assert tolerance_deg(18) == 0.0
    assert tolerance_deg(10) > tolerance_deg(14) > 0
    layer = points_layer(
        [{"device_id": "d1", "status": "online", "lon": 118.78, "lat": 32.04}],
        ["device_id", "status"],
    )
    assert layer["features"][0]["geometry"]["coordinates"] == [118.78, 32.04]


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".shp"])
def test_layers_read_back_from_every_format(
    city: CityLayers, tmp_path: object, suffix: str
) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / f"grid{suffix}"
    write_layer(city.grid[["code", "geometry"]].head(50), path)
    back = read_layer(path, GRID)
    assert list(back["code"]) == list(city.grid["code"].head(50))
    assert back.crs == "EPSG:4326"


def _pipes(**change: object) -> gpd.GeoDataFrame:
    rows = {
        "asset_id": ["P1", "P2"],
        "network": ["gas", "gas"],
        "material": ["PE", "PE"],
        "diameter_mm": [200, 200],
        "owner_dept": ["gas", "gas"],
    }
    geoms = [
        shapely.LineString([(118.7, 32.0), (118.71, 32.0)]),
        shapely.LineString([(118.71, 32.0), (118.72, 32.0)]),
    ]
    frame = gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")
    for key, value in change.items():
        frame[key] = value
    return frame


def test_bad_layers_give_clear_errors_naming_the_feature() -> None:
    from geo.errors import CRSError

    with pytest.raises(CRSError, match="declares no CRS"):
        validate(_pipes().set_crs(None, allow_override=True), PIPES)
    with pytest.raises(LayerError, match="duplicate asset_id 'P1' in rows 1, 2"):
        validate(_pipes(asset_id=["P1", "P1"]), PIPES)
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    wrong = _pipes()
    wrong.loc[1, "geometry"] = bowtie
    with pytest.raises(LayerError, match="feature 'P2': geometry is a Polygon"):
        validate(wrong, PIPES)
    bad_grid = gpd.GeoDataFrame({"code": ["320102001001001"]}, geometry=[bowtie], crs="EPSG:4326")
    with pytest.raises(LayerError, match="invalid geometry"):
        validate(bad_grid, GRID)
    with pytest.raises(LayerError, match="missing column"):
        validate(_pipes().drop(columns=["owner_dept"]), PIPES)


def test_layers_survive_the_round_trip_through_stored_rows(city: CityLayers) -> None:
    from geo.layers import from_rows, to_rows

    rows = to_rows(city.pipes, PIPES)
    assert len(rows) == len(city.pipes)
    _fid, geometry, props, bounds = rows[0]
    assert geometry["type"] == "LineString"
    assert set(props) >= {"network", "material", "diameter_mm", "owner_dept"}
    assert bounds[0] <= bounds[2]
    assert bounds[1] <= bounds[3]
    back = from_rows([(f, g, p) for f, g, p, _ in rows], PIPES)
    assert list(back["asset_id"]) == list(city.pipes["asset_id"])
    assert back.crs == "EPSG:4326"
    assert shapely.equals_exact(
        back.geometry.to_numpy(), city.pipes.geometry.to_numpy(), tolerance=1e-9
    ).all()
    assert list(back["network"]) == list(city.pipes["network"])
