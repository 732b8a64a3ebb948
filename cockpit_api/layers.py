"""A city's CIM layers from the store, as GeoDataFrames, kept for a few minutes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import psycopg

from geo.layers import GRID, PIPES, POINT_ASSETS, POIS, VALVES, LayerSpec, from_rows
from geo.network import PipeNetwork
from store.layers import load_layer

SPECS: dict[str, LayerSpec] = {
    "grid": GRID,
    "pipes": PIPES,
    "assets": POINT_ASSETS,
    "valves": VALVES,
    "pois": POIS,
}


@dataclass
class CityLayers:
    frames: dict[str, gpd.GeoDataFrame]
    _networks: dict[str, PipeNetwork | None]

    def frame(self, layer: str) -> gpd.GeoDataFrame:
        return self.frames[layer]

    def network_of(self, pipe_id: str) -> tuple[PipeNetwork, gpd.GeoDataFrame] | None:
        """The topology of the network a pipe belongs to, with that network's pipes."""
        pipes = self.frames["pipes"]
        if pipes.empty or pipe_id not in set(pipes["asset_id"]):
            return None
        name = str(pipes.loc[pipes["asset_id"] == pipe_id, "network"].iloc[0])
        mine = pipes[pipes["network"] == name]
        if name not in self._networks:
            valves = self.frames["valves"]
            if not valves.empty and "network" in valves.columns:
                valves = valves[valves["network"] == name]
            self._networks[name] = PipeNetwork(mine, valves if not valves.empty else None)
        net = self._networks[name]
        return None if net is None else (net, mine)


class LayerCache:
    def __init__(self, connect: Callable[[], Any], ttl_s: float = 300.0) -> None:
        self._connect = connect
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._cities: dict[str, tuple[float, CityLayers]] = {}

    def get(self, city: str) -> CityLayers:
        now = time.monotonic()
        with self._lock:
            hit = self._cities.get(city)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._connect() as conn:
            frames = {
                name: from_rows(load_layer(conn, city, name), spec) for name, spec in SPECS.items()
            }
        layers = CityLayers(frames, {})
        with self._lock:
            self._cities[city] = (now + self._ttl, layers)
        return layers


def bbox_rows(
    conn: psycopg.Connection[Any],
    city: str,
    layer: str,
    bbox: tuple[float, float, float, float] | None,
) -> gpd.GeoDataFrame:
    return from_rows(load_layer(conn, city, layer, bbox), SPECS[layer])
