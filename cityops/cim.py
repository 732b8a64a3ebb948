"""``cityops cim load``: a city's grid, CIM assets and POIs into the store for the cockpit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg

from cityops.settings import Settings
from geo.layers import (
    DISTRICTS,
    GRID,
    PIPES,
    POINT_ASSETS,
    POIS,
    VALVES,
    LayerSpec,
    read_layer,
    to_rows,
)
from store.layers import store_layer

#: Stored layer name → how its file is validated.
LAYER_SPECS: dict[str, LayerSpec] = {
    "grid": GRID,
    "pipes": PIPES,
    "assets": POINT_ASSETS,
    "valves": VALVES,
    "pois": POIS,
    "districts": DISTRICTS,
}


def load_layers(
    settings: Settings, city: str, files: dict[str, Path], log: Callable[[str], None]
) -> dict[str, int]:
    """Validate every file first (nothing is stored if one fails), then replace the layers."""
    unknown = set(files) - set(LAYER_SPECS)
    if unknown:
        raise ValueError(f"unknown layer(s) {sorted(unknown)}; use {', '.join(LAYER_SPECS)}")
    rows = {}
    for layer, path in files.items():
        log(f"reading {layer} from {path}")
        rows[layer] = to_rows(read_layer(path, LAYER_SPECS[layer]), LAYER_SPECS[layer])
    counts = {}
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        for layer, features in rows.items():
            counts[layer] = store_layer(conn, city, layer, features)
    return counts
