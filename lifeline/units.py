"""Unit conversion to each metric's canonical unit, with the units the catalogue
(``lifeline.kinds``) lets a vendor report each quantity in.

Vendors report in their own units; the wire carries only canonical ones. A unit that
cannot be converted for a metric is an error, never a silent pass-through.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from lifeline.errors import LifelineError
from lifeline.kinds import METRIC_UNITS, QUANTITIES


class UnitError(LifelineError, ValueError):
    """A unit that is unknown or cannot be converted for the metric."""


def _scale(k: float) -> Callable[[float], float]:
    return lambda v: v * k


#: (metric, unit as reported) → conversion to the canonical unit, from the catalogue.
_CONVERSIONS: dict[tuple[str, str], Callable[[float], float]] = {
    (q.name, unit): (conv if callable(conv) else _scale(conv))
    for q in QUANTITIES.values()
    for unit, conv in ((q.unit, 1.0), *q.units)
}
CONVERSIONS = MappingProxyType(_CONVERSIONS)


def canonical_unit(metric: str) -> str | None:
    return METRIC_UNITS.get(metric)


def converter(metric: str, unit: str) -> Callable[[float], float]:
    """The function turning ``unit`` values of ``metric`` into its canonical unit."""
    canonical = METRIC_UNITS.get(metric)
    if canonical is None:
        # Metrics outside the catalogue (generic devices) keep their own unit.
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
