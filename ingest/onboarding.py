"""Onboarding of a pilot city's devices and cameras from GeoJSON or CSV.

A file is validated whole before anything is stored: every problem is reported with
its row and field, and a file with any problem imports nothing. Valid files are
placed on the grid and asset map (when those layers are given), stored, and each new
device gets MQTT credentials allowing it to publish only to its own topics.
"""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geo.chinese import in_china, to_wgs84
from geo.placement import Placer
from ingest.broker_accounts import device_username, password_hash
from lifeline.codes import is_city_code
from lifeline.devices import IMEI_PATTERN, PLATFORM_ID_PATTERN, Device, luhn_valid
from lifeline.kinds import KIND_ASSET_CLASSES, KIND_METRICS, KIND_NAMES, METRIC_UNITS, OPEN_KINDS
from lifeline.units import UnitError, converter

CAMERA = "camera"
INPUT_CRS = ("EPSG:4326", "EPSG:4490", "GCJ-02", "BD-09")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_METRIC = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_PLATFORM_ID = re.compile(PLATFORM_ID_PATTERN)
_IMEI = re.compile(IMEI_PATTERN)
#: GB/T 28181: centre 8 + industry 2 + type 3 + network 1 + serial 6.
_GB28181 = re.compile(r"^[0-9]{8}(08|43|[0-9]{2})(13[1-2]|118|[0-9]{3})[0-9]{7}$")


class OnboardingError(Exception):
    """The file cannot be imported; ``problems`` lists each bad row and field."""

    def __init__(self, problems: list[str]) -> None:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s); nothing was imported:\n  {shown}{more}")
        self.problems = problems


@dataclass
class Row:
    number: int
    props: dict[str, Any]
    lon: Any
    lat: Any


@dataclass
class Plan:
    """A validated file, ready to store."""

    city: str
    devices: list[Device]
    #: device id → (username, password) for devices getting new credentials.
    new_credentials: dict[str, tuple[str, str]] = field(default_factory=dict)


def read_rows(path: Path) -> Iterator[Row]:
    """Rows of a GeoJSON FeatureCollection (Point features) or a CSV with lon/lat."""
    suffix = path.suffix.lower()
    if suffix in {".geojson", ".json"}:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OnboardingError([f"{path}: not readable GeoJSON ({exc})"]) from exc
        if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
            raise OnboardingError([f"{path}: not a GeoJSON FeatureCollection"])
        for i, feat in enumerate(data.get("features") or [], start=1):
            geom = (feat or {}).get("geometry") or {}
            coords = geom.get("coordinates") if geom.get("type") == "Point" else None
            lon, lat = (
                (coords[0], coords[1])
                if isinstance(coords, list) and len(coords) >= 2
                else (None, None)
            )
            yield Row(i, dict((feat or {}).get("properties") or {}), lon, lat)
    elif suffix == ".csv":
        try:
            with path.open(newline="", encoding="utf-8-sig") as fh:
                for i, rec in enumerate(csv.DictReader(fh), start=1):
                    props = {
                        k.strip(): (v.strip() if isinstance(v, str) else v)
                        for k, v in rec.items()
                        if k
                    }
                    yield Row(i, props, props.pop("lon", None), props.pop("lat", None))
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            raise OnboardingError([f"{path}: not readable CSV ({exc})"]) from exc
    else:
        raise OnboardingError([f"{path}: use a .geojson or .csv file"])


def parse_metrics(text: Any, kind: str) -> dict[str, str]:
    """``"ch4:%LEL;temperature:°C"`` (or a JSON object) → metric → canonical unit.

    Empty means the kind's standard metrics. Metrics of the catalogue get
    their canonical unit (the given one must convert to it); other metrics keep the
    unit given, which they must name.
    """
    if text in (None, ""):
        if kind in OPEN_KINDS:
            raise ValueError(f"{kind} devices must list their metrics as name:unit;...")
        return {m: METRIC_UNITS[m] for m in KIND_METRICS[kind]}
    pairs: dict[str, str] = {}
    if isinstance(text, dict):
        items = [(str(k), str(v)) for k, v in text.items()]
    else:
        items = []
        for part in str(text).replace(",", ";").split(";"):
            name, _, unit = part.strip().partition(":")
            items.append((name.strip(), unit.strip()))
    for name, unit in items:
        if not _METRIC.match(name):
            raise ValueError(f"metric name {name!r} is not a lower-case identifier")
        canonical = METRIC_UNITS.get(name)
        if canonical is None:
            if not unit:
                raise ValueError(f"metric {name!r} needs a unit")
            pairs[name] = unit
            continue
        if unit:
            try:
                converter(name, unit)
            except UnitError as exc:
                raise ValueError(str(exc)) from exc
        pairs[name] = canonical
    return pairs


