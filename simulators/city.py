"""A synthetic pilot city: communities, unit grid, pipe networks, valves, wells, POIs.

Streets form a regular lattice; each pipe network runs under the streets a few
metres off the centre line, with valves at some crossings. Everything is
deterministic for a given seed, so tests and benchmarks see the same city.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from geo.crs import gk_zone_epsg, transformer
from geo.grid import generate_grid

#: Offset of each network from the street centre line, in metres.
NETWORK_OFFSET_M = {"gas": 4.0, "water": -4.0, "drainage": 0.0, "heating": 8.0}
OWNER = {
    "gas": "city gas group",
    "water": "water supply company",
    "drainage": "drainage management office",
    "heating": "heating company",
}


@dataclass(frozen=True)
class CityLayers:
    communities: gpd.GeoDataFrame
    grid: gpd.GeoDataFrame
    pipes: gpd.GeoDataFrame
    valves: gpd.GeoDataFrame
    point_assets: gpd.GeoDataFrame
    pois: gpd.GeoDataFrame
    metric_crs: str


def build_city(
    *,
    county: str = "320102",
    centre: tuple[float, float] = (118.78, 32.04),
    blocks: int = 3,
    block_m: float = 2000.0,
    street_m: float = 250.0,
    cell_m: float = 200.0,
    valve_every: int = 3,
    seed: int = 7,
) -> CityLayers:
    """A city of ``blocks`` by ``blocks`` communities, each ``block_m`` wide, around ``centre``."""
    rng = np.random.default_rng(seed)
    metric = gk_zone_epsg(centre[0])
    cx, cy = transformer("EPSG:4326", metric).transform(*centre)
    size = blocks * block_m
    x0, y0 = cx - size / 2, cy - size / 2

    def to_wgs(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        return gdf.set_crs(metric).to_crs("EPSG:4326")

    # Communities: streets numbered by column, communities by row within a street.
    polys, codes, names = [], [], []
    for i in range(blocks):
        for j in range(blocks):
            polys.append(
                shapely.box(
                    x0 + i * block_m,
                    y0 + j * block_m,
                    x0 + (i + 1) * block_m,
                    y0 + (j + 1) * block_m,
                )
            )
            codes.append(f"{county}{i + 1:03d}{blocks - j:03d}")
            names.append(f"Community {i + 1}-{blocks - j}")
    communities = to_wgs(gpd.GeoDataFrame({"code": codes, "name": names}, geometry=polys))
    grid = generate_grid(communities, cell_m)

    # Street lattice: lines every street_m, split into segments between crossings.
    n = round(size / street_m)
    ticks = x0 + np.arange(n + 1) * street_m, y0 + np.arange(n + 1) * street_m
    pipe_rows: list[dict[str, object]] = []
    valve_rows: list[dict[str, object]] = []
    materials = {
        "gas": "PE100",
        "water": "ductile iron",
        "drainage": "concrete",
        "heating": "steel",
    }
    for network, offset in NETWORK_OFFSET_M.items():
        for a in range(n + 1):
            for b in range(n):
                for horizontal in (True, False):
                    if horizontal:
                        y = ticks[1][a] + offset
                        line = shapely.LineString([(ticks[0][b], y), (ticks[0][b + 1], y)])
                    else:
                        x = ticks[0][a] + offset
                        line = shapely.LineString([(x, ticks[1][b]), (x, ticks[1][b + 1])])
                    pipe_rows.append(
                        {
                            "asset_id": f"{network[:2].upper()}-{'H' if horizontal else 'V'}"
                            f"{a:03d}-{b:03d}",
                            "network": network,
                            "material": materials[network],
                            "diameter_mm": int(rng.choice([160, 200, 315, 400])),
                            "pressure_class": "medium_b" if network == "gas" else "",
                            "owner_dept": OWNER[network],
                            "geometry": line,
                        }
                    )
        # Valves on every crossing of every valve_every-th street: sections are blocks.
        for a in range(n + 1):
            for b in range(n + 1):
                if network == "drainage" or (a % valve_every and b % valve_every):
                    continue
                valve_rows.append(
                    {
                        "asset_id": f"{network[:2].upper()}-VALVE-{a:03d}-{b:03d}",
                        "network": network,
                        "owner_dept": OWNER[network],
                        "geometry": shapely.Point(ticks[0][b] + offset, ticks[1][a] + offset),
                    }
                )
    # Crossings of one network meet at (x+offset, y+offset): snap the lattice there.
    pipes = gpd.GeoDataFrame(pipe_rows)
    pipes["geometry"] = [
        _offset_line(g, NETWORK_OFFSET_M[net])
        for g, net in zip(pipes.geometry, pipes["network"], strict=True)
    ]
    pipes = to_wgs(gpd.GeoDataFrame(pipes, geometry="geometry"))
    valves = to_wgs(gpd.GeoDataFrame(valve_rows, geometry="geometry"))

    point_rows: list[dict[str, object]] = []
    for k in range(n * 4):
        x, y = rng.uniform(x0, x0 + size), ticks[1][rng.integers(0, n + 1)]
        point_rows.append(
            {
                "asset_id": f"GW-{k:04d}",
                "kind": "gas_well",
                "asset_class": "gas_well",
                "owner_dept": OWNER["gas"],
                "geometry": shapely.Point(x, y + NETWORK_OFFSET_M["gas"]),
            }
        )
        point_rows.append(
            {
                "asset_id": f"MH-{k:04d}",
                "kind": "manhole",
                "asset_class": "manhole",
                "owner_dept": OWNER["drainage"],
                "geometry": shapely.Point(x + 30, y),
            }
        )
    for k in range(max(blocks, 2)):
        x = x0 + (k + 0.5) * size / max(blocks, 2)
        point_rows.append(
            {
                "asset_id": f"BR-{k:02d}",
                "kind": "bridge",
                "asset_class": "bridge",
                "owner_dept": "bridge management office",
                "geometry": shapely.box(x - 15, y0 + size / 2 - 60, x + 15, y0 + size / 2 + 60),
            }
        )
        point_rows.append(
            {
                "asset_id": f"UP-{k:02d}",
                "kind": "underpass",
                "asset_class": "underpass",
                "owner_dept": "road administration",
                "geometry": shapely.Point(x + street_m / 2, ticks[1][1]),
            }
        )
    point_rows.append(
        {
            "asset_id": "UT-00",
            "kind": "utility_tunnel",
            "asset_class": "utility_tunnel",
            "owner_dept": "utility tunnel company",
            "geometry": shapely.box(x0, cy - 6, x0 + size, cy + 6),
        }
    )
    point_assets = to_wgs(gpd.GeoDataFrame(point_rows, geometry="geometry"))

    kinds = ["school", "hospital", "metro_station"]
    poi_rows = [
        {
            "poi_id": f"POI-{k:03d}",
            "kind": kinds[k % 3],
            "name": f"{kinds[k % 3]} {k}",
            "geometry": shapely.Point(rng.uniform(x0, x0 + size), rng.uniform(y0, y0 + size)),
        }
        for k in range(blocks * blocks * 4)
    ]
    pois = to_wgs(gpd.GeoDataFrame(poi_rows, geometry="geometry"))
    return CityLayers(communities, grid, pipes, valves, point_assets, pois, metric)


def _offset_line(line: shapely.LineString, offset: float) -> shapely.LineString:
    (xa, ya), (xb, yb) = line.coords
    if ya == yb:  # horizontal: the lattice was laid with y already offset
        return shapely.LineString([(xa + offset, ya), (xb + offset, yb)])
    return shapely.LineString([(xa, ya + offset), (xb, yb + offset)])
