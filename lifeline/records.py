"""Wire records: one named, versioned, validated type per message.

Every record is frozen, carries its schema version in ``v``, and round-trips through
JSON: ``Record.from_json(r.to_json()) == r``. Timestamps are aware and normalised to
UTC. Parsing failures raise :class:`lifeline.errors.RecordError` only.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from lifeline.codes import CAMERA_PATTERN, CITY_PATTERN, GRID_PATTERN
from lifeline.errors import RecordError
from lifeline.vocabulary import IncidentType, Severity, VideoEventType


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
CityCode = Annotated[str, Field(pattern=CITY_PATTERN, description="GB/T 2260 city code")]
DeviceId = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="device id")
]
CameraId = Annotated[
    str, Field(pattern=CAMERA_PATTERN, description="GB/T 28181 20-digit device id")
]
GridCode = Annotated[str, Field(pattern=GRID_PATTERN, description="15-digit unit-grid code")]
MetricName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Crs = Literal["EPSG:4326", "EPSG:4490", "GCJ-02", "BD-09"]
QualityFlag = Literal["pass", "suspect", "fail", "not_evaluated"]


class Record(BaseModel):
    """Base of wire records: frozen, strict about unknown fields, JSON on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    schema_name: ClassVar[str]

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise RecordError(describe_validation_error(cls.__name__, exc)) from exc

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RecordError(describe_validation_error(cls.__name__, exc)) from exc


def describe_validation_error(name: str, exc: ValidationError) -> str:
    """One line per problem: ``field: what is wrong``."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(payload)"
        parts.append(f"{loc}: {err['msg']}")
    return f"invalid {name}: " + "; ".join(parts)


class Reading(Record):
    """One value of one metric from one device at one instant."""

    schema_name: ClassVar[str] = "cityops.reading"
    v: Literal[1] = 1
    city: CityCode
    device_id: DeviceId
    ts: UtcDatetime
    metric: MetricName
    value: float
    unit: str = Field(min_length=1, max_length=16)
    quality: tuple[QualityFlag, ...] = ()

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("value must be a finite number")
        return value


class ReadingBatch(Record):
    """Readings of one ``cityops.readings`` partition in one record (see
    :mod:`lifeline.codec`, which encodes and decodes both versions)."""

    schema_name: ClassVar[str] = "cityops.reading_batch"
    v: Literal[2] = 2
    readings: tuple[Reading, ...] = Field(min_length=1, max_length=500)


class VideoEvent(Record):
    """An event from a video-analytics point (GB/T 28181 camera)."""

    schema_name: ClassVar[str] = "cityops.video_event"
    v: Literal[1] = 1
    city: CityCode
    camera_id: CameraId
    event_type: VideoEventType
    ts: UtcDatetime
    confidence: float = Field(ge=0.0, le=1.0)
    lon: float = Field(ge=-180.0, le=180.0)
    lat: float = Field(ge=-90.0, le=90.0)
    crs: Crs = "EPSG:4326"
    priority: int = Field(ge=1, le=4, description="GB/T 28181 AlarmPriority, 1 highest")
    snapshot_url: str | None = Field(None, max_length=2048)
    clip_url: str | None = Field(None, max_length=2048)
    description: str | None = Field(None, max_length=1000)
    #: the video platform's own event code (iSecure Center ``eventType``, ISAPI
    #: ``eventType``), kept for events the city's code table does not map
    code: str | None = Field(None, max_length=64)
    #: where the event's pictures are (URLs, or a picture carried in the push, by digest)
    pictures: tuple[str, ...] = Field((), max_length=8)


class Evidence(Record):
    """A value that made a detector fire."""

    schema_name: ClassVar[str] = "cityops.evidence"
    device_id: str
    metric: str
    value: float
    unit: str
    ts: UtcDatetime


class Anomaly(Record):
    """What a detector found: what, where, when, which detector, how bad, and why."""

    schema_name: ClassVar[str] = "cityops.anomaly"
    v: Literal[1] = 1
    anomaly_id: str = Field(min_length=1, max_length=128)
    city: CityCode
    kind: str = Field(min_length=1, max_length=64, description="e.g. ch4_level, offline")
    state: Literal["raised", "updated", "cleared"] = "raised"
    device_id: str | None = None
    camera_id: CameraId | None = None
    asset_id: str | None = None
    grid_cell: GridCode | None = None
    lon: float | None = Field(None, ge=-180.0, le=180.0)
    lat: float | None = Field(None, ge=-90.0, le=90.0)
    ts: UtcDatetime
    detector: str = Field(min_length=1, max_length=64)
    severity: Severity
    score: float = Field(1.0, ge=0.0, le=1.0)
    evidence: tuple[Evidence, ...] = ()
    message: str = ""
    #: a camera's event: where its pictures are
    pictures: tuple[str, ...] = Field((), max_length=8)


class Incident(Record):
    """A confirmed situation built from correlated anomalies; updated, never repeated."""

    schema_name: ClassVar[str] = "cityops.incident"
    v: Literal[1] = 1
    incident_id: str = Field(min_length=1, max_length=128)
    revision: int = Field(1, ge=1, description="grows with every update of the incident")
    city: CityCode
    type: IncidentType
    severity: Severity
    status: Literal["open", "cleared"] = "open"
    title: str = ""
    anomaly_ids: tuple[str, ...] = ()
    asset_ids: tuple[str, ...] = ()
    grid_cells: tuple[GridCode, ...] = ()
    lon: float | None = Field(None, ge=-180.0, le=180.0)
    lat: float | None = Field(None, ge=-90.0, le=90.0)
    started_at: UtcDatetime
    updated_at: UtcDatetime
    cleared_at: UtcDatetime | None = None


class DeviceStatus(Record):
    """A heartbeat, an online/offline change or a last-will message of a device."""

    schema_name: ClassVar[str] = "cityops.device_status"
    v: Literal[1] = 1
    city: CityCode
    device_id: str = Field(min_length=1, max_length=64)
    family: Literal["sensors", "cameras"]
    status: Literal["online", "offline", "heartbeat"]
    ts: UtcDatetime
    battery_pct: float | None = Field(None, ge=0, le=100)
    rssi_dbm: float | None = Field(None, ge=-200, le=0)


WIRE_RECORDS: tuple[type[Record], ...] = (
    Reading,
    ReadingBatch,
    VideoEvent,
    Anomaly,
    Incident,
    DeviceStatus,
)


def export_schemas(folder: Path) -> list[Path]:
    """Write ``<schema_name>.v<version>.schema.json`` for each wire record."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for rec in WIRE_RECORDS:
        schema = rec.model_json_schema(mode="serialization")
        version = rec.model_fields["v"].default if "v" in rec.model_fields else 1
        schema["$id"] = f"urn:cityops:schema:{rec.schema_name}:v{version}"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        path = folder / f"{rec.schema_name}.v{version}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written
