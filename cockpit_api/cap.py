"""CAP 1.2 (OASIS Common Alerting Protocol) messages for alerts, and an Atom feed of them.

One message per state of an alert: the first is ``Alert``; later states are ``Update``
referencing the first; a false alarm is ``Cancel``. Identifiers carry the incident
revision and the number of lifecycle changes, so each state has its own identifier.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lifeline import wording
from lifeline.impact import zone_radius_m
from lifeline.vocabulary import IncidentType, Severity

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MIME = "application/cap+xml"

CAP_SEVERITY = {
    Severity.RED: "Extreme",
    Severity.ORANGE: "Severe",
    Severity.YELLOW: "Moderate",
    Severity.BLUE: "Minor",
}
CATEGORIES: dict[IncidentType, tuple[str, ...]] = {
    IncidentType.GAS_LEAK: ("Safety", "Infra"),
    IncidentType.GAS_PRESSURE: ("Infra",),
    IncidentType.PIPE_BURST: ("Infra",),
    IncidentType.WATER_LEAK: ("Infra",),
    IncidentType.LOW_PRESSURE: ("Infra",),
    IncidentType.WATERLOGGING: ("Met", "Infra"),
    IncidentType.UNDERPASS_FLOODING: ("Met", "Transport"),
    IncidentType.MANHOLE_COVER: ("Safety", "Infra"),
    IncidentType.BRIDGE_OVERLOAD: ("Infra", "Transport"),
    IncidentType.TUNNEL_HAZARD: ("Safety", "Infra"),
    IncidentType.HEATING_LEAK: ("Infra",),
    IncidentType.FIRE: ("Fire",),
    IncidentType.CROWD: ("Safety",),
    IncidentType.CITY_MANAGEMENT: ("Other",),
    IncidentType.SENSOR_FAULT: ("Infra",),
    IncidentType.DEVICE_OFFLINE: ("Infra",),
}


@dataclass(frozen=True)
class CapAlert:
    """What a CAP message is made from: the alert row joined with its incident."""

    city: str
    incident_id: str
    revision: int
    changes: int
    type: IncidentType
    severity: Severity
    incident_status: str
    alert_status: str
    title: str
    lon: float | None
    lat: float | None
    grid_cells: Sequence[str]
    asset_ids: Sequence[str]
    started_at: datetime
    created_at: datetime
    updated_at: datetime
    assigned_dept: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CapAlert:
        return cls(
            city=row["city"],
            incident_id=row["incident_id"],
            revision=int(row["revision"]),
            changes=int(row.get("changes") or 1),
            type=IncidentType(row["type"]),
            severity=Severity(row["severity"]),
            incident_status=row["incident_status"],
            alert_status=row["alert_status"],
            title=row.get("title") or "",
            lon=row.get("lon"),
            lat=row.get("lat"),
            grid_cells=tuple(row.get("grid_cells") or ()),
            asset_ids=tuple(row.get("asset_ids") or ()),
            started_at=row["started_at"],
            created_at=row["created_at"],
            updated_at=row["alert_updated_at"],
            assigned_dept=row.get("assigned_dept"),
        )


def cap_time(t: datetime) -> str:
    """CAP's dateTime: seconds, explicit offset, ``-00:00`` never ``Z``."""
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "-00:00")


def sender(city: str) -> str:
    return f"cityops-{city}@cityops.local"


def identifier(a: CapAlert, first: bool = False) -> str:
    if first:
        return f"urn:cityops:{a.city}:alert:{_safe(a.incident_id)}:r1.c1"
    return f"urn:cityops:{a.city}:alert:{_safe(a.incident_id)}:r{a.revision}.c{a.changes}"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.:" else "_" for c in text)


def msg_type(a: CapAlert) -> str:
    if a.alert_status == "false_alarm":
        return "Cancel"
    if a.revision == 1 and a.changes <= 1:
        return "Alert"
    return "Update"


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = text
    return el


def build(a: CapAlert, language: str = "zh-CN", web: str | None = None) -> ET.Element:
    """The CAP 1.2 ``alert`` element of the alert's current state."""
    root = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(root, "identifier", identifier(a))
    _sub(root, "sender", sender(a.city))
    _sub(root, "sent", cap_time(a.updated_at))
    _sub(root, "status", "Actual")
    kind = msg_type(a)
    _sub(root, "msgType", kind)
    _sub(root, "source", "CityOps lifeline monitoring")
    _sub(root, "scope", "Restricted")
    _sub(root, "restriction", f"Emergency dispatchers and asset owners of city {a.city}")
    if kind != "Alert":
        _sub(
            root,
            "references",
            f"{sender(a.city)},{identifier(a, first=True)},{cap_time(a.created_at)}",
        )
    _sub(root, "incidents", identifier(a, first=True))
    # One <info> in each language the platform speaks, the one asked for first.
    tags = ["zh-CN", "en-US"] if language.lower().startswith("zh") else ["en-US", "zh-CN"]
    for tag in tags:
        _info(root, a, tag, web)
    return root


