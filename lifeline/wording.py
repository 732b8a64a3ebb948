"""How incidents are worded for people, in Chinese (the default) and English, from one
vocabulary: event names, severity names, the place, titles, descriptions and the
instructions of CAP messages and the cockpit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from lifeline.vocabulary import IncidentType, Severity

Lang = Literal["zh", "en"]

#: incident type → (English, Chinese) event name
EVENT_NAMES: dict[IncidentType, tuple[str, str]] = {
    IncidentType.GAS_LEAK: ("Gas leak", "燃气泄漏"),
    IncidentType.GAS_PRESSURE: ("Gas pressure abnormal", "燃气压力异常"),
    IncidentType.PIPE_BURST: ("Water main burst", "供水爆管"),
    IncidentType.WATER_LEAK: ("Water leak", "供水漏损"),
    IncidentType.LOW_PRESSURE: ("Low water pressure", "供水低压"),
    IncidentType.WATERLOGGING: ("Waterlogging", "城市内涝"),
    IncidentType.UNDERPASS_FLOODING: ("Underpass flooding", "下穿通道积水"),
    IncidentType.MANHOLE_COVER: ("Manhole cover", "井盖异常"),
    IncidentType.BRIDGE_OVERLOAD: ("Bridge overload", "桥梁超限"),
    IncidentType.TUNNEL_HAZARD: ("Utility tunnel hazard", "综合管廊险情"),
    IncidentType.HEATING_LEAK: ("Heating leak", "供热泄漏"),
    IncidentType.FIRE: ("Smoke or fire", "烟火"),
    IncidentType.CROWD: ("Crowd density", "人员聚集"),
    IncidentType.CITY_MANAGEMENT: ("City management event", "城市管理事件"),
    IncidentType.SENSOR_FAULT: ("Sensor fault", "传感器故障"),
    IncidentType.DEVICE_OFFLINE: ("Device offline", "设备离线"),
}

SEVERITY_NAMES: dict[Severity, tuple[str, str]] = {
    Severity.RED: ("red (I)", "红色（I级）"),
    Severity.ORANGE: ("orange (II)", "橙色（II级）"),
    Severity.YELLOW: ("yellow (III)", "黄色（III级）"),
    Severity.BLUE: ("blue (IV)", "蓝色（IV级）"),
}

STATUS_NAMES: dict[str, tuple[str, str]] = {
    "new": ("new", "新告警"),
    "acknowledged": ("acknowledged", "已确认"),
    "dispatched": ("dispatched", "已调度"),
    "on_site": ("on site", "已到场"),
    "resolved": ("resolved", "已处置"),
    "closed": ("closed", "已归档"),
    "false_alarm": ("false alarm", "误报"),
    "open": ("open", "进行中"),
    "cleared": ("cleared", "已解除"),
}

#: incident type → (English, Chinese) instruction to responders
INSTRUCTIONS: dict[IncidentType, tuple[str, str]] = {
    IncidentType.GAS_LEAK: (
        "Keep clear of the area; no open flames or switches; gas company to isolate the "
        "main and ventilate wells.",
        "人员远离现场，严禁明火和开关电器；燃气公司关阀隔离并对窨井通风。",
    ),
    IncidentType.PIPE_BURST: (
        "Water company to isolate the section at the listed valves.",
        "供水企业按所列阀门关阀隔离爆管管段。",
    ),
    IncidentType.WATERLOGGING: (
        "Avoid the flooded road; drainage crews to clear inlets and pump.",
        "车辆行人绕行积水路段；排水抢险队清掏雨水口并抽排。",
    ),
    IncidentType.UNDERPASS_FLOODING: (
        "Close the underpass to traffic until the water recedes.",
        "积水消退前封闭下穿通道。",
    ),
    IncidentType.BRIDGE_OVERLOAD: (
        "Restrict heavy vehicles and inspect the bridge.",
        "限制重型车辆通行并对桥梁进行检查。",
    ),
    IncidentType.TUNNEL_HAZARD: (
        "No entry to the tunnel section; ventilate before inspection.",
        "禁止进入该管廊舱段，通风后再行巡检。",
    ),
    IncidentType.FIRE: ("Fire service to verify and respond.", "消防救援力量核实并处置。"),
}


def language(accept: str | None, asked: str | None = None) -> Lang:
    """``zh`` or ``en``: ``asked`` (a ``lang`` parameter) when given, else the first of
    ``Accept-Language`` the platform speaks by quality, else Chinese."""
    for tag in [asked] if asked else _by_quality(accept or ""):
        low = (tag or "").strip().lower()
        if low.startswith("zh"):
            return "zh"
        if low.startswith("en"):
            return "en"
    return "zh"


def _by_quality(header: str) -> list[str]:
    ranked = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag and q > 0:
            ranked.append((-q, i, tag))
    return [tag for _q, _i, tag in sorted(ranked)]


def _pick(pair: tuple[str, str], lang: Lang) -> str:
    return pair[1] if lang == "zh" else pair[0]


def event_name(itype: IncidentType, lang: Lang) -> str:
    return _pick(EVENT_NAMES[itype], lang)


def severity_name(severity: Severity, lang: Lang) -> str:
    return _pick(SEVERITY_NAMES[severity], lang)


def status_name(status: str, lang: Lang) -> str:
    return _pick(STATUS_NAMES.get(status, (status, status)), lang)


def place_of(
    incident_id: str, grid_cells: Sequence[str], asset_ids: Sequence[str]
) -> tuple[str, bool]:
    """(where, is a grid cell): the incident's cell, else its asset, else the place its
    id was correlated on."""
    if grid_cells:
        return grid_cells[0], True
    if asset_ids:
        return asset_ids[0], False
    parts = incident_id.split(":")
    return (parts[1] if len(parts) > 2 else incident_id), False


def title(
    itype: IncidentType,
    incident_id: str,
    grid_cells: Sequence[str],
    asset_ids: Sequence[str],
    lang: Lang,
) -> str:
    where, cell = place_of(incident_id, grid_cells, asset_ids)
    name = event_name(itype, lang)
    if lang == "zh":
        return f"{'网格' if cell else ''}{where}{name}"
    return f"{name} {'in cell' if cell else 'at'} {where}"


def description(
    itype: IncidentType,
    severity: Severity,
    alert_status: str,
    incident_status: str,
    grid_cells: Sequence[str],
    asset_ids: Sequence[str],
    lang: Lang,
) -> str:
    if lang == "zh":
        none = "无"
        return (
            f"{event_name(itype, 'zh')}，预警等级{severity_name(severity, 'zh')}；"
            f"告警状态：{status_name(alert_status, 'zh')}，"
            f"事件状态：{status_name(incident_status, 'zh')}；"
            f"涉及设施：{'、'.join(asset_ids) or none}；网格：{'、'.join(grid_cells) or none}。"
        )
    return (
        f"{event_name(itype, 'en')}, severity {severity_name(severity, 'en')}; alert "
        f"{status_name(alert_status, 'en')}, incident {status_name(incident_status, 'en')}; "
        f"assets: {', '.join(asset_ids) or 'none'}; grid cells: {', '.join(grid_cells) or 'none'}."
    )


def instruction(itype: IncidentType, lang: Lang) -> str | None:
    pair = INSTRUCTIONS.get(itype)
    return _pick(pair, lang) if pair else None
