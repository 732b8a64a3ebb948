"""Default impact-zone radii by incident type and severity, in metres.

These are platform defaults for the first picture a dispatcher sees, not standards:
the cited sources give no national radii, so each city sets its own through its
rules file. The gas-leak values follow common municipal gas emergency plans
(initial isolation 50-300 m growing with leak size); the others are chosen to cover
the block around the asset at low severity and the neighbourhood at level I.
"""

from __future__ import annotations

from types import MappingProxyType

from lifeline.vocabulary import IncidentType, Severity

_R = Severity.RED, Severity.ORANGE, Severity.YELLOW, Severity.BLUE


def _radii(red: float, orange: float, yellow: float, blue: float) -> dict[Severity, float]:
    return dict(zip(_R, (red, orange, yellow, blue), strict=True))


ZONE_RADIUS_M: MappingProxyType[IncidentType, dict[Severity, float]] = MappingProxyType(
    {
        IncidentType.GAS_LEAK: _radii(500, 300, 150, 50),
        IncidentType.GAS_PRESSURE: _radii(300, 200, 100, 50),
        IncidentType.PIPE_BURST: _radii(300, 200, 100, 50),
        IncidentType.WATER_LEAK: _radii(150, 100, 50, 30),
        IncidentType.LOW_PRESSURE: _radii(1000, 500, 300, 100),
        IncidentType.WATERLOGGING: _radii(300, 200, 100, 50),
        IncidentType.UNDERPASS_FLOODING: _radii(300, 200, 100, 50),
        IncidentType.MANHOLE_COVER: _radii(50, 30, 20, 10),
        IncidentType.BRIDGE_OVERLOAD: _radii(500, 300, 200, 100),
        IncidentType.TUNNEL_HAZARD: _radii(300, 200, 100, 50),
        IncidentType.HEATING_LEAK: _radii(200, 100, 50, 30),
        IncidentType.FIRE: _radii(500, 300, 150, 50),
        IncidentType.CROWD: _radii(300, 200, 100, 50),
        IncidentType.CITY_MANAGEMENT: _radii(50, 30, 20, 10),
        IncidentType.SENSOR_FAULT: _radii(10, 10, 10, 10),
        IncidentType.DEVICE_OFFLINE: _radii(10, 10, 10, 10),
    }
)


def zone_radius_m(incident_type: IncidentType, severity: Severity) -> float:
    return ZONE_RADIUS_M[incident_type][severity]
