"""``cityops onboard``: validate, place, issue MQTT accounts on the live broker, store."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from tqdm import tqdm

from cityops.errors import CityOpsError
from cityops.settings import Settings
from geo.placement import Placer
from ingest.adapters import load_vendors
from ingest.broker_accounts import (
    BrokerAccountError,
    BrokerAdmin,
    DeviceAccount,
    device_username,
)
from ingest.onboarding import Plan, export_credentials, hashed, plan
from store.devices import existing_ids, upsert_devices
from store.errors import Conflict
from store.migrate import migrate
from store.push_sources import source_names


@dataclass(frozen=True)
class OnboardResult:
    devices: int
    new_credentials: int
    credentials_file: Path | None
    broker_accounts: int
    tls_bundle: Path | None = None


def onboard(
    settings: Settings,
    path: Path,
    city: str,
    *,
    crs: str,
    placer: Placer | None,
    credentials_out: Path,
    rotate: bool,
    client_certs: bool = False,
    show_progress: bool = True,
) -> OnboardResult:
    dsn = settings.db_dsn.get_secret_value()
    with psycopg.connect(dsn, autocommit=True) as conn, broker_admin(settings) as broker:
        migrate(conn, settings.timescale)
        existing = existing_ids(conn, city)
        with tqdm(desc="validate", unit="row", disable=not show_progress) as bar:
            validated: Plan = plan(
                path,
                city,
                crs=crs,
                vendors=set(load_vendors()),
                placer=placer,
                existing=existing,
                sources=source_names(conn, city),
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
        for d in validated.devices:
            if d.transport == "http":
                creds[d.device_id] = (device_username(city, d.device_id), "")
        family = {d.device_id: d.family for d in validated.devices}
        accounts = [
            (DeviceAccount(city, dev_id, family[dev_id]), password)
            for dev_id, (_user, password) in validated.new_credentials.items()
        ]
        with tqdm(
            total=len(accounts), desc="broker accounts", unit="device", disable=not show_progress
        ) as bar:
            try:
                broker.put_devices(accounts, progress=bar.update)
            except BrokerAccountError as exc:
                raise CityOpsError(
                    f"the MQTT broker did not take the device accounts: {exc}; no device "
                    "was stored, onboard the file again"
                ) from exc
        # A device that now reports through a push source loses its MQTT account.
        moved = [
            DeviceAccount(city, d.device_id, d.family)
            for d in validated.devices
            if d.transport == "http" and d.device_id in existing
        ]
        try:
            broker.delete_devices(moved)
        except BrokerAccountError as exc:
            raise CityOpsError(
                f"the MQTT broker did not remove the accounts of devices moved to push: "
                f"{exc}; onboard the file again"
            ) from exc
        # The passwords are on the broker now: write them out before storing the
        # devices, so a crash in between leaves usable credentials (and onboarding
        # again issues fresh ones to the devices not stored).
        exported = bundle = None
        if validated.new_credentials:
            export_credentials(validated, credentials_out)
            exported = credentials_out
            bundle = write_tls_bundle(
                settings,
                credentials_out,
                [a.username for a, _pw in accounts] if client_certs else [],
                show_progress,
            )
        try:
            written = upsert_devices(conn, validated.devices, creds)
        except Conflict as exc:
            raise CityOpsError(f"{exc}; fix the file and onboard it again") from exc
    return OnboardResult(written, len(validated.new_credentials), exported, len(accounts), bundle)


def write_tls_bundle(
    settings: Settings, credentials_out: Path, usernames: Sequence[str], show_progress: bool
) -> Path | None:
    """Beside the credentials CSV, a folder with the broker's CA certificate (devices
    verify the broker with it) and, for ``usernames``, client certificates and keys."""
    import shutil

    from ingest.pki import Authority, issue_client_cert

    ca_cert = settings.tls_dir / "ca.crt"
    if not ca_cert.exists():
        if usernames:
            raise CityOpsError(
                f"no CA certificate in {settings.tls_dir}: start the stack once "
                "(`cityops stack up`) or set CITYOPS_MQTT_TLS_DIR, then onboard again"
            )
        return None
    bundle = credentials_out.with_name(f"{credentials_out.stem}-tls")
    bundle.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(ca_cert, bundle / "ca.crt")
    if usernames:
        authority = Authority(ca_cert, settings.tls_dir / "ca.key")
        if not authority.key_file.exists():
            raise CityOpsError(
                f"client certificates need the CA key {authority.key_file}; it is not there"
            )
        for username in tqdm(usernames, desc="certificates", disable=not show_progress):
            cert, key = issue_client_cert(authority, username)
            (bundle / f"{username}.crt").write_bytes(cert)
            fd = os.open(bundle / f"{username}.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
    return bundle


def broker_admin(settings: Settings) -> BrokerAdmin:
    """The broker's admin connection (dynamic security); raises ``CityOpsError`` with what
    to do when it cannot be opened."""
    try:
        admin = settings.mqtt_admin()
    except ValueError as exc:
        raise CityOpsError(str(exc)) from exc
    return _Admin(settings.mqtt_host, settings.mqtt_port, *admin)


class _Admin(BrokerAdmin):
    def open(self) -> None:
        try:
            super().open()
        except BrokerAccountError as exc:
            raise CityOpsError(f"{exc}; nothing was changed") from exc


def put_device_accounts(settings: Settings, accounts: Sequence[tuple[DeviceAccount, str]]) -> int:
    """Create or update device accounts on the live broker; return how many were new."""
    with broker_admin(settings) as broker:
        return broker.put_devices(accounts)


def delete_device_accounts(settings: Settings, accounts: Sequence[DeviceAccount]) -> None:
    """Remove device accounts from the live broker (connected devices are cut off)."""
    with broker_admin(settings) as broker:
        broker.delete_devices(accounts)


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
