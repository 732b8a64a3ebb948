"""The sensor-kind catalogue: every kind of sensor the platform knows, declared once.

A kind declares its lifeline, the CIM asset classes it is placed on, and its metrics;
each metric its quantity (name, canonical unit, physical range), its default detection
rules with the standard or practice they follow, and how the simulator plays it when
nothing happens. Decoding, unit conversion, onboarding, rules files, the detection
worker, the overview and the simulator all read these tables; adding a kind is one
``KindSpec`` here (and a ``Quantity`` if it measures something new), plus its tests.

Metric and kind names are used on the wire, in rules files and by ``cityops detect
--kind``: extend the catalogue, never rename an entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

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
from lifeline.vocabulary import Severity

BLU, YEL, ORG, RED = Severity.BLUE, Severity.YELLOW, Severity.ORANGE, Severity.RED
HOUR = 3600.0
#: The kind of a sensor the catalogue has no entry for: metrics as reported, baseline rules.
GENERIC = "generic"
#: Equipment whose metrics are read together (a pump station, a water-quality station, a
#: valve chamber): metrics as reported, judged together by one joint model per device
#: (``lifeline.detect.joint``); each metric keeps its range and stuck-sensor checks.
EQUIPMENT = "equipment"
#: Kinds whose metrics are those a device reports, not the catalogue's.
OPEN_KINDS = frozenset({GENERIC, EQUIPMENT})


#: How a reported unit becomes the canonical one: a factor, or a function (°F → °C).
Conversion = float | Callable[[float], float]


@dataclass(frozen=True)
class Quantity:
    """What a metric measures: its name on the wire, its canonical unit, the range it can
    take at all (values outside are sensor or payload errors), and the other units a
    vendor may report it in (``lifeline.units`` converts them; any other is refused)."""

    name: str
    unit: str
    low: float
    high: float
    #: what an operator reads: Chinese, English
    label: tuple[str, str] = ("", "")
    units: tuple[tuple[str, Conversion], ...] = ()


@dataclass(frozen=True)
class Normal:
    """How the simulator plays a metric when nothing happens: a mean with a daily cycle
    of ``amplitude``, Gaussian noise of ``sd``, never under ``floor``."""

    mean: float
    amplitude: float = 0.0
    sd: float = 0.0
    floor: float = 0.0


@dataclass(frozen=True)
class MetricSpec:
    quantity: Quantity
    normal: Normal
    #: the default detectors; None: the adaptive baseline with a daily profile
    rules: tuple[Detector, ...] | None = None
    #: readings in a row with one value before a stuck sensor is suspected / raised
    flat: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return self.quantity.name

    def detectors(self) -> tuple[Detector, ...]:
        """The default rules, then the fault checks of the quantity's range."""
        rules = self.rules if self.rules is not None else (Baseline(daily=True, z_limit=6.0),)
        return (*rules, faults(self.quantity.name, self.flat))


Lifeline = Literal["gas", "water", "drainage", "bridge", "heating", "tunnel"]


@dataclass(frozen=True)
class KindSpec:
    name: str
    #: what an operator reads: Chinese, English
    label: tuple[str, str]
    lifeline: Lifeline
    #: CIM asset classes a device of the kind is placed on (the nearest of these)
    assets: tuple[str, ...]
    metrics: tuple[MetricSpec, ...]
    #: the standards and practice the default rules follow
    sources: str = ""
    #: the metrics are read together and also judged together (one joint model per
    #: device, beside each metric's own rules)
    joint: bool = False

    def metric(self, name: str) -> MetricSpec | None:
        return next((m for m in self.metrics if m.name == name), None)


def levels(
    *pairs: tuple[float, Severity],
    direction: Literal["above", "below"] = "above",
    hysteresis: float = 0.0,
) -> Levels:
    """Fixed levels, each raised when 2 of the last 3 readings are past it."""
    return Levels(tuple(Level(t, s) for t, s in pairs), direction, hysteresis)


# --- quantities ---------------------------------------------------------------------------


def _f_to_c(v: float) -> float:
    return (v - 32.0) * 5.0 / 9.0


_PRESSURE: tuple[tuple[str, Conversion], ...] = (
    ("kPa", 1e-3),
    ("Pa", 1e-6),
    ("bar", 0.1),
    ("mbar", 1e-4),
)
_FLOW: tuple[tuple[str, Conversion], ...] = (
    ("m³/h", 1.0),
    ("L/s", 3.6),
    ("l/s", 3.6),
    ("m3/s", 3600.0),
)
_METRES: tuple[tuple[str, Conversion], ...] = (("cm", 0.01), ("mm", 0.001))
_CELSIUS: tuple[tuple[str, Conversion], ...] = (
    ("degC", 1.0),
    ("C", 1.0),
    ("℃", 1.0),
    ("°F", _f_to_c),
    ("degF", _f_to_c),
    ("F", _f_to_c),
)

