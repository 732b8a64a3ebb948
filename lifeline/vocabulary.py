"""Shared vocabulary: severities, incident and video-event types, and which lifeline an
incident type belongs to. Sensor kinds, their metrics and units are in the catalogue
(``lifeline.kinds``).

These identifiers are used on the wire, in the store and in the API. Extend the tables;
never rename an entry.
"""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    """Four warning levels, level I (red) highest, as the national emergency plans grade
    them."""

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    BLUE = "blue"

    @property
    def level(self) -> int:
        """1 (red, I) … 4 (blue, IV)."""
        return _LEVELS[self]

    @property
    def roman(self) -> str:
        return ("I", "II", "III", "IV")[self.level - 1]

    @classmethod
    def from_level(cls, level: int) -> Severity:
        for sev, lvl in _LEVELS.items():
            if lvl == level:
                return sev
        raise ValueError(f"severity level must be 1-4, not {level}")


_LEVELS = {Severity.RED: 1, Severity.ORANGE: 2, Severity.YELLOW: 3, Severity.BLUE: 4}


class VideoEventType(StrEnum):
    """Video-analytics event types used by city-management centres."""

    ROAD_PONDING = "road_ponding"
    MANHOLE_COVER_MISSING = "manhole_cover_missing"
    SMOKE_FIRE = "smoke_fire"
    CROWD_DENSITY = "crowd_density"
    ILLEGAL_PARKING = "illegal_parking"
    OCCUPY_ROAD_TRADING = "occupy_road_trading"
    PEDLAR = "pedlar"
    PILED_MATERIALS = "piled_materials"
    GARBAGE_OVERFLOW = "garbage_overflow"
    MUCK_DUMPING = "muck_dumping"
    #: a video platform's event whose code the city's code table does not name: kept
    #: and shown to operators with the platform's code, never dropped
    UNMAPPED = "unmapped"


class IncidentType(StrEnum):
    GAS_LEAK = "gas_leak"
    GAS_PRESSURE = "gas_pressure_abnormal"
    PIPE_BURST = "pipe_burst"
    WATER_LEAK = "water_leak"
    LOW_PRESSURE = "low_water_pressure"
    WATERLOGGING = "waterlogging"
    UNDERPASS_FLOODING = "underpass_flooding"
    MANHOLE_COVER = "manhole_cover"
    BRIDGE_OVERLOAD = "bridge_overload"
    TUNNEL_HAZARD = "tunnel_hazard"
    HEATING_LEAK = "heating_leak"
    FIRE = "fire"
    CROWD = "crowd"
    CITY_MANAGEMENT = "city_management"
    SENSOR_FAULT = "sensor_fault"
    DEVICE_OFFLINE = "device_offline"


#: Which lifeline an incident type belongs to, for the overview and the
#: cockpit's lifeline views; "devices" holds what belongs to no one lifeline.
LIFELINE_OF_TYPE: dict[str, str] = {
    IncidentType.GAS_LEAK: "gas",
    IncidentType.GAS_PRESSURE: "gas",
    IncidentType.PIPE_BURST: "water",
    IncidentType.WATER_LEAK: "water",
    IncidentType.LOW_PRESSURE: "water",
    IncidentType.WATERLOGGING: "drainage",
    IncidentType.UNDERPASS_FLOODING: "drainage",
    IncidentType.MANHOLE_COVER: "drainage",
    IncidentType.BRIDGE_OVERLOAD: "bridge",
    IncidentType.TUNNEL_HAZARD: "tunnel",
    IncidentType.HEATING_LEAK: "heating",
    IncidentType.FIRE: "public_safety",
    IncidentType.CROWD: "public_safety",
    IncidentType.CITY_MANAGEMENT: "public_safety",
    IncidentType.SENSOR_FAULT: "devices",
    IncidentType.DEVICE_OFFLINE: "devices",
}
LIFELINES = ("gas", "water", "drainage", "bridge", "heating", "tunnel", "public_safety", "devices")
