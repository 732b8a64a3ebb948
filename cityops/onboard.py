"""``cityops onboard``: validate, place, store, issue MQTT credentials, reload the broker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from tqdm import tqdm

from cityops.settings import Settings
from cityops.stack.mosquitto import Mosquitto
from geo.placement import Placer
from ingest.adapters import load_vendors
from ingest.mqtt_auth import DEVICES_FRAGMENT, DeviceAccount, device_fragments
from ingest.onboarding import Plan, export_credentials, hashed, plan
from store.devices import existing_ids, load_credentials, upsert_devices
from store.migrate import migrate


@dataclass(frozen=True)
class OnboardResult:
    devices: int
    new_credentials: int
    credentials_file: Path | None
    broker_reloaded: bool


def onboard(
    settings: Settings,
    path: Path,
    city: str,
    *,
    crs: str,
    placer: Placer | None,
    credentials_out: Path,
    rotate: bool,
    show_progress: bool = True,
) -> OnboardResult:
    dsn = settings.db_dsn.get_secret_value()
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        existing = existing_ids(conn, city)
        with tqdm(desc="validate", unit="row", disable=not show_progress) as bar:
            validated: Plan = plan(
                path,
                city,
                crs=crs,
                vendors=set(load_vendors()),
                placer=placer,
                existing=existing,
                rotate=rotate,
                progress=bar.update,
            )
        with tqdm(
            total=len(validated.new_credentials),
            desc="credentials",
            unit="device",
            disable=not show_progress,
        ) as bar:
            creds = hashed(validated, progress=bar.update)
        written = upsert_devices(conn, validated.devices, creds)
        exported = None
        if validated.new_credentials:
            export_credentials(validated, credentials_out)
            exported = credentials_out
        reloaded = sync_broker_accounts(settings, conn, city)
    return OnboardResult(written, len(validated.new_credentials), exported, reloaded)


def sync_broker_accounts(settings: Settings, conn: psycopg.Connection[Any], city: str) -> bool:
    """Rewrite the local Mosquitto's accounts of ``city`` from the store; reload (SIGHUP)."""
    broker = Mosquitto(
        settings.stack_dir,
        settings.mqtt_host,
        settings.mqtt_port,
        settings.mqtt_username,
        settings.mqtt_password.get_secret_value(),
    )
    accounts = [
        DeviceAccount(c.city, c.device_id, c.family, c.password_hash)
        for c in load_credentials(conn, city)
    ]
    broker.auth.write_fragment(f"{DEVICES_FRAGMENT}-{city}", *device_fragments(accounts))
    broker.auth.render(owner="mosquitto" if _root() else None)
    return broker.reload()


def _root() -> bool:
    import os

    return os.geteuid() == 0


def placer_from_files(grid_file: Path | None, asset_files: Sequence[Path]) -> Placer | None:
    """A placer over a unit-grid layer and asset layers (pipes with ``network``, or assets
    with ``asset_class`` or ``kind``); None without a grid. Raises ``GeoError``."""
    if grid_file is None:
        return None
    import geopandas as gpd

    from geo.grid import GridIndex
    from geo.layers import GRID, PIPES, POINT_ASSETS, read_layer
    from geo.placement import AssetIndex, combine_assets, pipes_to_assets

    grid_index = GridIndex.build(read_layer(grid_file, GRID))
    layers = []
    for path in asset_files:
        columns = gpd.read_file(path, rows=1, engine="pyogrio").columns
        if "network" in columns:
            layers.append(pipes_to_assets(read_layer(path, PIPES)))
        else:
            layer = read_layer(path, POINT_ASSETS)
            if "asset_class" not in layer.columns:
                layer["asset_class"] = layer["kind"]
            layers.append(layer)
    assets = AssetIndex.build(combine_assets(*layers)) if layers else None
    return Placer(grid_index, assets)