# Methane: 100 %LEL = 5 %vol, so 1 %vol = 20 %LEL; 1 ppm = 1e-4 %vol = 0.002 %LEL.
CH4 = Quantity(
    "ch4",
    "%LEL",
    0.0,
    100.0,
    ("甲烷", "CH4"),
    (("LEL", 1.0), ("%vol", 20.0), ("%VOL", 20.0), ("ppm", 0.002)),
)
PRESSURE = Quantity("pressure", "MPa", -0.1, 10.0, ("压力", "Pressure"), _PRESSURE)
FLOW = Quantity("flow", "m3/h", -100_000.0, 100_000.0, ("流量", "Flow"), _FLOW)
DEPTH = Quantity("depth", "cm", 0.0, 1000.0, ("积水深度", "Depth"), (("mm", 0.1), ("m", 100.0)))
LEVEL = Quantity("level", "m", -100.0, 100.0, ("液位", "Level"), _METRES)
RAINFALL = Quantity("rainfall", "mm", 0.0, 500.0, ("雨量", "Rainfall"), (("cm", 10.0),))
TILT = Quantity("tilt", "deg", 0.0, 180.0, ("倾角", "Tilt"), (("°", 1.0), ("degree", 1.0)))
STRAIN = Quantity(
    "strain",
    "με",
    -10_000.0,
    10_000.0,
    ("应变", "Strain"),
    (("ue", 1.0), ("microstrain", 1.0), ("µε", 1.0)),
)
TEMPERATURE = Quantity("temperature", "°C", -60.0, 200.0, ("温度", "Temperature"), _CELSIUS)
DEFLECTION = Quantity(
    "deflection", "mm", -2000.0, 2000.0, ("挠度", "Deflection"), (("cm", 10.0), ("m", 1000.0))
)
ACCEL_RMS = Quantity(
    "accel_rms",
    "m/s2",
    0.0,
    100.0,
    ("振动加速度", "Vibration (RMS)"),
    (("m/s²", 1.0), ("g", 9.80665), ("mg", 0.00980665)),
)
O2 = Quantity("o2", "%vol", 0.0, 100.0, ("氧气", "O2"), (("%VOL", 1.0), ("%", 1.0)))
H2S = Quantity("h2s", "ppm", 0.0, 1000.0, ("硫化氢", "H2S"))
HUMIDITY = Quantity("humidity", "%", 0.0, 100.0, ("湿度", "Humidity"), (("%RH", 1.0),))
SUMP_LEVEL = Quantity("sump_level", "m", -10.0, 50.0, ("集水坑液位", "Sump level"), _METRES)
SUPPLY_TEMP = Quantity(
    "supply_temp", "°C", -20.0, 200.0, ("供水温度", "Supply temperature"), _CELSIUS
)
RETURN_TEMP = Quantity(
    "return_temp", "°C", -20.0, 200.0, ("回水温度", "Return temperature"), _CELSIUS
)
MAKEUP_FLOW = Quantity("makeup_flow", "m3/h", 0.0, 10_000.0, ("补水流量", "Make-up flow"), _FLOW)

QUANTITIES: Mapping[str, Quantity] = MappingProxyType(
    {
        q.name: q
        for q in (
            CH4,
            PRESSURE,
            FLOW,
            DEPTH,
            LEVEL,
            RAINFALL,
            TILT,
            STRAIN,
            TEMPERATURE,
            DEFLECTION,
            ACCEL_RMS,
            O2,
            H2S,
            HUMIDITY,
            SUMP_LEVEL,
            SUPPLY_TEMP,
            RETURN_TEMP,
            MAKEUP_FLOW,
        )
    }
)


def faults(metric: str, flat: tuple[int, int] | None = None) -> Faults:
    """Range and stuck-value checks of a metric (no range known: none)."""
    q = QUANTITIES.get(metric)
    low, high = (q.low, q.high) if q else (float("-inf"), float("inf"))
    suspect, fail = flat if flat else (None, None)
    return Faults(low, high, flat_suspect=suspect, flat_fail=fail)


# --- the kinds ----------------------------------------------------------------------------

