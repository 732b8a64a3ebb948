"""Default detection rules per sensor kind and metric, with their sources, and the
rules files through which a city or a device overrides them.

Defaults, from the standards and practice they follow: CH4 levels per GB/T 50493-2019
(warn 10, level-1 25, level-2 50 %LEL); utility tunnels per GB 50838-2015 (CH4 20/25
%LEL, O2 19.5-23.5 %vol, H2S 10 ppm, 40 °C); water network-end pressure 0.14 MPa (CJJ
58/CJJ 92); background water leaks by the minimum night flow (02:00-04:00) 10 % above
the median of recent nights; gas pressure class bands (GB 50028, medium B by default);
road ponding 15 cm lane / 25 cm underpass closure (Shanghai practice); manhole-cover
tilt 5-10 degrees (vendor practice); heating make-up water over 2 % of the circulating
flow (CJJ 34); rainstorm signals on the rain accumulated at a gauge (CMA: 50 mm in
12/6/3 h blue/yellow/orange, 100 mm in 3 h red). Signals without fixed limits use the
adaptive baseline.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lifeline.codes import is_city_code
from lifeline.detect.detectors import (
    Accumulation,
    Amount,
    Baseline,
    Detector,
    Faults,
    Level,
    Levels,
    NightFlow,
    Rate,
    Sustained,
)
from lifeline.errors import LifelineError
from lifeline.vocabulary import KIND_METRICS, PHYSICAL_RANGE, SensorKind, Severity

BLU, YEL, ORG, RED = Severity.BLUE, Severity.YELLOW, Severity.ORANGE, Severity.RED
HOUR = 3600.0


def _faults(metric: str, **kw: Any) -> Faults:
    low, high = PHYSICAL_RANGE.get(metric, (float("-inf"), float("inf")))
    return Faults(low, high, **kw)


def _levels(
    *pairs: tuple[float, Severity],
    direction: str = "above",
    hysteresis: float = 0.0,
    k: int = 2,
    n: int = 3,
    min_duration_s: float = 0.0,
) -> Levels:
    return Levels(
        tuple(Level(t, s) for t, s in pairs),
        direction,  # type: ignore[arg-type]
        hysteresis,
        k,
        n,
        min_duration_s,
    )


#: (kind, metric) → detectors. ``generic`` and unlisted metrics get the baseline.
DEFAULTS: dict[tuple[str, str], tuple[Detector, ...]] = {
    ("gas_well", "ch4"): (_levels((10, BLU), (25, YEL), (50, ORG), hysteresis=3), _faults("ch4")),
    ("tunnel_env", "ch4"): (_levels((20, ORG), (25, RED), hysteresis=2), _faults("ch4")),
    ("tunnel_env", "o2"): (
        _levels((19.5, ORG), direction="below", hysteresis=0.3),
        _levels((23.5, ORG), hysteresis=0.3),
        _faults("o2", flat_suspect=30, flat_fail=60),
    ),
    ("tunnel_env", "h2s"): (_levels((10, ORG), (20, RED), hysteresis=1), _faults("h2s")),
    ("tunnel_env", "temperature"): (
        _levels((40, YEL), (50, ORG), hysteresis=2),
        _faults("temperature"),
    ),
    ("tunnel_env", "sump_level"): (Baseline(), _faults("sump_level")),
    ("tunnel_env", "humidity"): (Baseline(), _faults("humidity")),
    ("gas_pressure", "pressure"): (
        _levels((0.01, ORG), direction="below", hysteresis=0.002),
        _levels((0.2, ORG), hysteresis=0.01),
        Rate(0.0005, ORG, "fall"),
        _faults("pressure", flat_suspect=20, flat_fail=40),
    ),
    ("water_pressure", "pressure"): (
        Sustained(0.14, 300, YEL, "below"),
        Baseline(alpha=0.05, z_limit=6.0, daily=True, severity=ORG),
        _faults("pressure", flat_suspect=20, flat_fail=40),
    ),
    # A lasting rise of a district's inflow is a leak candidate until it returns (for an
    # hour) or someone looks.
    ("water_flow", "flow"): (
        Baseline(alpha=0.05, z_limit=6.0, daily=True, severity=YEL, hold_shift=True, back=12),
        NightFlow(),
        _faults("flow", flat_suspect=30, flat_fail=60),
    ),
    ("road_ponding", "depth"): (
        _levels((15, YEL), (25, ORG), (40, RED), hysteresis=2),
        _faults("depth"),
    ),
    ("drain_level", "level"): (Baseline(severity=YEL), _faults("level")),
    ("rain_gauge", "rainfall"): (
        Accumulation(
            (
                Amount(12 * HOUR, 50, BLU),
                Amount(6 * HOUR, 50, YEL),
                Amount(3 * HOUR, 50, ORG),
                Amount(3 * HOUR, 100, RED),
            ),
            name="rainstorm",
        ),
        _faults("rainfall"),
    ),
    ("manhole_cover", "tilt"): (_levels((5, YEL), (10, ORG), hysteresis=1), _faults("tilt")),
    ("bridge_strain", "strain"): (Baseline(daily=True, severity=ORG), _faults("strain")),
    ("bridge_strain", "temperature"): (_faults("temperature"),),
    ("bridge_deflection", "deflection"): (
        Baseline(daily=True, severity=ORG),
        _faults("deflection"),
    ),
    ("bridge_vibration", "accel_rms"): (Baseline(severity=ORG), _faults("accel_rms")),
    # Make-up water over 2 % of the circulating flow (CJJ 34 practice; 300 m3/h → 6 m3/h
    # by default, per station in a rules file).
    ("heat_network", "makeup_flow"): (
        _levels((6, ORG), hysteresis=1),
        _faults("makeup_flow"),
    ),
    ("heat_network", "pressure"): (
        Baseline(severity=YEL),
        Rate(0.0005, ORG, "fall"),
        _faults("pressure"),
    ),
}


def defaults_for(kind: str, metric: str) -> tuple[Detector, ...]:
    found = DEFAULTS.get((kind, metric))
    if found is not None:
        return found
    return (Baseline(daily=True, z_limit=6.0), _faults(metric))


class RulesError(LifelineError, ValueError):
    """A rules file that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class RuleOverride:
    """Levels for a kind's metric in a city, or for one device, and whether a lasting
    shift of its adaptive baseline stays raised (``hold_shift``)."""

    kind: str
    metric: str
    levels: tuple[Level, ...]
    direction: str
    hysteresis: float
    city: str | None = None
    device_id: str | None = None
    hold_shift: bool | None = None


