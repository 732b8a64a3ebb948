"""The demo pilot city: layers (grid, pipes, assets, POIs) and a device file to onboard."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import shapely

from geo.layers import write_layer
from lifeline.devices import with_check_digit
from lifeline.platforms import UNSIGNED
from simulators.city import OWNER as NETWORK_OWNER
from simulators.city import CityLayers, build_city
from store.push_sources import create_source, revoke_source, source_names

DEMO_CITY = "320100"
#: The platforms that push the demo city's data over HTTPS, each in its own format: the
#: carrier IoT platforms its battery NB-IoT sensors report to (gas wells through CTWing,
#: manhole covers through OneNET Studio, drain levels through Huawei IoTDA) and the video
#: platform its cameras' analysis runs on (iSecure Center); every other sensor speaks MQTT.
CTWING_SOURCE = "ctwing"
ONENET_SOURCE = "onenet"
IOTDA_SOURCE = "huawei"
ISC_SOURCE = "isc"
VIA = {
    "gas_well": CTWING_SOURCE,
    "manhole_cover": ONENET_SOURCE,
    "drain_level": IOTDA_SOURCE,
    "camera": ISC_SOURCE,
}
PUSHED_KINDS = frozenset(VIA)
#: The platform of each of the demo city's push sources.
PLATFORM_OF = {
    CTWING_SOURCE: "ctwing",
    ONENET_SOURCE: "onenet",
    IOTDA_SOURCE: "iotda",
    ISC_SOURCE: "hik-isc",
}


@dataclass(frozen=True)
class DemoFiles:
    grid: Path
    pipes: Path
    assets: Path
    pois: Path
    valves: Path
    devices: Path
    device_count: int

    def layers(self) -> dict[str, Path]:
        """The CIM layer files by layer name, as ``cityops cim load`` takes them."""
        return {
            "grid": self.grid,
            "pipes": self.pipes,
            "assets": self.assets,
            "pois": self.pois,
            "valves": self.valves,
        }


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
        folder / "valves.gpkg",
        folder / "devices.csv",
        0,
    )
    write_layer(layers.grid, files.grid)
    write_layer(layers.pipes, files.pipes)
    write_layer(layers.point_assets, files.assets)
    write_layer(layers.pois, files.pois)
    write_layer(layers.valves, files.valves)
    rows = demo_devices(layers, code)
    with files.devices.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "device_id",
                "kind",
                "lon",
                "lat",
                "asset_id",
                "owner_dept",
                "transport",
                "source",
                "platform_id",
                "imei",
            ]
        )
        writer.writerows(
            (*row, *transport_of(row[1]), *platform_ids(row[0], row[1])) for row in rows
        )
    return DemoFiles(
        files.grid, files.pipes, files.assets, files.pois, files.valves, files.devices, len(rows)
    )


def transport_of(kind: str) -> tuple[str, str]:
    """How a demo device of ``kind`` reports: (transport, push source or '')."""
    return ("http", VIA[kind]) if kind in VIA else ("mqtt", "")


def platform_ids(device_id: str, kind: str) -> tuple[str, str]:
    """The ids a demo device's platform knows it by: (platform id, IMEI), or ('', '')
    for a device no platform names (CTWing: a 32-hex device id; OneNET: a device name;
    both with the NB-IoT module's IMEI; IoTDA: product id + ``_`` + the module's IMEI;
    iSecure Center: a camera's 32-hex index code)."""
    via = VIA.get(kind)
    if via is None:
        return "", ""
    digest = hashlib.sha256(f"{DEMO_CITY}/{device_id}".encode()).hexdigest()
    if via == ISC_SOURCE:
        return digest[:32], ""
    if via == IOTDA_SOURCE:
        imei = with_check_digit("86" + str(int(digest[32:], 16))[-12:])
        return f"{digest[:24]}_{imei}", imei
    imei = with_check_digit("86" + str(int(digest[32:], 16))[-12:])
    return (digest[:32] if via == CTWING_SOURCE else f"cover-{digest[:12]}"), imei


def ensure_push_sources(
    conn: psycopg.Connection[Any], code: str = DEMO_CITY, tokens: Path | None = None
) -> list[str]:
    """Create the demo city's push sources it lacks; the URL token of a source of an
    unsigned platform goes into ``tokens`` (JSON, source → token, mode 0600), for the
    simulator to push with (OneNET's token is kept by the platform, like an HMAC
    secret). A source whose token is not in the file is created anew. The names of the
    sources created."""
    active = source_names(conn, code)
    known: dict[str, str] = {}
    if tokens is not None and tokens.exists():
        known = json.loads(tokens.read_text())
    made = []
    for name, platform in PLATFORM_OF.items():
        unsigned = platform in UNSIGNED
        if name in active and (not unsigned or name in known):
            continue
        if name in active:
            revoke_source(conn, code, name)
        created = create_source(conn, code, name, platform=platform)
        if created.url_token is not None:
            known[name] = created.url_token
        made.append(name)
    if tokens is not None and made:
        tokens.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tokens, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(known, fh)
    return made


#: device id, kind, lon, lat, asset id, owner department
DeviceRow = tuple[str, str, float, float, str, str]


def demo_devices(layers: CityLayers, code: str = DEMO_CITY) -> list[DeviceRow]:
    """The demo city's sensors and cameras: one per point asset (and drain levels in every
    other manhole), sensors along the water, gas, drainage and heating mains, cameras over
    the grid."""
    rows: list[DeviceRow] = []
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
        if asset["kind"] == "manhole" and int(asset["asset_id"][3:]) % 2 == 0:
            rows.append(
                (
                    f"dra-{asset['asset_id']}",
                    "drain_level",
                    pt.x,
                    pt.y,
                    asset["asset_id"],
                    NETWORK_OWNER["drainage"],
                )
            )
    # Along the mains, every 40th pipe segment: (prefix, kind, on the pipe as its asset).
    # A water district inlet has pressure and flow; a low road point has a ponding gauge
    # with a rain gauge beside it; a heating substation reports all its metrics.
    along = {
        "water": (("wat", "water_pressure", True), ("wfl", "water_flow", True)),
        "gas": (("gas", "gas_pressure", True),),
        "drainage": (("rpd", "road_ponding", True), ("rng", "rain_gauge", False)),
        "heating": (("hea", "heat_network", True),),
    }
    for network, kinds in along.items():
        pipes = layers.pipes[layers.pipes["network"] == network].iloc[::40]
        for _, pipe in pipes.iterrows():
            pt = pipe.geometry.interpolate(0.5, normalized=True)
            for prefix, kind, on_pipe in kinds:
                rows.append(
                    (
                        f"{prefix}-{pipe['asset_id']}",
                        kind,
                        pt.x,
                        pt.y,
                        pipe["asset_id"] if on_pipe else "",
                        pipe["owner_dept"],
                    )
                )
    cameras = layers.grid.iloc[:: max(1, len(layers.grid) // 12)]
    for i, (_, cell) in enumerate(cameras.iterrows()):
        pt = cell.geometry.representative_point()
        rows.append((f"{code[:6]}00081320{i + 1:06d}", "camera", pt.x, pt.y, "", "city management"))
    return rows
