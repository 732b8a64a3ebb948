"""Vendor payload adapters: each turns one parsed payload into raw samples.

Three shapes are understood:

* ``canonical`` — one ``Reading`` as JSON (the wire record itself);
* ``compact``   — several metrics and/or timestamps of one device in one message:
  ``{"ts": ..., "values": {"o2": 20.9, "h2s": 0.0}}`` or
  ``{"readings": [{"ts": ..., "values": {...}}, ...]}``, with optional ``"units"``;
* vendor mappings — declarative TOML files (``ingest/vendors/*.toml`` or a folder
  given at run time) naming where the timestamp, the device id and each metric's value
  and unit sit in a vendor's nested JSON. Adding a vendor is adding a file.

Adapters only extract; checking devices, metrics, units, ranges and times is the
decoder's job, so every shape is held to the same rules.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ingest.errors import PayloadError
from ingest.frames import Frame

VENDOR_DIR = Path(__file__).with_name("vendors")


@dataclass(frozen=True, slots=True)
class Sample:
    """One value as the device reported it, before unit conversion and checks."""

    ts: datetime
    metric: str
    value: float
    unit: str | None
    quality: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Extracted:
    samples: list[Sample]
    device_id: str | None = None
    city: str | None = None


# -- shared helpers -------------------------------------------------------------------


def parse_time(value: Any, fmt: str = "iso8601", tz: timezone = UTC) -> datetime:
    """A timestamp as an aware UTC datetime; ``PayloadError('bad_timestamp')`` otherwise."""
    try:
        ts = _parse_time(value, fmt, tz)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise PayloadError(
            "bad_timestamp", f"timestamp {str(value)[:40]!r} is not {fmt}: {exc}"
        ) from exc
    return ts.astimezone(UTC)


def _parse_time(value: Any, fmt: str, tz: timezone) -> datetime:
    if fmt == "iso8601":
        if not isinstance(value, str):
            raise TypeError("expected an ISO 8601 string")
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=tz)
    if fmt in {"epoch_s", "epoch_ms"}:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError("expected a number")
        seconds = float(value) / (1000 if fmt == "epoch_ms" else 1)
        if not math.isfinite(seconds):
            raise ValueError("not finite")
        return datetime.fromtimestamp(seconds, UTC)
    if not isinstance(value, str):
        raise TypeError("expected a string")
    # The format names the vendor's local time; its zone comes from the mapping.
    return datetime.strptime(value, fmt).replace(tzinfo=tz)


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError("bad_value", f"{where} must be a number, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out):
        raise PayloadError("bad_value", f"{where} must be a finite number")
    return out


def dig(payload: Any, path: str) -> Any:
    """The value at a dotted ``path`` (list indices allowed), or ``None``."""
    node = payload
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


# -- canonical and compact ----------------------------------------------------------------

_CANONICAL_KEYS = frozenset({"v", "city", "device_id", "ts", "metric", "value", "unit", "quality"})
_QUALITY = frozenset({"pass", "suspect", "fail", "not_evaluated"})


def canonical(payload: Any) -> Extracted:
    if not isinstance(payload, dict):
        raise PayloadError("bad_shape", "a canonical reading must be a JSON object")
    unknown = set(payload) - _CANONICAL_KEYS
    if unknown:
        raise PayloadError("bad_shape", f"unknown field(s) {', '.join(sorted(unknown))}")
    if payload.get("v", 1) != 1:
        raise PayloadError("bad_shape", f"reading version {payload.get('v')!r} is not supported")
    for key in ("city", "device_id", "metric", "unit"):
        if not isinstance(payload.get(key), str):
            raise PayloadError("bad_shape", f"field {key!r} is missing or not a string")
    quality = payload.get("quality", [])
    if not isinstance(quality, list) or not set(quality) <= _QUALITY:
        raise PayloadError("bad_shape", f"quality must be a list of {sorted(_QUALITY)}")
    sample = Sample(
        ts=parse_time(payload.get("ts")),
        metric=payload["metric"],
        value=number(payload.get("value"), "value"),
        unit=payload["unit"],
        quality=tuple(quality),
    )
    return Extracted([sample], device_id=payload["device_id"], city=payload["city"])


def compact(payload: Any) -> Extracted:
    if not isinstance(payload, dict):
        raise PayloadError("bad_shape", "a compact batch must be a JSON object")
    rows = payload.get("readings")
    if rows is None:
        rows = [payload]
    if not isinstance(rows, list) or not rows:
        raise PayloadError("bad_shape", "'readings' must be a non-empty list")
    units = payload.get("units", {})
    if not isinstance(units, dict):
        raise PayloadError("bad_shape", "'units' must map metric names to units")
    samples: list[Sample] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("values"), dict):
            raise PayloadError("bad_shape", f"readings[{i}] needs a 'values' object")
        ts = parse_time(row.get("ts"))
        for metric, given in row["values"].items():
            unit, raw = units.get(metric), given
            if isinstance(given, list) and len(given) == 2 and isinstance(given[1], str):
                raw, unit = given
            samples.append(Sample(ts, str(metric), number(raw, f"values.{metric}"), unit))
    if not samples:
        raise PayloadError("bad_shape", "the batch holds no values")
    device = payload.get("device_id")
    return Extracted(samples, device_id=device if isinstance(device, str) else None)


def auto(payload: Any) -> Extracted:
    """Canonical or compact, told apart by their fields."""
    if isinstance(payload, dict) and "metric" in payload:
        return canonical(payload)
    if isinstance(payload, dict) and ("values" in payload or "readings" in payload):
        return compact(payload)
    raise PayloadError(
        "bad_shape",
        "payload is neither a canonical reading (with 'metric') nor a compact batch "
        "(with 'values' or 'readings'); for a vendor format, set the device's vendor",
    )


# -- declarative vendor mappings ------------------------------------------------------------


@dataclass(frozen=True)
class MetricMap:
    metric: str
    value: str
    unit: str | None = None
    unit_path: str | None = None
    scale: float = 1.0


@dataclass(frozen=True)
class VendorMapping:
    """A vendor's payload shape, loaded from a TOML file."""

    name: str
    description: str
    timestamp: str
    timestamp_format: str = "iso8601"
    timezone: timezone = UTC
    records: str | None = None
    device_id: str | None = None
    metrics: tuple[MetricMap, ...] = field(default_factory=tuple)
    #: A binary frame in each record, unpacked into ``frame.<field>`` for the metrics.
    frame: Frame | None = None

    @classmethod
    def load(cls, path: Path) -> VendorMapping:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"vendor mapping {path}: {exc}") from exc
        try:
            metrics = tuple(
                MetricMap(
                    metric=name,
                    value=str(spec["value"]),
                    unit=spec.get("unit"),
                    unit_path=spec.get("unit_path"),
                    scale=float(spec.get("scale", 1.0)),
                )
                for name, spec in data["metrics"].items()
            )
            spec = data.get("frame")
            frame = (
                Frame(
                    path=str(spec["path"]),
                    encoding=str(spec.get("encoding", "base64")),
                    format=str(spec["format"]),
                    fields=tuple(str(f) for f in spec["fields"]),
                )
                if spec is not None
                else None
            )
            return cls(
                name=str(data["name"]),
                description=str(data.get("description", "")),
                timestamp=str(data["timestamp"]),
                timestamp_format=str(data.get("timestamp_format", "iso8601")),
                timezone=_tz(str(data.get("timezone", "+00:00"))),
                records=data.get("records"),
                device_id=data.get("device_id"),
                metrics=metrics,
                frame=frame,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"vendor mapping {path}: missing or bad entry {exc}") from exc

    def extract(self, payload: Any) -> Extracted:
        if not isinstance(payload, dict):
            raise PayloadError("bad_shape", f"{self.name} payloads are JSON objects")
        rows = dig(payload, self.records) if self.records else [payload]
        if not isinstance(rows, list) or not rows:
            raise PayloadError("bad_shape", f"{self.name}: {self.records!r} is not a list")
        samples: list[Sample] = []
        for record in rows:
            row = record
            if self.frame is not None:
                if not isinstance(record, dict):
                    raise PayloadError("bad_shape", f"{self.name}: a record is a JSON object")
                row = {**record, "frame": self.frame.unpack(dig(record, self.frame.path))}
            ts = parse_time(dig(row, self.timestamp), self.timestamp_format, self.timezone)
            for m in self.metrics:
                raw = dig(row, m.value)
                if raw is None:
                    continue
                unit = m.unit
                if m.unit_path is not None:
                    found = dig(row, m.unit_path)
                    unit = found if isinstance(found, str) else unit
                samples.append(Sample(ts, m.metric, number(raw, m.value) * m.scale, unit))
        if not samples:
            raise PayloadError("bad_shape", f"{self.name} payload carries none of its metrics")
        device = dig(payload, self.device_id) if self.device_id else None
        return Extracted(samples, device_id=str(device) if device is not None else None)


def _tz(text: str) -> timezone:
    sign = -1 if text.startswith("-") else 1
    hours, _, minutes = text.lstrip("+-").partition(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))


def load_vendors(*folders: Path) -> dict[str, VendorMapping]:
    """Every ``*.toml`` mapping in the built-in folder and in ``folders``."""
    out: dict[str, VendorMapping] = {}
    for folder in (VENDOR_DIR, *folders):
        for path in sorted(folder.glob("*.toml")):
            mapping = VendorMapping.load(path)
            out[mapping.name] = mapping
    return out
