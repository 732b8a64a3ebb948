"""Detection rules per sensor kind and metric: the catalogue's defaults
(``lifeline.kinds``, where each kind's rules name the standard or practice they follow),
and the rules files through which a city or a device overrides them. Signals without
fixed limits use the adaptive baseline.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lifeline.codes import is_city_code
from lifeline.detect.detectors import Baseline, Detector, Level, Levels, Stuck
from lifeline.errors import LifelineError
from lifeline.kinds import EQUIPMENT, KIND_METRICS, KIND_NAMES, KINDS, OPEN_KINDS, faults
from lifeline.vocabulary import Severity

#: (kind, metric) → the default detectors of each metric the catalogue declares.
DEFAULTS: dict[tuple[str, str], tuple[Detector, ...]] = {
    (kind.name, m.name): m.detectors() for kind in KINDS.values() for m in kind.metrics
}


def defaults_for(kind: str, metric: str) -> tuple[Detector, ...]:
    """The default detectors of ``kind``'s ``metric``; a metric the catalogue does not
    declare gets the adaptive baseline and its range checks (a generic sensor's), or,
    on equipment judged by a joint model, its range and stuck-sensor checks."""
    found = DEFAULTS.get((kind, metric))
    if found is not None:
        return found
    if kind == EQUIPMENT:
        return (faults(metric), Stuck())
    return (Baseline(daily=True, z_limit=6.0), faults(metric))


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
    if kind not in KIND_NAMES:
        raise RulesError(f"{where}: kind {kind!r} is not one of {', '.join(sorted(KIND_NAMES))}")
    if kind not in OPEN_KINDS and metric not in KIND_METRICS[str(kind)]:
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
