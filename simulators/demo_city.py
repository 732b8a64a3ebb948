"""The demo pilot city: layers (grid, pipes, assets, POIs) and a device file to onboard."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import shapely

from geo.layers import write_layer
from simulators.city import CityLayers, build_city

DEMO_CITY = "320100"


@dataclass(frozen=True)
class DemoFiles:
    grid: Path
    pipes: Path
    assets: Path
    pois: Path
    devices: Path
    device_count: int


def write_demo_city(
    folder: Path, city: CityLayers | None = None, code: str = DEMO_CITY
) -> DemoFiles:
    """Write the demo city's layers and a CSV of its sensors and cameras into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    layers = city or build_city(county="320102", blocks=3)
    files = DemoFiles(
        folder / "grid.gpkg",
        folder / "pipes.gpkg",
        folder / "assets.gpkg",
        folder / "pois.gpkg",
        folder / "devices.csv",
        0,
    )
    write_layer(layers.grid, files.grid)
    write_layer(layers.pipes, files.pipes)
    write_layer(layers.point_assets, files.assets)
    write_layer(layers.pois, files.pois)
    rows: list[tuple[str, str, float, float, str, str]] = []
    for _, asset in layers.point_assets.iterrows():
        pt = shapely.point_on_surface(asset.geometry)
        kind = {
            "gas_well": "gas_well",
            "manhole": "manhole_cover",
            "underpass": "road_ponding",
            "bridge": "bridge_deflection",
            "utility_tunnel": "tunnel_env",
        }[asset["kind"]]
        rows.append(
            (
                f"{kind[:3]}-{asset['asset_id']}",
                kind,
                pt.x,
                pt.y,
                asset["asset_id"],
                asset["owner_dept"],
            )
        )
    for network, kind in (("water", "water_pressure"), ("gas", "gas_pressure")):
        pipes = layers.pipes[layers.pipes["network"] == network].iloc[::40]
        for _, pipe in pipes.iterrows():
            pt = pipe.geometry.interpolate(0.5, normalized=True)
            rows.append(
                (
                    f"{kind[:3]}-{pipe['asset_id']}",
                    kind,
                    pt.x,
                    pt.y,
                    pipe["asset_id"],
                    pipe["owner_dept"],
                )
            )
    cameras = layers.grid.iloc[:: max(1, len(layers.grid) // 12)]
    for i, (_, cell) in enumerate(cameras.iterrows()):
        pt = cell.geometry.representative_point()
        rows.append((f"{code[:6]}00081320{i + 1:06d}", "camera", pt.x, pt.y, "", "city management"))
    with files.devices.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["device_id", "kind", "lon", "lat", "asset_id", "owner_dept"])
        writer.writerows(rows)
    return DemoFiles(files.grid, files.pipes, files.assets, files.pois, files.devices, len(rows))