_SPECS = (
    KindSpec(
        "gas_well",
        ("燃气窨井", "Gas well"),
        "gas",
        ("gas_well", "manhole", "gas_pipe"),
        (
            MetricSpec(
                CH4, Normal(0.5, sd=0.25), (levels((10, BLU), (25, YEL), (50, ORG), hysteresis=3),)
            ),
        ),
        "GB/T 50493-2019: CH4 warn 10, level-1 25, level-2 50 %LEL",
    ),
    KindSpec(
        "gas_pressure",
        ("燃气压力", "Gas pressure"),
        "gas",
        ("gas_pipe",),
        (
            MetricSpec(
                PRESSURE,
                Normal(0.1, 0.005, 0.0008),
                (
                    levels((0.01, ORG), direction="below", hysteresis=0.002),
                    levels((0.2, ORG), hysteresis=0.01),
                    Rate(0.0005, ORG, "fall"),
                ),
                flat=(20, 40),
            ),
        ),
        "GB 50028 pressure classes (medium B by default); a fast fall is a rupture",
    ),
    KindSpec(
        "water_pressure",
        ("供水压力", "Water pressure"),
        "water",
        ("water_pipe",),
        (
            MetricSpec(
                PRESSURE,
                Normal(0.32, 0.02, 0.002),
                (
                    Sustained(0.14, 300, YEL, "below"),
                    Baseline(alpha=0.05, z_limit=6.0, daily=True, severity=ORG),
                ),
                flat=(20, 40),
            ),
        ),
        "CJJ 58 / CJJ 92: network-end pressure at least 0.14 MPa",
    ),
    KindSpec(
        "water_flow",
        ("供水流量", "Water flow"),
        "water",
        ("water_pipe",),
        (
            # A lasting rise of a district's inflow is a leak candidate until it returns
            # (for an hour) or someone looks.
            MetricSpec(
                FLOW,
                Normal(120.0, 35.0, 3.0),
                (
                    Baseline(
                        alpha=0.05,
                        z_limit=6.0,
                        daily=True,
                        severity=YEL,
                        hold_shift=True,
                        back=12,
                    ),
                    NightFlow(),
                ),
                flat=(30, 60),
            ),
        ),
        "background leaks by the minimum night flow (02:00-04:00) 10 % above recent nights",
    ),
    KindSpec(
        "road_ponding",
        ("道路积水", "Road ponding"),
        "drainage",
        ("underpass", "road", "drainage_pipe"),
        (
            MetricSpec(
                DEPTH,
                Normal(0.3, sd=0.2),
                (levels((15, YEL), (25, ORG), (40, RED), hysteresis=2),),
            ),
        ),
        "15 cm lane / 25 cm underpass closure (Shanghai practice)",
    ),
    KindSpec(
        "drain_level",
        ("排水液位", "Drain level"),
        "drainage",
        ("drainage_well", "drainage_pipe", "river"),
        # A drain's level follows the day's discharge: judged against its daily profile.
        (MetricSpec(LEVEL, Normal(1.5, 0.15, 0.01), (Baseline(daily=True, severity=YEL),)),),
    ),
    KindSpec(
        "rain_gauge",
        ("雨量计", "Rain gauge"),
        "drainage",
        (),
        (
            MetricSpec(
                RAINFALL,
                Normal(0.0),
                (
                    Accumulation(
                        (
                            Amount(12 * HOUR, 50, BLU),
                            Amount(6 * HOUR, 50, YEL),
                            Amount(3 * HOUR, 50, ORG),
                            Amount(3 * HOUR, 100, RED),
                        ),
                        name="rainstorm",
                    ),
                ),
            ),
        ),
        "CMA rainstorm signals: 50 mm in 12/6/3 h blue/yellow/orange, 100 mm in 3 h red",
    ),
    KindSpec(
        "manhole_cover",
        ("井盖", "Manhole cover"),
        "drainage",
        ("manhole", "gas_well", "drainage_well"),
        (MetricSpec(TILT, Normal(0.5, sd=0.08), (levels((5, YEL), (10, ORG), hysteresis=1),)),),
        "cover tilt 5-10 degrees (vendor practice)",
    ),
    KindSpec(
        "bridge_strain",
        ("桥梁应变", "Bridge strain"),
        "bridge",
        ("bridge",),
        (
            MetricSpec(
                STRAIN, Normal(120.0, 15.0, 2.0, -1e9), (Baseline(daily=True, severity=ORG),)
            ),
            MetricSpec(TEMPERATURE, Normal(18.0, 6.0, 0.2, -60.0), ()),
        ),
        # Strain moves with temperature: the joint model learns how, so that strain
        # off its usual relation to temperature is seen within its band.
        joint=True,
    ),
    KindSpec(
        "bridge_deflection",
        ("桥梁挠度", "Bridge deflection"),
        "bridge",
        ("bridge",),
        (
            MetricSpec(
                DEFLECTION, Normal(6.0, 0.8, 0.05, -1e9), (Baseline(daily=True, severity=ORG),)
            ),
        ),
    ),
    KindSpec(
        "bridge_vibration",
        ("桥梁振动", "Bridge vibration"),
        "bridge",
        ("bridge",),
        (MetricSpec(ACCEL_RMS, Normal(0.02, 0.005, 0.002), (Baseline(severity=ORG),)),),
    ),
    KindSpec(
        "tunnel_env",
        ("管廊环境", "Tunnel environment"),
        "tunnel",
        ("utility_tunnel",),
        (
            MetricSpec(
                O2,
                Normal(20.9, sd=0.04),
                (
                    levels((19.5, ORG), direction="below", hysteresis=0.3),
                    levels((23.5, ORG), hysteresis=0.3),
                ),
                flat=(30, 60),
            ),
            MetricSpec(H2S, Normal(0.4, sd=0.1), (levels((10, ORG), (20, RED), hysteresis=1),)),
            MetricSpec(CH4, Normal(0.3, sd=0.1), (levels((20, ORG), (25, RED), hysteresis=2),)),
            MetricSpec(
                TEMPERATURE,
                Normal(22.0, 0.5, 0.1, -60.0),
                (levels((40, YEL), (50, ORG), hysteresis=2),),
            ),
            MetricSpec(HUMIDITY, Normal(65.0, 2.0, 0.5), (Baseline(),)),
            MetricSpec(SUMP_LEVEL, Normal(0.3, sd=0.005, floor=-10.0), (Baseline(),)),
        ),
        "GB 50838-2015: CH4 20/25 %LEL, O2 19.5-23.5 %vol, H2S 10 ppm, 40 °C",
        joint=True,
    ),
    KindSpec(
        "heat_network",
        ("供热管网", "Heating network"),
        "heating",
        ("heating_pipe",),
        (
            MetricSpec(SUPPLY_TEMP, Normal(85.0, 2.0, 0.3, -20.0)),
            MetricSpec(RETURN_TEMP, Normal(55.0, 2.0, 0.3, -20.0)),
            MetricSpec(
                PRESSURE,
                Normal(0.6, 0.01, 0.002),
                # The network's pressure follows the day's load: judged against its
                # daily profile; a leak's fall is the rate rule's.
                (Baseline(daily=True, severity=YEL), Rate(0.0005, ORG, "fall")),
            ),
            MetricSpec(FLOW, Normal(300.0, 30.0, 3.0)),
            # Make-up water over 2 % of the circulating flow: 300 m3/h → 6 m3/h by
            # default, per station in a rules file.
            MetricSpec(MAKEUP_FLOW, Normal(1.0, sd=0.05), (levels((6, ORG), hysteresis=1),)),
        ),
        "CJJ 34: make-up water over 2 % of the circulating flow",
        joint=True,
    ),
)

