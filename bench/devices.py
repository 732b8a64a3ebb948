"""``cityops bench devices``: the device list of a city of real size, through the API.

A city of ``devices`` devices (100,000 by default: Hefei's lifeline platform watches about
85,000) in a scratch database, a tenth of them reported offline and a tenth with a
battery status; the API as its own ``cityops api serve`` process. One client asks each
query ``repeats`` times, one after another: the first page, a page deep in the list, a
kind, a grid cell, a search by the start of a device id and of an asset id, a search
that finds nothing; and the lists that need every device's status worked out (offline
only, the most recently heard first). Each query's p50 and p99 in ms, its ``total``, and
the bytes of its answer; ``worst_p99_ms`` over the queries served from the devices table
(``table_p99_ms``) and over those that need every status (``status_p99_ms``).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from tqdm import tqdm

from bench._support import api_server, scratch_database
from cityops.settings import get_settings
from store.keys import create_key
from store.migrate import migrate

CITY = "320100"
PAGE = 200


def _queries(devices: int) -> dict[str, tuple[dict[str, str], bool]]:
    """name → (query parameters, whether it needs every device's status)."""
    deep = max(0, (devices // 2 // PAGE) * PAGE)
    return {
        "first_page": ({}, False),
        "deep_page": ({"offset": str(deep)}, False),
        "kind": ({"kind": "manhole_cover"}, False),
        "grid_cell": ({"grid_cell": f"{CITY}001001007"}, False),
        "search_id": ({"q": f"dv-{devices // 2:06d}"[:-2]}, False),
        "search_asset": ({"q": f"AS-{devices // 20:05d}"[:-1]}, False),
        "search_none": ({"q": "no-such-device"}, False),
        "offline": ({"online": "false"}, True),
        "recent_first": ({"sort": "-last_reading"}, True),
    }


def run(runs: int = 1, devices: int = 100_000, repeats: int = 50) -> dict[str, Any]:
    settings = get_settings()
    with scratch_database(settings, "cityops_bench_devices") as dsn:
        token = _seed(dsn, devices)
        with api_server(dsn) as url:
            queries = _time(url, token, devices, repeats * max(1, runs))
    table = [q["p99_ms"] for q in queries.values() if not q["needs_status"]]
    status = [q["p99_ms"] for q in queries.values() if q["needs_status"]]
    return {
        "devices": devices,
        "page": PAGE,
        "table_p99_ms": max(table),
        "status_p99_ms": max(status),
        "queries": queries,
        "repeats": repeats * max(1, runs),
    }


def _seed(dsn: str, devices: int) -> str:
    """``devices`` devices of four kinds over 1,000 grid cells, ten to an asset."""
    now = datetime.now(UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO devices (city, device_id, family, kind, owner_dept, lon, lat,"
            " asset_id, grid_code, mqtt_username, mqtt_password_hash)"
            " SELECT %(city)s, 'dv-' || lpad(i::text, 6, '0'), 'sensors',"
            " (ARRAY['gas_well', 'manhole_cover', 'water_pressure', 'road_ponding'])[1 + i %% 4],"
            " 'ops', 118.6 + (i %% 400) * 0.0005, 31.9 + (i / 400) * 0.0005,"
            " 'as-' || lpad((i / 10)::text, 5, '0'),"
            " %(city)s || '001001' || lpad((i %% 1000)::text, 3, '0'),"
            " %(city)s || '.dv-' || lpad(i::text, 6, '0'), 'x'"
            " FROM generate_series(0, %(n)s - 1) i",
            {"city": CITY, "n": devices},
        )
        conn.execute(
            "INSERT INTO device_status (city, device_id, status, ts, battery_pct)"
            " SELECT %(city)s, 'dv-' || lpad(i::text, 6, '0'),"
            " CASE WHEN i %% 10 = 0 THEN 'offline' ELSE 'online' END,"
            " %(now)s - make_interval(secs => i %% 3600), 80"
            " FROM generate_series(0, %(n)s - 1, 5) i",
            {"city": CITY, "n": devices, "now": now - timedelta(minutes=1)},
        )
        conn.execute("ANALYZE devices")
        conn.execute("ANALYZE device_status")
        _, token = create_key(conn, "bench", "viewer", [CITY])
    return token


def _time(url: str, token: str, devices: int, repeats: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    queries = _queries(devices)
    bar = tqdm(total=len(queries) * repeats, desc=f"device list of {devices:,}", unit="query")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for name, (params, needs_status) in queries.items():
            path = f"/v1/cities/{CITY}/devices"
            query = {"limit": str(PAGE), **params}
            first = client.get(path, params=query)
            first.raise_for_status()
            took: list[float] = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                r = client.get(path, params=query)
                took.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                bar.update()
            body = first.json()
            out[name] = {
                "p50_ms": round(statistics.median(took), 1),
                "p99_ms": round(statistics.quantiles(took, n=100)[98], 1),
                "total": body["total"],
                "items": len(body["items"]),
                "bytes": len(first.content),
                "needs_status": needs_status,
            }
    bar.close()
    return out
