"""Shared vocabulary of sensor kinds, metrics and units, with their canonical units.

These identifiers are used on the wire, in rules files, by ``cityops detect --kind``
and by the simulator. Extend the tables; never rename an entry.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType


class SensorKind(StrEnum):
    GAS_WELL = "gas_well"
    GAS_PRESSURE = "gas_pressure"
    WATER_PRESSURE = "water_pressure"
    WATER_FLOW = "water_flow"
    ROAD_PONDING = "road_ponding"
    DRAIN_LEVEL = "drain_level"
    RAIN_GAUGE = "rain_gauge"
    MANHOLE_COVER = "manhole_cover"
    BRIDGE_STRAIN = "bridge_strain"
    BRIDGE_DEFLECTION = "bridge_deflection"
    BRIDGE_VIBRATION = "bridge_vibration"
    TUNNEL_ENV = "tunnel_env"
    HEAT_NETWORK = "heat_network"
    GENERIC = "generic"


#: Metric name → canonical unit.
METRIC_UNITS = MappingProxyType(
    {
        "ch4": "%LEL",
        "pressure": "MPa",
        "flow": "m3/h",
        "depth": "cm",
        "level": "m",
        "rainfall": "mm",
        "tilt": "deg",
        "strain": "με",
        "temperature": "°C",
        "deflection": "mm",
        "accel_rms": "m/s2",
        "o2": "%vol",
        "h2s": "ppm",
        "humidity": "%",
        "sump_level": "m",
        "supply_temp": "°C",
        "return_temp": "°C",
        "makeup_flow": "m3/h",
    }
)

#: Sensor kind → the metrics it reports.
KIND_METRICS: MappingProxyType[SensorKind, tuple[str, ...]] = MappingProxyType(
    {
        SensorKind.GAS_WELL: ("ch4",),
        SensorKind.GAS_PRESSURE: ("pressure",),
        SensorKind.WATER_PRESSURE: ("pressure",),
        SensorKind.WATER_FLOW: ("flow",),
        SensorKind.ROAD_PONDING: ("depth",),
        SensorKind.DRAIN_LEVEL: ("level",),
        SensorKind.RAIN_GAUGE: ("rainfall",),
        SensorKind.MANHOLE_COVER: ("tilt",),
        SensorKind.BRIDGE_STRAIN: ("strain", "temperature"),
        SensorKind.BRIDGE_DEFLECTION: ("deflection",),
        SensorKind.BRIDGE_VIBRATION: ("accel_rms",),
        SensorKind.TUNNEL_ENV: ("o2", "h2s", "ch4", "temperature", "humidity", "sump_level"),
        SensorKind.HEAT_NETWORK: (
            "supply_temp",
            "return_temp",
            "pressure",
            "flow",
            "makeup_flow",
        ),
        SensorKind.GENERIC: (),
    }
)

#: Physical ranges a metric can take at all; values outside are sensor or payload errors.
PHYSICAL_RANGE = MappingProxyType(
    {
        "ch4": (0.0, 100.0),
        "pressure": (-0.1, 10.0),
        "flow": (-100_000.0, 100_000.0),
        "depth": (0.0, 1000.0),
        "level": (-100.0, 100.0),
        "rainfall": (0.0, 500.0),
        "tilt": (0.0, 180.0),
        "strain": (-10_000.0, 10_000.0),
        "temperature": (-60.0, 200.0),
        "deflection": (-2000.0, 2000.0),
        "accel_rms": (0.0, 100.0),
        "o2": (0.0, 100.0),
        "h2s": (0.0, 1000.0),
        "humidity": (0.0, 100.0),
        "sump_level": (-10.0, 50.0),
        "supply_temp": (-20.0, 200.0),
        "return_temp": (-20.0, 200.0),
        "makeup_flow": (0.0, 10_000.0),
    }
)


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


#: Asset classes of the CIM map that a sensor kind is placed on (nearest of these).
KIND_ASSET_CLASSES: MappingProxyType[SensorKind, tuple[str, ...]] = MappingProxyType(
    {
        SensorKind.GAS_WELL: ("gas_well", "manhole", "gas_pipe"),
        SensorKind.GAS_PRESSURE: ("gas_pipe",),
        SensorKind.WATER_PRESSURE: ("water_pipe",),
        SensorKind.WATER_FLOW: ("water_pipe",),
        SensorKind.ROAD_PONDING: ("underpass", "road", "drainage_pipe"),
        SensorKind.DRAIN_LEVEL: ("drainage_well", "drainage_pipe", "river"),
        SensorKind.RAIN_GAUGE: (),
        SensorKind.MANHOLE_COVER: ("manhole", "gas_well", "drainage_well"),
        SensorKind.BRIDGE_STRAIN: ("bridge",),
        SensorKind.BRIDGE_DEFLECTION: ("bridge",),
        SensorKind.BRIDGE_VIBRATION: ("bridge",),
        SensorKind.TUNNEL_ENV: ("utility_tunnel",),
        SensorKind.HEAT_NETWORK: ("heating_pipe",),
        SensorKind.GENERIC: (),
    }
)


#: Which lifeline an incident type or a sensor kind belongs to, for the overview and the
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
LIFELINE_OF_KIND: dict[str, str] = {
    SensorKind.GAS_WELL: "gas",
    SensorKind.GAS_PRESSURE: "gas",
    SensorKind.WATER_PRESSURE: "water",
    SensorKind.WATER_FLOW: "water",
    SensorKind.ROAD_PONDING: "drainage",
    SensorKind.DRAIN_LEVEL: "drainage",
    SensorKind.RAIN_GAUGE: "drainage",
    SensorKind.MANHOLE_COVER: "drainage",
    SensorKind.BRIDGE_STRAIN: "bridge",
    SensorKind.BRIDGE_DEFLECTION: "bridge",
    SensorKind.BRIDGE_VIBRATION: "bridge",
    SensorKind.TUNNEL_ENV: "tunnel",
    SensorKind.HEAT_NETWORK: "heating",
}
LIFELINES = ("gas", "water", "drainage", "bridge", "heating", "tunnel", "public_safety", "devices")
