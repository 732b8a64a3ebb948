"""``cityops bench geo``: points → grid cell codes, and points → nearest of 20,000 pipes.

Both run on one core over a synthetic city around Nanjing. Each figure is the median
of several timed runs over fresh random points.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from geo.grid import GridIndex
from geo.placement import AssetIndex
from simulators.city import build_city

GRID_POINTS = 1_000_000
NEAREST_POINTS = 100_000
PIPES = 20_000
MAX_DISTANCE_M = 100.0


def run(runs: int = 5, seed: int = 11) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    bar = tqdm(total=2 + 2 * runs, desc="bench geo", unit="step")
    grid_city = build_city(blocks=15, block_m=2000.0, cell_m=200.0)
    t0 = time.perf_counter()
    index = GridIndex.build(grid_city.grid)
    grid_build_s = time.perf_counter() - t0
    bar.update()
    minx, miny, maxx, maxy = grid_city.grid.total_bounds
    grid_rates = []
    for _ in range(runs):
        lon = rng.uniform(minx, maxx, GRID_POINTS)
        lat = rng.uniform(miny, maxy, GRID_POINTS)
        t0 = time.perf_counter()
        codes = index.cell_codes(lon, lat)
        grid_rates.append(GRID_POINTS / (time.perf_counter() - t0))
        bar.update()
    placed_share = float(np.mean(codes != ""))

    pipe_city = build_city(blocks=6, block_m=2100.0, street_m=252.0, cell_m=300.0)
    pipes = pipe_city.pipes.head(PIPES).copy()
    pipes["asset_class"] = "pipe"
    t0 = time.perf_counter()
    assets = AssetIndex.build(pipes)
    nearest_build_s = time.perf_counter() - t0
    bar.update()
    minx, miny, maxx, maxy = pipes.total_bounds
    nearest_rates = []
    for _ in range(runs):
        lon = rng.uniform(minx, maxx, NEAREST_POINTS)
        lat = rng.uniform(miny, maxy, NEAREST_POINTS)
        t0 = time.perf_counter()
        ids, _ = assets.nearest(lon, lat, ("pipe",), MAX_DISTANCE_M)
        nearest_rates.append(NEAREST_POINTS / (time.perf_counter() - t0))
        bar.update()
    bar.close()
    return {
        "grid_points_per_s": round(statistics.median(grid_rates)),
        "nearest_points_per_s": round(statistics.median(nearest_rates)),
        "grid_cells": len(grid_city.grid),
        "grid_points": GRID_POINTS,
        "grid_placed_share": round(placed_share, 4),
        "grid_build_s": round(grid_build_s, 2),
        "pipes": len(pipes),
        "nearest_points": NEAREST_POINTS,
        "nearest_found_share": round(float(np.mean(ids != None)), 4),  # noqa: E711
        "max_distance_m": MAX_DISTANCE_M,
        "nearest_build_s": round(nearest_build_s, 2),
        "runs": runs,
    }
