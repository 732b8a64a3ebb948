"""CIM map layers of a city as GeoJSON features with their bounds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg


def store_layer(
    conn: psycopg.Connection[Any],
    city: str,
    layer: str,
    features: Sequence[tuple[str, dict[str, Any], dict[str, Any], tuple[float, ...]]],
) -> int:
    """Replace a city's layer with (feature id, GeoJSON geometry, properties, bounds)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("DELETE FROM cim_features WHERE city = %s AND layer = %s", (city, layer))
        cur.executemany(
            "INSERT INTO cim_features (city, layer, feature_id, geometry, props,"
            " minx, miny, maxx, maxy) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (city, layer, fid, json.dumps(geom), json.dumps(props, default=str), *bounds)
                for fid, geom, props, bounds in features
            ],
        )
    return len(features)


def load_layer(
    conn: psycopg.Connection[Any],
    city: str,
    layer: str,
    bbox: tuple[float, float, float, float] | None = None,
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    query = "SELECT feature_id, geometry, props FROM cim_features WHERE city = %s AND layer = %s"
    params: list[Any] = [city, layer]
    if bbox is not None:
        query += " AND maxx >= %s AND minx <= %s AND maxy >= %s AND miny <= %s"
        params += [bbox[0], bbox[2], bbox[1], bbox[3]]
    return [(r[0], r[1], r[2]) for r in conn.execute(query + " ORDER BY feature_id", params)]
