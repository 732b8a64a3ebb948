"""Correlation: anomalies of one place (grid cell) become incidents — a pure fold.

``(state, anomaly) -> (state, incidents to publish)``. One incident per ongoing
situation and type: it opens when its rule is satisfied, is updated (new revision) when
anomalies join or the severity changes, escalates with the worst active anomaly, and
clears when none of its anomalies is active any more.

Rules (the anomaly patterns that matter on the lifelines):
* gas leak: methane in a gas well is confirmed by a second well of the same cell, or by
  one well staying in alarm for ``GAS_PERSISTENCE``, or by a level of orange or above —
  a single well's whiff of sewer biogas is not a leak;
* pipe burst: a water-pressure drop with an inflow rise in the same cell within
  ``BURST_WINDOW``; a pressure anomaly alone is low water pressure, a flow rise alone a
  leak once it lasts ``LEAK_PERSISTENCE`` (what either opened alone becomes the burst);
* waterlogging: road-ponding depth confirmed by a rainstorm at the cell's rain gauge or
  by a camera seeing ponding there (one incident, all as evidence), or by lasting
  ``WATERLOGGING_PERSISTENCE``; rain alone is not waterlogging; an underpass asset makes
  it underpass flooding (the underpass is closed at that depth, whatever the cause);
* heating leak: make-up water rising (with the pressure falling, as evidence), or another
  heating anomaly lasting ``HEATING_PERSISTENCE``;
* an anomaly stays with the incident it joined, through its updates and its clearing;
* every other kind maps to its incident type directly; camera events too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from lifeline.records import Anomaly, Incident
from lifeline.vocabulary import IncidentType, Severity

GAS_PERSISTENCE = timedelta(minutes=10)
BURST_WINDOW = timedelta(minutes=15)
LEAK_PERSISTENCE = timedelta(minutes=30)
WATERLOGGING_PERSISTENCE = timedelta(minutes=10)
HEATING_PERSISTENCE = timedelta(minutes=10)
CLEARED_KEPT = 256

_BY_METRIC_PREFIX: tuple[tuple[str, IncidentType], ...] = (
    ("tilt", IncidentType.MANHOLE_COVER),
    ("strain", IncidentType.BRIDGE_OVERLOAD),
    ("deflection", IncidentType.BRIDGE_OVERLOAD),
    ("accel_rms", IncidentType.BRIDGE_OVERLOAD),
    ("o2", IncidentType.TUNNEL_HAZARD),
    ("h2s", IncidentType.TUNNEL_HAZARD),
    ("sump_level", IncidentType.TUNNEL_HAZARD),
    ("makeup_flow", IncidentType.HEATING_LEAK),
    ("supply_temp", IncidentType.HEATING_LEAK),
    ("return_temp", IncidentType.HEATING_LEAK),
    ("level", IncidentType.WATERLOGGING),
)
_VIDEO = {
    "road_ponding": IncidentType.WATERLOGGING,
    "smoke_fire": IncidentType.FIRE,
    "manhole_cover_missing": IncidentType.MANHOLE_COVER,
    "crowd_density": IncidentType.CROWD,
}


def candidate_type(a: Anomaly, device_kind: str | None) -> IncidentType:
    """The incident type an anomaly points to, before confirmation rules."""
    if a.kind == "offline":
        return IncidentType.DEVICE_OFFLINE
    if a.camera_id is not None:
        video_type = a.kind.removeprefix("video_")
        return _VIDEO.get(video_type, IncidentType.CITY_MANAGEMENT)
    metric = a.evidence[0].metric if a.evidence else a.kind.split("_")[0]
    if any(f in a.detector for f in ("range", "flatline", "spike")) and "level" not in a.detector:
        return IncidentType.SENSOR_FAULT
    if device_kind == "tunnel_env" or metric in {"o2", "h2s"}:
        return IncidentType.TUNNEL_HAZARD
    if metric == "ch4":
        return IncidentType.GAS_LEAK
    if metric == "rainfall":
        return IncidentType.WATERLOGGING  # rainstorm in the cell: context for ponding
    if metric == "depth":
        if a.asset_id is not None and a.asset_id.upper().startswith("UP"):
            return IncidentType.UNDERPASS_FLOODING
        return IncidentType.WATERLOGGING
    if metric == "pressure":
        if device_kind == "gas_pressure":
            return IncidentType.GAS_PRESSURE
        if device_kind == "heat_network":
            return IncidentType.HEATING_LEAK
        return IncidentType.LOW_PRESSURE
    if metric == "flow":
        return IncidentType.WATER_LEAK
    for prefix, itype in _BY_METRIC_PREFIX:
        if metric.startswith(prefix):
            return itype
    return IncidentType.SENSOR_FAULT


@dataclass(frozen=True)
class Open:
    """An incident in progress (or a candidate waiting for confirmation)."""

    incident: Incident | None
    #: anomaly id → (device or camera, severity, first seen, still active)
    members: dict[str, tuple[str, Severity, datetime, bool]] = field(default_factory=dict)
    #: (anomaly id, role) where the role is not "sensor" (see ``_role``)
    roles: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PlaceState:
    """Everything open in one correlation key (grid cell)."""

    open: dict[IncidentType, Open] = field(default_factory=dict)
    #: last flow-rise time and pressure-drop time, for the burst rule
    flow_rise: datetime | None = None
    pressure_drop: datetime | None = None
    #: the latest anomalies cleared here: a record of one of them arriving again is a
    #: replay (at-least-once delivery after a worker died), not a new situation
    cleared: tuple[str, ...] = ()


def fold(
    state: PlaceState,
    a: Anomaly,
    device_kind: str | None = None,
) -> tuple[PlaceState, list[Incident]]:
    """Apply one anomaly; return the new state and the incident records to publish."""
    if a.anomaly_id in state.cleared:
        return state, []
    if a.state == "cleared":
        state = replace(state, cleared=(*state.cleared, a.anomaly_id)[-CLEARED_KEPT:])
    published: list[Incident] = []
    itype = next((t for t, o in state.open.items() if a.anomaly_id in o.members), None)
    if itype is None:
        # A new anomaly; one already known stays with the incident it joined.
        itype = candidate_type(a, device_kind)
        state, itype = _burst(state, a, itype, published)
    role = _role(a)
    current = state.open.get(itype, Open(None))
    who = a.device_id or a.camera_id or a.anomaly_id
    members = dict(current.members)
    first = members.get(a.anomaly_id, (who, a.severity, a.ts, True))[2]
    members[a.anomaly_id] = (who, a.severity, first, a.state != "cleared")
    roles = dict(current.roles)
    if role != "sensor":
        roles[a.anomaly_id] = role
    active = {k: v for k, v in members.items() if v[3]}
    # Rain is context: it joins a waterlogging incident but neither makes nor keeps one.
    ponding = any(roles.get(k) != "rain" for k in active)
    incident = current.incident
    if incident is None:
        if not ponding or not _confirmed(itype, active, roles, a.ts):
            opened = {**state.open, itype: Open(None, members, tuple(roles.items()))}
            if not active:
                opened.pop(itype, None)
            return replace(state, open=opened), published
        incident = _new_incident(a, itype, active)
        published.append(incident)
    else:
        updated = _update(incident, a, active if ponding else {})
        if updated != incident:
            published.append(updated)
        incident = updated
    opened = dict(state.open)
    if incident.status == "cleared":
        opened.pop(itype, None)
    else:
        opened[itype] = Open(incident, members, tuple(roles.items()))
    return replace(state, open=opened), published


def _role(a: Anomaly) -> str:
    """What an anomaly says for confirmation: "rain" (rainfall at a gauge), "makeup"
    (heating make-up water), "camera", or "sensor" (anything else)."""
    if a.camera_id:
        return "camera"
    metric = a.evidence[0].metric if a.evidence else ""
    return {"rainfall": "rain", "makeup_flow": "makeup"}.get(metric, "sensor")


def _burst(
    state: PlaceState, a: Anomaly, itype: IncidentType, published: list[Incident]
) -> tuple[PlaceState, IncidentType]:
    """The burst rule: a pressure drop and an inflow rise in one place within
    ``BURST_WINDOW`` are one burst. Whatever either had opened alone (a low-pressure
    incident, a leak candidate) becomes the burst: one situation, one incident."""
    flow_rise, pressure_drop = state.flow_rise, state.pressure_drop
    raised = a.state != "cleared"
    if itype is IncidentType.WATER_LEAK and raised and "drift_down" not in a.detector:
        flow_rise = a.ts
        if pressure_drop is not None and abs(a.ts - pressure_drop) <= BURST_WINDOW:
            itype = IncidentType.PIPE_BURST
    if itype is IncidentType.LOW_PRESSURE and raised:
        pressure_drop = a.ts
        if flow_rise is not None and abs(a.ts - flow_rise) <= BURST_WINDOW:
            itype = IncidentType.PIPE_BURST
    state = replace(state, flow_rise=flow_rise, pressure_drop=pressure_drop)
    if itype is not IncidentType.PIPE_BURST or IncidentType.PIPE_BURST in state.open:
        return state, itype
    parts = [p for p in (state.open.get(t) for t in _BURST_PARTS) if p is not None]
    if not parts:
        return state, itype
    members = {k: v for p in parts for k, v in p.members.items()}
    incidents = [p.incident for p in parts if p.incident is not None]
    merged = None
    if incidents:
        kept, *others = incidents
        merged = kept.model_copy(
            update={
                "type": IncidentType.PIPE_BURST,
                "revision": kept.revision + 1,
                "title": kept.title.replace(kept.type.value.replace("_", " "), "pipe burst"),
                "anomaly_ids": tuple(sorted(set(kept.anomaly_ids) | set(members))),
                "updated_at": a.ts,
            }
        )
        published.append(merged)
        for other in others:  # folded into the burst
            published.append(
                other.model_copy(
                    update={
                        "revision": other.revision + 1,
                        "status": "cleared",
                        "updated_at": a.ts,
                        "cleared_at": a.ts,
                    }
                )
            )
    rest = {t: o for t, o in state.open.items() if t not in _BURST_PARTS}
    return replace(state, open={**rest, IncidentType.PIPE_BURST: Open(merged, members)}), itype


_BURST_PARTS = (IncidentType.LOW_PRESSURE, IncidentType.WATER_LEAK)


def _confirmed(
    itype: IncidentType,
    active: dict[str, tuple[str, Severity, datetime, bool]],
    roles: Mapping[str, str],
    now: datetime,
) -> bool:
    oldest = min(t for _w, _s, t, _a in active.values())
    if itype is IncidentType.WATER_LEAK:
        # An inflow rise alone is a leak only once it lasts; with a pressure drop it is
        # a burst (see fold).
        return now - oldest >= LEAK_PERSISTENCE
    kinds = {roles.get(k, "sensor") for k in active}
    if itype is IncidentType.WATERLOGGING:
        # Ponding agrees with rainfall in the cell, or a camera sees it; a depth gauge
        # alone (a blocked gully, a wave from a passing bus) must last.
        return bool(kinds & {"rain", "camera"}) or now - oldest >= WATERLOGGING_PERSISTENCE
    if itype is IncidentType.HEATING_LEAK:
        # Water lost from the network shows as make-up water; a pressure or temperature
        # excursion alone is a leak only once it lasts.
        return "makeup" in kinds or now - oldest >= HEATING_PERSISTENCE
    if itype is not IncidentType.GAS_LEAK:
        return True
    devices = {who for who, _s, _t, _a in active.values()}
    worst = min(sev.level for _w, sev, _t, _a in active.values())
    return len(devices) >= 2 or worst <= Severity.ORANGE.level or now - oldest >= GAS_PERSISTENCE


def _worst(active: dict[str, tuple[str, Severity, datetime, bool]]) -> Severity:
    return Severity.from_level(min(sev.level for _w, sev, _t, _a in active.values()))


def _severity(
    itype: IncidentType, active: dict[str, tuple[str, Severity, datetime, bool]]
) -> Severity:
    """The worst active member; a gas leak confirmed by neighbouring wells one level up,
    whether they alarmed together or one joined a leak its neighbour's persistence made."""
    severity = _worst(active)
    if itype is IncidentType.GAS_LEAK and len({w for w, *_ in active.values()}) >= 2:
        severity = Severity.from_level(max(1, severity.level - 1))
    return severity