@dataclass
class RuleBook:
    """Defaults plus overrides; the most specific match wins (device, city, default)."""

    overrides: list[RuleOverride]

    def detectors(
        self, kind: str, metric: str, city: str | None = None, device_id: str | None = None
    ) -> tuple[Detector, ...]:
        chosen = None
        for o in self.overrides:
            if (o.kind, o.metric) != (kind, metric):
                continue
            if o.device_id is not None and o.device_id == device_id:
                chosen = o
                break
            if o.device_id is None and o.city is not None and o.city == city:
                chosen = o
        base = defaults_for(kind, metric)
        if chosen is None:
            return base
        if chosen.hold_shift is not None:
            hold = chosen.hold_shift
            base = tuple(
                replace(d, hold_shift=hold) if isinstance(d, Baseline) else d for d in base
            )
        if not chosen.levels:
            return base
        levels = Levels(chosen.levels, chosen.direction, chosen.hysteresis)  # type: ignore[arg-type]
        return (levels, *(d for d in base if not isinstance(d, Levels)))

    @classmethod
    def load(cls, path: Path) -> RuleBook:
        """Read a TOML rules file: ``[[rule]]`` tables with kind, metric, levels."""
        text = path.read_text(encoding="utf-8")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RulesError(f"{path}: {exc}") from exc
        rules = data.get("rule", [])
        lines = [i + 1 for i, line in enumerate(text.splitlines()) if line.strip() == "[[rule]]"]
        out = []
        for i, rule in enumerate(rules):
            where = f"{path}:{lines[i] if i < len(lines) else '?'}"
            out.append(_parse_rule(rule, where))
        return cls(out)


def _parse_rule(rule: dict[str, Any], where: str) -> RuleOverride:
    kind, metric = rule.get("kind"), rule.get("metric")
    kinds = {k.value for k in SensorKind}
    if kind not in kinds:
        raise RulesError(f"{where}: kind {kind!r} is not one of {', '.join(sorted(kinds))}")
    if kind != "generic" and metric not in KIND_METRICS[SensorKind(kind)]:
        raise RulesError(f"{where}: {kind} has no metric {metric!r}")
    hold = rule.get("hold_shift")
    if hold is not None and not isinstance(hold, bool):
        raise RulesError(f"{where}: hold_shift must be true or false")
    if hold is not None and not any(
        isinstance(d, Baseline) for d in defaults_for(str(kind), str(metric))
    ):
        raise RulesError(f"{where}: {kind} {metric} has no adaptive baseline to hold")
    raw = rule.get("levels", [] if hold is not None else None)
    if not isinstance(raw, list) or (not raw and hold is None):
        raise RulesError(f'{where}: levels must be a list like [[25, "yellow"], [50, "orange"]]')
    levels = []
    for item in raw:
        try:
            threshold, sev = float(item[0]), Severity(item[1])
        except (TypeError, ValueError, IndexError) as exc:
            raise RulesError(f"{where}: level {item!r} is not [number, severity]") from exc
        levels.append(Level(threshold, sev))
    direction = rule.get("direction", "above")
    if direction not in {"above", "below"}:
        raise RulesError(f"{where}: direction must be 'above' or 'below'")
    ordered = sorted(levels, key=lambda lv: lv.threshold, reverse=direction == "below")
    if [lv.severity.level for lv in ordered] != sorted(
        (lv.severity.level for lv in ordered), reverse=True
    ):
        raise RulesError(f"{where}: levels must grow more severe as the value worsens")
    city = rule.get("city")
    if city is not None and not is_city_code(city):
        raise RulesError(f"{where}: city must be a 6-digit code")
    return RuleOverride(
        str(kind),
        str(metric),
        tuple(ordered),
        direction,
        float(rule.get("hysteresis", 0.0)),
        city,
        rule.get("device_id"),
        hold,
    )