def _info(root: ET.Element, a: CapAlert, tag: str, web: str | None) -> None:
    lang: wording.Lang = "zh" if tag.startswith("zh") else "en"
    info = _sub(root, "info")
    _sub(info, "language", tag)
    for cat in CATEGORIES[a.type]:
        _sub(info, "category", cat)
    _sub(info, "event", wording.event_name(a.type, lang))
    final = (
        a.alert_status in ("resolved", "closed", "false_alarm") or a.incident_status == "cleared"
    )
    _sub(info, "responseType", "AllClear" if final else "Execute")
    _sub(info, "urgency", "Past" if final else "Immediate")
    _sub(info, "severity", CAP_SEVERITY[a.severity])
    _sub(info, "certainty", "Observed")
    code = _sub(info, "eventCode")
    _sub(code, "valueName", "cityops:incident_type")
    _sub(code, "value", a.type.value)
    _sub(info, "effective", cap_time(a.created_at))
    _sub(info, "onset", cap_time(a.started_at))
    _sub(
        info,
        "senderName",
        f"{a.city} 城市运行管理中心" if lang == "zh" else f"CityOps operations centre {a.city}",
    )
    _sub(info, "headline", wording.title(a.type, a.incident_id, a.grid_cells, a.asset_ids, lang))
    _sub(
        info,
        "description",
        wording.description(
            a.type, a.severity, a.alert_status, a.incident_status, a.grid_cells, a.asset_ids, lang
        ),
    )
    instruction = wording.instruction(a.type, lang)
    if instruction and not final:
        _sub(info, "instruction", instruction)
    if web:
        _sub(info, "web", web)
    for name, value in (
        ("cityops:incident_id", a.incident_id),
        ("cityops:revision", str(a.revision)),
        ("cityops:alert_status", a.alert_status),
        ("cityops:severity_level", a.severity.roman),
        ("cityops:assigned_dept", a.assigned_dept or ""),
    ):
        p = _sub(info, "parameter")
        _sub(p, "valueName", name)
        _sub(p, "value", value)
    area = _sub(info, "area")
    if lang == "zh":
        desc = f"城市 {a.city}" + (f"，网格 {a.grid_cells[0]}" if a.grid_cells else "")
    else:
        desc = f"City {a.city}" + (f", grid {a.grid_cells[0]}" if a.grid_cells else "")
    _sub(area, "areaDesc", desc)
    if a.lon is not None and a.lat is not None:
        radius_km = zone_radius_m(a.type, a.severity) / 1000
        _sub(area, "circle", f"{a.lat:.6f},{a.lon:.6f} {radius_km:.3f}")
    gc = _sub(area, "geocode")
    _sub(gc, "valueName", "GB/T 2260")
    _sub(gc, "value", a.city)
    for cell in a.grid_cells:
        gc = _sub(area, "geocode")
        _sub(gc, "valueName", "cityops:grid_cell")
        _sub(gc, "value", cell)


def to_xml(a: CapAlert, language: str = "zh-CN", web: str | None = None) -> bytes:
    ET.register_namespace("", CAP_NS)
    return bytes(ET.tostring(build(a, language, web), encoding="utf-8", xml_declaration=True))


def atom_feed(
    city: str, alerts: Sequence[CapAlert], base_url: str, language: str = "zh-CN"
) -> bytes:
    """An Atom feed of a city's alerts, each entry carrying its CAP message inline."""
    ET.register_namespace("", ATOM_NS)
    ET.register_namespace("cap", CAP_NS)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    newest = max((a.updated_at for a in alerts), default=datetime.now(UTC))
    sub(feed, "id", f"urn:cityops:{city}:cap-feed")
    sub(feed, "title", f"CityOps CAP alerts, city {city}")
    sub(feed, "updated", newest.astimezone(UTC).isoformat())
    sub(feed, "link", rel="self", href=f"{base_url}/v1/cities/{city}/cap.atom")
    author = sub(feed, "author")
    sub(author, "name", f"CityOps operations centre {city}")
    for a in alerts:
        entry = sub(feed, "entry")
        sub(entry, "id", identifier(a))
        lang: wording.Lang = "zh" if language.lower().startswith("zh") else "en"
        sub(entry, "title", wording.title(a.type, a.incident_id, a.grid_cells, a.asset_ids, lang))
        sub(entry, "updated", a.updated_at.astimezone(UTC).isoformat())
        sub(
            entry,
            "link",
            rel="alternate",
            type=CAP_MIME,
            href=f"{base_url}/v1/alerts/{a.incident_id}/cap",
        )
        content = sub(entry, "content", type=CAP_MIME)
        content.append(build(a, language))
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))