def _new_incident(
    a: Anomaly, itype: IncidentType, active: dict[str, tuple[str, Severity, datetime, bool]]
) -> Incident:
    severity = _severity(itype, active)
    # The place as the correlation key has it: the grid cell, else (a device placed off
    # the grid) its asset or the device itself, so that such places never share an id.
    where = a.grid_cell or a.asset_id or a.device_id or a.camera_id or a.anomaly_id
    started = min(t for _w, _s, t, _a in active.values())
    return Incident(
        incident_id=f"{a.city}:{where}:{itype.value}:{int(started.timestamp())}",
        revision=1,
        city=a.city,
        type=itype,
        severity=severity,
        status="open",
        title=f"{itype.value.replace('_', ' ')} "
        + (f"in cell {where}" if a.grid_cell else f"at {where}"),
        anomaly_ids=tuple(sorted(active)),
        asset_ids=(a.asset_id,) if a.asset_id else (),
        grid_cells=(a.grid_cell,) if a.grid_cell else (),
        lon=a.lon,
        lat=a.lat,
        started_at=started,
        updated_at=a.ts,
    )


def _update(
    incident: Incident, a: Anomaly, active: dict[str, tuple[str, Severity, datetime, bool]]
) -> Incident:
    if not active:
        return incident.model_copy(
            update={
                "revision": incident.revision + 1,
                "status": "cleared",
                "updated_at": a.ts,
                "cleared_at": a.ts,
            }
        )
    severity = min(_severity(incident.type, active), incident.severity, key=lambda s: s.level)
    ids = tuple(sorted(set(incident.anomaly_ids) | set(active)))
    assets = tuple(sorted(set(incident.asset_ids) | ({a.asset_id} if a.asset_id else set())))
    if (severity, ids, assets) == (incident.severity, incident.anomaly_ids, incident.asset_ids):
        return incident
    return incident.model_copy(
        update={
            "revision": incident.revision + 1,
            "severity": severity,
            "anomaly_ids": ids,
            "asset_ids": assets,
            "updated_at": a.ts,
        }
    )
