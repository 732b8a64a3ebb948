"""What the cockpit API takes and answers, as the OpenAPI document describes it.

Handlers build their JSON directly (orjson, cached bodies); these models are the contract
that document publishes, and the API tests check every answer against it. Every answer
model forbids fields it does not declare, so the document lists everything a client gets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lifeline.vocabulary import IncidentType, Severity

#: An alert's lifecycle status.
AlertStatus = Literal[
    "new", "acknowledged", "dispatched", "on_site", "resolved", "closed", "false_alarm"
]
Lifeline = Literal["gas", "water", "drainage", "bridge", "heating", "tunnel", "public_safety"]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- bodies -------------------------------------------------------------------------------


class ActionBody(BaseModel):
    note: str = Field("", max_length=2000, description="why; recorded in the audit trail")
    department: str | None = Field(
        None, max_length=200, description="the department to assign to (assign only)"
    )


class WebhookBody(BaseModel):
    url: str = Field(
        max_length=2000,
        description="http(s) URL of the endpoint; its host must be allowed "
        "(CITYOPS_WEBHOOK_ALLOW), and never this machine unless allowed",
    )
    name: str = Field("", max_length=200)


# --- ops and who --------------------------------------------------------------------------


class Health(Answer):
    status: Literal["ok"]


class Readiness(Answer):
    status: Literal["ready", "not ready"]
    checks: dict[Literal["database", "kafka"], bool]


class Me(Answer):
    key_id: str
    name: str
    role: Literal["viewer", "dispatcher", "city_admin", "platform_admin"]
    cities: list[str] | Literal["*"] = Field(description='the key\'s cities; "*" for every city')


class Cities(Answer):
    cities: list[str]


# --- overview -----------------------------------------------------------------------------


class DeviceCounts(Answer):
    total: int
    online: int
    offline: int
    unreported: int = Field(
        0, description="cameras that report events only: their liveness is not known"
    )


class OpenIncidents(Answer):
    total: int
    by_severity: dict[Severity, int]
    by_type: dict[IncidentType, int]


class LifelineStatus(Answer):
    devices: int
    online: int
    open_incidents: int
    worst_severity: Severity | None
    status: Literal["normal", "warning", "alarm"]


class Overview(Answer):
    city: str
    at: datetime
    devices: DeviceCounts
    open_incidents: OpenIncidents
    mean_time_to_acknowledge_s: float | None = Field(description="over the last 30 days")
    mean_time_to_resolve_s: float | None = Field(description="over the last 30 days")
    acknowledged_30d: int
    resolved_30d: int
    lifelines: dict[str, LifelineStatus] = Field(
        description="each lifeline (and `devices` for kinds of none)"
    )


# --- alerts -------------------------------------------------------------------------------


class Alert(Answer):
    incident_id: str
    revision: int
    city: str
    type: IncidentType
    severity: Severity
    severity_level: Literal["I", "II", "III", "IV"] = Field(description="GB/T 35965 level")
    incident_status: Literal["open", "cleared"]
    title: str = Field(description="in the answer's language")
    description: str = Field(description="in the answer's language")
    language: Literal["zh", "en"]
    anomaly_ids: list[str]
    asset_ids: list[str]
    grid_cells: list[str]
    lon: float | None
    lat: float | None
    started_at: datetime
    updated_at: datetime
    cleared_at: datetime | None
    alert_status: AlertStatus
    assigned_dept: str | None
    escalation_level: int
    created_at: datetime
    alert_updated_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    changes: int = Field(description="entries in the audit trail")
    actions: list[str] = Field(description="the lifecycle steps the alert's status allows")


class AlertPage(Answer):
    items: list[Alert]
    total: int
    limit: int
    offset: int


class AuditEntry(Answer):
    from_status: str | None
    to_status: str
    actor: str
    note: str
    at: datetime


class Anomaly(Answer):
    anomaly_id: str
    kind: str
    state: str
    device_id: str | None
    camera_id: str | None
    asset_id: str | None
    grid_cell: str | None
    lon: float | None
    lat: float | None
    ts: datetime
    detector: str
    severity: Severity
    score: float
    evidence: list[dict[str, Any]]
    message: str
    #: a camera's event: where its pictures are (URLs, or a pushed picture by digest)
    pictures: list[str] = []


class CameraEvents(Answer):
    device_id: str
    items: list[Anomaly]


class Level(Answer):
    threshold: float
    severity: Severity
    direction: str


class SeriesPoint(Answer):
    t: datetime = Field(description="the bucket's start")
    min: float | None
    max: float | None
    avg: float | None
    last: float | None
    count: int


class Evidence(Answer):
    device_id: str
    metric: str
    unit: str | None
    kind: str | None
    levels: list[Level] = Field(description="the default rules' fixed levels, for bands")
    bucket_s: float
    points: list[SeriesPoint]


class Feature(Answer):
    type: Literal["Feature"]
    geometry: dict[str, Any] | None
    properties: dict[str, Any]


class FeatureCollection(Answer):
    type: Literal["FeatureCollection"]
    features: list[Feature]


class Impact(FeatureCollection):
    properties: dict[str, Any] = Field(
        description="radius_m, poi_count, cell_count, segments, valves_to_close, isolation_closed"
    )


class AlertDetail(Alert):
    audit: list[AuditEntry]
    anomalies: list[Anomaly]
    evidence: list[Evidence] = Field(description="the readings around the alert, per metric")
    impact: Impact | None = Field(
        description="zone, isolated segments, valves to close, affected POIs and grid cells"
    )


# --- the sensor-kind catalogue ------------------------------------------------------------


class Label(Answer):
    zh: str
    en: str


class History(Answer):
    detector: str
    readings: int = Field(description="readings of the series before it may alarm")
    seconds: float | None = Field(
        description="time it also needs (a day for a daily profile's drifts), if any"
    )
    note: str


class MetricInfo(Answer):
    metric: str
    unit: str
    low: float = Field(description="the lowest value the quantity can take at all")
    high: float = Field(description="the highest value the quantity can take at all")
    label: Label
    levels: list[Level] = Field(description="the default rules' fixed levels")
    adaptive: bool = Field(description="watched by the adaptive baseline")
    history: list[History] = Field(
        description="how much history each default detector needs before it may alarm"
    )


class KindInfo(Answer):
    kind: str
    label: Label
    lifeline: str
    assets: list[str] = Field(description="CIM asset classes a device is placed on")
    metrics: list[MetricInfo]
    sources: str = Field(description="the standards and practice the default rules follow")
    joint: bool = Field(
        description="its metrics are also judged together, by one joint model per device"
    )


class Catalogue(Answer):
    kinds: list[KindInfo]


# --- devices ------------------------------------------------------------------------------


class Device(Answer):
    device_id: str
    family: Literal["sensors", "cameras"]
    kind: str
    lifeline: str
    metrics: dict[str, str] = Field(description="metric → unit")
    transport: str
    #: the push source of a pushed device, the id its platform knows it by, its IMEI
    source: str | None = None
    platform_id: str | None = None
    imei: str | None = None
    asset_id: str | None
    owner_dept: str
    lon: float
    lat: float
    grid_code: str | None
    online: bool | None = Field(
        description="seen within the online window; null for a camera that reports events "
        "only (no heartbeat or status ever)"
    )
    last_status: Literal["online", "offline", "heartbeat"] | None
    status_ts: datetime | None
    battery_pct: float | None
    last_reading: datetime | None


class DevicePage(Answer):
    items: list[Device]
    #: how many devices the filter holds in all pages
    total: int
    limit: int
    offset: int


class Series(Answer):
    device_id: str
    metric: str
    kind: str | None
    unit: str | None
    levels: list[Level]
    start: datetime
    end: datetime
    bucket_s: float
    points: list[SeriesPoint]


# --- feed and webhooks --------------------------------------------------------------------


class Ticket(Answer):
    ticket: str
    expires_in_s: int


class Webhook(Answer):
    webhook_id: int
    city: str
    url: str
    name: str
    active: bool
    created_at: datetime


class NewWebhook(Webhook):
    secret: str = Field(description="signs each push (X-CityOps-Signature); shown only here")


class Webhooks(Answer):
    items: list[Webhook]


class Delivery(Answer):
    delivery_id: int
    webhook_id: int
    city: str
    alert_id: str
    feed_id: int
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None
    last_error: str
    created_at: datetime
    delivered_at: datetime | None
    next_attempt_at: datetime


class Deliveries(Answer):
    items: list[Delivery]
