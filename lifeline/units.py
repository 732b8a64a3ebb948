"""Unit conversion to each metric's canonical unit (see ``vocabulary.METRIC_UNITS``).

Vendors report in their own units; the wire carries only canonical ones. A unit that
cannot be converted for a metric is an error, never a silent pass-through.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from lifeline.errors import LifelineError
from lifeline.vocabulary import METRIC_UNITS


class UnitError(LifelineError, ValueError):
    """A unit that is unknown or cannot be converted for the metric."""


def _scale(k: float) -> Callable[[float], float]:
    return lambda v: v * k


def _f_to_c(v: float) -> float:
    return (v - 32.0) * 5.0 / 9.0


_PRESSURE = {"MPa": 1.0, "kPa": 1e-3, "Pa": 1e-6, "bar": 0.1, "mbar": 1e-4}
_TEMPERATURE: dict[str, Callable[[float], float]] = {
    "°C": lambda v: v,
    "degC": lambda v: v,
    "C": lambda v: v,
    "℃": lambda v: v,
    "°F": _f_to_c,
    "degF": _f_to_c,
    "F": _f_to_c,
}

#: (metric, unit as reported) → conversion to the canonical unit.
_CONVERSIONS: dict[tuple[str, str], Callable[[float], float]] = {}


def _add(metrics: tuple[str, ...], table: dict[str, float]) -> None:
    for metric in metrics:
        for unit, k in table.items():
            _CONVERSIONS[(metric, unit)] = _scale(k)


# Methane: 100 %LEL = 5 %vol, so 1 %vol = 20 %LEL; 1 ppm = 1e-4 %vol = 0.002 %LEL.
_add(("ch4",), {"%LEL": 1.0, "LEL": 1.0, "%vol": 20.0, "%VOL": 20.0, "ppm": 0.002})
_add(("pressure",), _PRESSURE)
_add(("flow", "makeup_flow"), {"m3/h": 1.0, "m³/h": 1.0, "L/s": 3.6, "l/s": 3.6, "m3/s": 3600.0})
_add(("depth",), {"cm": 1.0, "mm": 0.1, "m": 100.0})
_add(("level", "sump_level"), {"m": 1.0, "cm": 0.01, "mm": 0.001})
_add(("rainfall",), {"mm": 1.0, "cm": 10.0})
_add(("tilt",), {"deg": 1.0, "°": 1.0, "degree": 1.0})
_add(("strain",), {"με": 1.0, "ue": 1.0, "microstrain": 1.0, "µε": 1.0})
_add(("deflection",), {"mm": 1.0, "cm": 10.0, "m": 1000.0})
_add(("accel_rms",), {"m/s2": 1.0, "m/s²": 1.0, "g": 9.80665, "mg": 0.00980665})
_add(("o2",), {"%vol": 1.0, "%VOL": 1.0, "%": 1.0})
_add(("h2s",), {"ppm": 1.0})
_add(("humidity",), {"%": 1.0, "%RH": 1.0})
for _metric in ("temperature", "supply_temp", "return_temp"):
    for _unit, _fn in _TEMPERATURE.items():
        _CONVERSIONS[(_metric, _unit)] = _fn

CONVERSIONS = MappingProxyType(_CONVERSIONS)


def canonical_unit(metric: str) -> str | None:
    return METRIC_UNITS.get(metric)


def converter(metric: str, unit: str) -> Callable[[float], float]:
    """The function turning ``unit`` values of ``metric`` into its canonical unit."""
    canonical = METRIC_UNITS.get(metric)
    if canonical is None:
        # Metrics outside the shared vocabulary (generic devices) keep their own unit.
        return lambda v: v
    fn = _CONVERSIONS.get((metric, unit))
    if fn is None:
        known = sorted(u for (m, u) in _CONVERSIONS if m == metric)
        raise UnitError(
            f"unit {unit!r} cannot be converted to {canonical} for {metric}; "
            f"known units: {', '.join(known)}"
        )
    return fn


def to_canonical(metric: str, value: float, unit: str) -> tuple[float, str]:
    """(value, unit) in the canonical unit of ``metric``."""
    canonical = METRIC_UNITS.get(metric)
    return converter(metric, unit)(value), canonical or unit