def plan(
    path: Path,
    city: str,
    *,
    crs: str = "EPSG:4326",
    vendors: set[str] | None = None,
    placer: Placer | None = None,
    existing: set[str] | None = None,
    sources: set[str] | None = None,
    rotate: bool = False,
    progress: Callable[[int], object] | None = None,
    max_asset_distance_m: float = 50.0,
) -> Plan:
    """Validate a whole file; raise :class:`OnboardingError` listing every problem.
    ``sources``: the city's push sources, which ``http`` devices must name."""
    if not is_city_code(city):
        raise OnboardingError([f"city {city!r} is not a 6-digit GB/T 2260 code"])
    if crs not in INPUT_CRS:
        raise OnboardingError([f"coordinates must be declared as one of {', '.join(INPUT_CRS)}"])
    problems: list[str] = []
    good: list[tuple[Row, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    seen_imei: dict[str, int] = {}
    seen_platform: dict[tuple[str | None, str], int] = {}
    kinds = KIND_NAMES | {CAMERA}
    for row in read_rows(path):
        errs: list[str] = []
        p = row.props
        dev_id = str(p.get("device_id") or "").strip()
        label = f"row {row.number}" + (f" ({dev_id})" if dev_id else "")
        kind = str(p.get("kind") or "").strip()
        if not dev_id:
            errs.append("device_id: missing")
        elif not _ID.match(dev_id):
            errs.append("device_id: use 1-64 letters, digits, '.', '_' or '-'")
        elif dev_id in seen:
            errs.append(f"device_id: duplicate of row {seen[dev_id]}")
        if kind not in kinds:
            errs.append(f"kind: {kind or 'missing'!r} is not one of {', '.join(sorted(kinds))}")
        if kind == CAMERA and dev_id and not _GB28181.match(dev_id):
            errs.append("device_id: a camera needs a 20-digit GB/T 28181 id")
        elif kind == CAMERA and dev_id and dev_id[:4] != city[:4]:
            errs.append(f"device_id: camera centre code {dev_id[:8]} is not in city {city}")
        metrics: dict[str, str] = {}
        if kind in kinds and kind != CAMERA:
            try:
                metrics = parse_metrics(p.get("metrics"), kind)
            except ValueError as exc:
                errs.append(f"metrics: {exc}")
        owner = str(p.get("owner_dept") or "").strip()
        if not owner:
            errs.append("owner_dept: missing")
        vendor = str(p.get("vendor") or "").strip() or None
        if vendor is not None and vendors is not None and vendor not in vendors:
            errs.append(
                f"vendor: no mapping named {vendor!r} (known: {', '.join(sorted(vendors))})"
            )
        transport = str(p.get("transport") or "mqtt").strip().lower()
        source = str(p.get("source") or "").strip() or None
        if transport not in {"mqtt", "http"}:
            errs.append(f"transport: {transport!r} is not mqtt or http")
        elif transport == "http" and source is None:
            errs.append("source: an http device names the push source that reports it")
        elif transport == "http" and sources is not None and source not in sources:
            errs.append(
                f"source: city {city} has no push source {source!r}; create it with "
                f"`cityops push source create --city {city} {source}`"
            )
        elif transport == "mqtt" and source is not None:
            errs.append("source: only http devices have a push source")
        platform_id = str(p.get("platform_id") or "").strip() or None
        index_code = str(p.get("index_code") or "").strip() or None
        if index_code is not None:
            if kind != CAMERA:
                errs.append("index_code: only cameras have a video platform's index code")
            elif platform_id is not None and platform_id != index_code:
                errs.append("index_code: differs from platform_id; give one of them")
            platform_id = index_code
        if transport == "http" and kind == CAMERA and platform_id is None:
            errs.append(
                "index_code: a camera pushed by a video platform needs the id the platform "
                "names it by (iSecure Center: its index code; ISAPI: its MAC address, or "
                "MAC/channel behind an NVR) in index_code or platform_id"
            )
        if platform_id is not None:
            if transport != "http":
                errs.append("platform_id: only devices pushed by a platform (transport http)")
            elif not _PLATFORM_ID.match(platform_id):
                errs.append("platform_id: use 1-64 letters, digits, '.', '_', ':', '/' or '-'")
            elif (source, platform_id) in seen_platform:
                errs.append(
                    f"platform_id: {platform_id} of source {source} is also on row "
                    f"{seen_platform[(source, platform_id)]}"
                )
        imei = str(p.get("imei") or "").strip() or None
        if imei is not None:
            if kind == CAMERA:
                errs.append("imei: cameras have none")
            elif not _IMEI.match(imei) or not luhn_valid(imei):
                errs.append(f"imei: {imei!r} is not a 15-digit IMEI (its last digit checks it)")
            elif imei in seen_imei:
                errs.append(f"imei: {imei} is also on row {seen_imei[imei]}")
        row_crs = str(p.get("crs") or crs)
        if row_crs not in INPUT_CRS:
            errs.append(f"crs: {row_crs!r} is not one of {', '.join(INPUT_CRS)}")
        try:
            lon, lat = float(row.lon), float(row.lat)
            if not (np.isfinite(lon) and np.isfinite(lat) and bool(in_china(lon, lat))):
                errs.append(f"lon/lat: ({lon}, {lat}) is not a position in China")
        except (TypeError, ValueError):
            errs.append("lon/lat: missing or not numbers")
            lon = lat = float("nan")
        if errs:
            problems.extend(f"{label}: {e}" for e in errs)
        else:
            seen[dev_id] = row.number
            if imei:
                seen_imei[imei] = row.number
            if platform_id:
                seen_platform[(source, platform_id)] = row.number
            good.append(
                (
                    row,
                    {
                        "device_id": dev_id,
                        "kind": kind,
                        "metrics": metrics,
                        "owner_dept": owner,
                        "vendor": vendor,
                        "lon": lon,
                        "lat": lat,
                        "crs": row_crs,
                        "asset_id": str(p.get("asset_id") or "") or None,
                        "transport": transport,
                        "source": source,
                        "platform_id": platform_id,
                        "imei": imei,
                    },
                )
            )
        if progress:
            progress(1)
    if problems:
        raise OnboardingError(problems)
    if not good:
        raise OnboardingError([f"{path}: no devices in the file"])
    lon_a = np.array([g["lon"] for _, g in good])
    lat_a = np.array([g["lat"] for _, g in good])
    for declared in {g["crs"] for _, g in good} - {"EPSG:4326", "EPSG:4490"}:
        mask = np.array([g["crs"] == declared for _, g in good])
        lon_a[mask], lat_a[mask] = to_wgs84(lon_a[mask], lat_a[mask], declared)
    grid_codes: list[str | None] = [None] * len(good)
    assets: list[str | None] = [g["asset_id"] for _, g in good]
    if placer is not None:
        placed = placer.place(lon_a, lat_a)
        grid_codes = [c or None for c in placed["grid_code"]]
        for kind in {g["kind"] for _, g in good} - {CAMERA}:
            classes = KIND_ASSET_CLASSES[kind]
            idx = [i for i, (_, g) in enumerate(good) if g["kind"] == kind and not assets[i]]
            if classes and idx and placer.assets is not None:
                ids, _ = placer.assets.nearest(
                    lon_a[idx], lat_a[idx], classes, max_asset_distance_m
                )
                for i, asset in zip(idx, ids, strict=True):
                    assets[i] = asset
    devices = [
        Device(
            city=city,
            device_id=g["device_id"],
            family="cameras" if g["kind"] == CAMERA else "sensors",
            kind=g["kind"],
            metrics=g["metrics"],
            vendor=g["vendor"],
            asset_id=assets[i],
            owner_dept=g["owner_dept"],
            lon=float(lon_a[i]),
            lat=float(lat_a[i]),
            grid_code=grid_codes[i],
            transport=g["transport"],
            source=g["source"],
            platform_id=g["platform_id"],
            imei=g["imei"],
        )
        for i, (_, g) in enumerate(good)
    ]
    result = Plan(city, devices)
    for d in devices:
        if d.transport == "http":
            continue  # pushed by its source: no MQTT account
        if rotate or existing is None or d.device_id not in existing:
            result.new_credentials[d.device_id] = (
                device_username(city, d.device_id),
                secrets.token_urlsafe(18),
            )
    return result


def hashed(
    plan: Plan, progress: Callable[[int], object] | None = None
) -> dict[str, tuple[str, str]]:
    """device id → (username, broker hash) of the plan's new credentials."""
    out = {}
    for dev_id, (user, password) in plan.new_credentials.items():
        out[dev_id] = (user, password_hash(password))
        if progress:
            progress(1)
    return out


def export_credentials(plan: Plan, path: Path) -> int:
    """Write the city's new credentials (CSV, mode 0600); return how many."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["city", "device_id", "mqtt_username", "mqtt_password", "publish_topic", "status_topic"]
        )
        for d in plan.devices:
            cred = plan.new_credentials.get(d.device_id)
            if cred is None:
                continue
            leaf = "up" if d.family == "sensors" else "event"
            base = f"cityops/{d.city}/{d.family}/{d.device_id}"
            writer.writerow(
                [d.city, d.device_id, cred[0], cred[1], f"{base}/{leaf}", f"{base}/status"]
            )
    return len(plan.new_credentials)