#: Kind name → its declaration.
KINDS: Mapping[str, KindSpec] = MappingProxyType({k.name: k for k in _SPECS})

# --- views other modules read -------------------------------------------------------------

#: Metric name → canonical unit.
METRIC_UNITS: Mapping[str, str] = MappingProxyType({q.name: q.unit for q in QUANTITIES.values()})
#: Physical ranges a metric can take at all.
PHYSICAL_RANGE: Mapping[str, tuple[float, float]] = MappingProxyType(
    {q.name: (q.low, q.high) for q in QUANTITIES.values()}
)
#: Sensor kind → the metrics it reports (open kinds: none fixed).
KIND_METRICS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {**{k.name: tuple(m.name for m in k.metrics) for k in _SPECS}, **dict.fromkeys(OPEN_KINDS, ())}
)
#: Asset classes of the CIM map that a sensor kind is placed on (nearest of these).
KIND_ASSET_CLASSES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {**{k.name: k.assets for k in _SPECS}, **dict.fromkeys(OPEN_KINDS, ())}
)
#: Kinds whose devices are also judged by a joint model of their metrics.
JOINT_KINDS: frozenset[str] = frozenset({k.name for k in _SPECS if k.joint} | {EQUIPMENT})
#: Which lifeline a sensor kind belongs to (the overview, the cockpit's lifeline views).
LIFELINE_OF_KIND: Mapping[str, str] = MappingProxyType({k.name: k.lifeline for k in _SPECS})
#: Every kind name, the open kinds included.
KIND_NAMES: frozenset[str] = frozenset(KIND_METRICS)


def _check() -> None:
    for spec in _SPECS:
        names = [m.name for m in spec.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"kind {spec.name} declares a metric twice")
        for m in spec.metrics:
            if QUANTITIES.get(m.name) is not m.quantity:
                raise ValueError(f"kind {spec.name}: {m.name} is not a catalogue quantity")


_check()
