"""How stored rows become the API's answers: an alert with its wording and allowed steps,
a series' points, the fixed levels a chart draws, and an incident's impact on the map."""

from __future__ import annotations

import math
from typing import Any

from cockpit_api.layers import LayerCache
from lifeline import wording
from lifeline.alerts import ACTIONS
from lifeline.vocabulary import IncidentType, Severity
from store.queries import Point


def alert(row: dict[str, Any], lang: wording.Lang = "zh") -> dict[str, Any]:
    """An alert row as the API answers it (``models.Alert``)."""
    out = dict(row)
    out["changes"] = int(out.get("changes") or 0)
    sev = Severity(out["severity"])
    out["severity_level"] = sev.roman
    itype = IncidentType(out["type"])
    cells, assets = out.get("grid_cells") or (), out.get("asset_ids") or ()
    out["title"] = wording.title(itype, out["incident_id"], cells, assets, lang)
    out["description"] = wording.description(
        itype, sev, out["alert_status"], out.get("incident_status") or "open", cells, assets, lang
    )
    out["language"] = lang
    out["actions"] = [a.name for a in ACTIONS.values() if out["alert_status"] in a.allowed_from]
    return out


def points(found: list[Point]) -> list[dict[str, Any]]:
    return [
        {"t": p.bucket, "min": p.min, "max": p.max, "avg": p.avg, "last": p.last, "count": p.count}
        for p in found
    ]


def levels(kind: str | None, metric: str) -> list[dict[str, Any]]:
    """The fixed levels of the default rules of ``kind``'s ``metric`` (a chart draws them
    as bands); empty for a series watched by the adaptive baseline."""
    from lifeline.detect.detectors import Levels, Sustained
    from lifeline.detect.rules import defaults_for

    if kind is None:
        return []
    out = []
    for det in defaults_for(kind, metric):
        if isinstance(det, Levels):
            out += [
                {
                    "threshold": lv.threshold,
                    "severity": lv.severity.value,
                    "direction": det.direction,
                }
                for lv in det.levels
            ]
        elif isinstance(det, Sustained):
            out.append(
                {"threshold": det.limit, "severity": det.severity.value, "direction": det.direction}
            )
    return out


def impact(row: dict[str, Any], layers: LayerCache) -> dict[str, Any] | None:
    """The incident's impact (zone, isolated segments, valves to close, affected POIs and
    cells) as GeoJSON, or None without a position or a grid."""
    if row["lon"] is None or row["lat"] is None:
        return None
    from geo.impact import assess

    city = layers.get(row["city"])
    grid, pois = city.frame("grid"), city.frame("pois")
    if grid.empty:
        return None
    network = pipes = segment = None
    for asset in row["asset_ids"]:
        found = city.network_of(asset)
        if found is not None:
            network, pipes = found
            segment = asset
            break
    assessed = assess(
        row["lon"],
        row["lat"],
        IncidentType(row["type"]),
        Severity(row["severity"]),
        grid=grid,
        pois=pois if not pois.empty else pois.assign(kind=[], name=[]),
        network=network,
        pipes=pipes,
        segment_id=segment,
    )
    out = assessed.to_geojson()
    _locate(out, row["lon"], row["lat"], city.frame("valves"))
    return out


def _locate(found: dict[str, Any], lon: float, lat: float, valves: Any) -> None:
    """Add to an impact the valves to close as points, and each affected POI's distance
    (metres, great circle) from the incident."""
    import shapely

    def metres(x: float, y: float) -> float:
        p1, p2 = math.radians(lat), math.radians(y)
        dp, dl = p2 - p1, math.radians(x - lon)
        h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
        return 2 * 6_371_008.8 * math.asin(math.sqrt(h))

    for f in found["features"]:
        if f["properties"].get("role") == "affected_poi":
            pt = shapely.geometry.shape(f["geometry"]).representative_point()
            f["properties"]["distance_m"] = round(metres(pt.x, pt.y))
    wanted = set(found["properties"].get("valves_to_close") or ())
    if wanted and not valves.empty:
        for _, v in valves[valves["asset_id"].isin(wanted)].iterrows():
            found["features"].append(
                {
                    "type": "Feature",
                    "geometry": shapely.geometry.mapping(v.geometry),
                    "properties": {
                        "role": "valve_to_close",
                        "asset_id": v["asset_id"],
                        "network": v.get("network"),
                        "distance_m": round(metres(v.geometry.x, v.geometry.y)),
                    },
                }
            )
