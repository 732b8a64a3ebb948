"""Onboarding files: validated whole, errors name the row and the field."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from geo.chinese import wgs84_to_gcj02
from ingest.onboarding import OnboardingError, export_credentials, hashed, plan
from lifeline.units import UnitError, to_canonical

CAMERA = "32010000081320000001"


def refused(tmp_path: Path, rows: list[dict[str, Any]], **kw: Any) -> tuple[str, Exception]:
    """The problems ``plan`` refuses ``rows`` with, one per line, and its error."""
    with pytest.raises(OnboardingError) as err:
        plan(write_csv(tmp_path / "d.csv", rows), "320100", **kw)
    return "\n".join(err.value.problems), err.value


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    fields = [
        "device_id",
        "kind",
        "lon",
        "lat",
        "metrics",
        "asset_id",
        "owner_dept",
        "vendor",
        "transport",
        "source",
        "platform_id",
        "index_code",
        "imei",
    ]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in fields})
    return path


def good_rows() -> list[dict[str, object]]:
    return [
        {
            "device_id": "gw-1",
            "kind": "gas_well",
            "lon": 118.78,
            "lat": 32.04,
            "owner_dept": "gas group",
        },
        {
            "device_id": "tn-1",
            "kind": "tunnel_env",
            "lon": 118.79,
            "lat": 32.05,
            "metrics": "o2:%vol;h2s:ppm",
            "owner_dept": "tunnel co",
        },
        {
            "device_id": CAMERA,
            "kind": "camera",
            "lon": 118.80,
            "lat": 32.06,
            "owner_dept": "city management",
        },
    ]


def test_valid_csv_becomes_devices_with_default_metrics(tmp_path: Path) -> None:
    result = plan(write_csv(tmp_path / "d.csv", good_rows()), "320100")
    by_id = {d.device_id: d for d in result.devices}
    assert by_id["gw-1"].metrics == {"ch4": "%LEL"}
    assert by_id["tn-1"].metrics == {"o2": "%vol", "h2s": "ppm"}
    assert by_id[CAMERA].family == "cameras"
    assert set(result.new_credentials) == {"gw-1", "tn-1", CAMERA}
    assert result.new_credentials["gw-1"][0] == "320100.gw-1"


def test_pushed_devices_name_their_source_and_get_no_mqtt_account(tmp_path: Path) -> None:
    rows = [
        *good_rows(),
        {
            "device_id": "nb-1",
            "kind": "gas_well",
            "lon": 118.77,
            "lat": 32.03,
            "owner_dept": "gas group",
            "transport": "HTTP",
            "source": "ctwing",
        },
    ]
    result = plan(write_csv(tmp_path / "d.csv", rows), "320100", sources={"ctwing"})
    by_id = {d.device_id: d for d in result.devices}
    assert (by_id["nb-1"].transport, by_id["nb-1"].source) == ("http", "ctwing")
    assert (by_id["gw-1"].transport, by_id["gw-1"].source) == ("mqtt", None)
    assert set(result.new_credentials) == {"gw-1", "tn-1", CAMERA}


def test_push_columns_are_checked_with_the_citys_sources(tmp_path: Path) -> None:
    base = {"kind": "gas_well", "lon": 118.77, "lat": 32.03, "owner_dept": "gas"}
    rows = [
        {**base, "device_id": "a", "transport": "http"},
        {**base, "device_id": "b", "transport": "http", "source": "onenet"},
        {**base, "device_id": "c", "transport": "coap"},
        {**base, "device_id": "d", "source": "ctwing"},
        {**base, "device_id": CAMERA, "kind": "camera", "transport": "http", "source": "ctwing"},
    ]
    text, _ = refused(tmp_path, rows, sources={"ctwing"})
    assert "row 1 (a): source: an http device names the push source" in text
    assert "row 2 (b): source: city 320100 has no push source 'onenet'" in text
    assert "cityops push source create --city 320100 onenet" in text
    assert "row 3 (c): transport: 'coap' is not mqtt or http" in text
    assert "row 4 (d): source: only http devices have a push source" in text
    assert f"row 5 ({CAMERA}): index_code: a camera pushed by a video platform needs" in text


def test_cameras_pushed_by_a_video_platform_are_found_by_their_index_code(
    tmp_path: Path,
) -> None:
    base = {"kind": "camera", "lon": 118.77, "lat": 32.03, "owner_dept": "city management"}
    rows = [
        {**base, "device_id": CAMERA, "transport": "http", "source": "isc", "index_code": "a1b2"},
        {
            **base,
            "device_id": CAMERA[:-1] + "9",
            "transport": "http",
            "source": "cams",
            "platform_id": "a6:63:9e:f8:01:09/33",
        },
    ]
    result = plan(write_csv(tmp_path / "d.csv", rows), "320100", sources={"isc", "cams"})
    pushed = {d.device_id: (d.family, d.source, d.platform_id) for d in result.devices}
    assert pushed == {
        CAMERA: ("cameras", "isc", "a1b2"),
        CAMERA[:-1] + "9": ("cameras", "cams", "a6:63:9e:f8:01:09/33"),
    }
    assert result.new_credentials == {}  # pushed: no MQTT account
    wrong = [
        {
            **base,
            "device_id": CAMERA,
            "transport": "http",
            "source": "isc",
            "index_code": "a",
            "platform_id": "b",
        },
        {
            "kind": "gas_well",
            "lon": 118.77,
            "lat": 32.03,
            "owner_dept": "gas",
            "device_id": "w",
            "transport": "http",
            "source": "isc",
            "index_code": "x",
        },
    ]
    text, _ = refused(tmp_path, wrong, sources={"isc"})
    assert "index_code: differs from platform_id" in text
    assert "row 2 (w): index_code: only cameras" in text


def test_platform_ids_and_imeis_are_kept_and_checked(tmp_path: Path) -> None:
    base = {
        "kind": "gas_well",
        "lon": 118.77,
        "lat": 32.03,
        "owner_dept": "gas",
        "transport": "http",
        "source": "ctwing",
    }
    good = [
        {**base, "device_id": "nb-1", "platform_id": "40edca19b0124480", "imei": "862592051651472"},
        {**base, "device_id": "nb-2", "imei": "490154203237518"},
    ]
    result = plan(write_csv(tmp_path / "d.csv", good), "320100", sources={"ctwing"})
    by_id = {d.device_id: d for d in result.devices}
    assert (by_id["nb-1"].platform_id, by_id["nb-1"].imei) == (
        "40edca19b0124480",
        "862592051651472",
    )
    assert (by_id["nb-2"].platform_id, by_id["nb-2"].imei) == (None, "490154203237518")
    bad = [
        *good,
        {**base, "device_id": "nb-3", "imei": "490154203237519"},
        {**base, "device_id": "nb-4", "imei": "86259205165147"},
        {**base, "device_id": "nb-5", "imei": "862592051651472"},
        {**base, "device_id": "nb-6", "platform_id": "40edca19b0124480"},
        {**base, "device_id": "nb-7", "platform_id": "has space"},
        {**base, "device_id": "gw-8", "transport": "mqtt", "source": "", "platform_id": "x1"},
    ]
    text, _ = refused(tmp_path, bad, sources={"ctwing"})
    assert "row 3 (nb-3): imei: '490154203237519' is not a 15-digit IMEI" in text
    assert "row 4 (nb-4): imei: '86259205165147' is not a 15-digit IMEI" in text
    assert "row 5 (nb-5): imei: 862592051651472 is also on row 1" in text
    assert "row 6 (nb-6): platform_id: 40edca19b0124480 of source ctwing is also on row 1" in text
    assert "row 7 (nb-7): platform_id: use 1-64 letters" in text
    assert "row 8 (gw-8): platform_id: only devices pushed by a platform" in text


def test_every_problem_is_reported_with_row_and_field(tmp_path: Path) -> None:
    well = {"device_id": "gw-1", "kind": "gas_well", "lon": 118.7, "lat": 32.0, "owner_dept": "x"}
    in_paris = {**well, "device_id": "w-2", "kind": "water_flow", "lon": 2.35, "lat": 48.85}
    rows = [
        *good_rows(),
        well,
        {"device_id": "bad id", "kind": "volcano", "lon": "east", "lat": 32.0},
        {"device_id": "12345", "kind": "camera", "lon": 118.7, "lat": 32.0, "owner_dept": "x"},
        {**in_paris, "metrics": "flow:furlongs"},
        {**well, "device_id": "g-3", "vendor": "nobody"},
    ]
    text, error = refused(tmp_path, rows, vendors={"acme-lora"})
    assert "row 4 (gw-1): device_id: duplicate of row 1" in text
    assert "row 5 (bad id): device_id:" in text
    assert "row 5 (bad id): kind: 'volcano'" in text
    assert "row 5 (bad id): lon/lat: missing or not numbers" in text
    assert "row 5 (bad id): owner_dept: missing" in text
    assert "row 6 (12345): device_id: a camera needs a 20-digit GB/T 28181 id" in text
    assert "row 7 (w-2): metrics: unit 'furlongs' cannot be converted" in text
    assert "row 7 (w-2): lon/lat: (2.35, 48.85) is not a position in China" in text
    assert "row 8 (g-3): vendor: no mapping named 'nobody'" in text
    assert "nothing was imported" in str(error)


def test_geojson_in_gcj02_is_converted_to_wgs84(tmp_path: Path) -> None:
    lon, lat = wgs84_to_gcj02(118.78, 32.04)
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [float(lon), float(lat)]},
                "properties": {"device_id": "gw-9", "kind": "gas_well", "owner_dept": "gas group"},
            },
        ],
    }
    path = tmp_path / "d.geojson"
    path.write_text(json.dumps(collection))
    [dev] = plan(path, "320100", crs="GCJ-02").devices
    assert dev.lon == pytest.approx(118.78, abs=1e-9)
    assert dev.lat == pytest.approx(32.04, abs=1e-9)


def test_known_devices_keep_their_credentials_unless_rotated(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", good_rows())
    assert set(plan(path, "320100", existing={"gw-1"}).new_credentials) == {"tn-1", CAMERA}
    assert "gw-1" in plan(path, "320100", existing={"gw-1"}, rotate=True).new_credentials


def test_credentials_export_is_private_and_names_the_topics(tmp_path: Path) -> None:
    result = plan(write_csv(tmp_path / "d.csv", good_rows()), "320100")
    out = tmp_path / "creds.csv"
    assert export_credentials(result, out) == 3
    assert oct(out.stat().st_mode)[-3:] == "600"
    with out.open() as fh:
        rows = {r["device_id"]: r for r in csv.DictReader(fh)}
    assert rows["gw-1"]["publish_topic"] == "cityops/320100/sensors/gw-1/up"
    assert rows[CAMERA]["publish_topic"] == f"cityops/320100/cameras/{CAMERA}/event"
    hashes = hashed(result)
    assert hashes["gw-1"][1].startswith("$7$")
    assert rows["gw-1"]["mqtt_password"] not in hashes["gw-1"][1]


def test_empty_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OnboardingError, match="no devices"):
        plan(write_csv(tmp_path / "d.csv", []), "320100")
    bad = tmp_path / "d.geojson"
    bad.write_text("{")
    with pytest.raises(OnboardingError, match="not readable GeoJSON"):
        plan(bad, "320100")
    with pytest.raises(OnboardingError, match="6-digit"):
        plan(write_csv(tmp_path / "e.csv", good_rows()), "3201")


@pytest.mark.parametrize(
    ("metric", "value", "unit", "expected"),
    [
        ("ch4", 5.0, "%vol", (100.0, "%LEL")),
        ("pressure", 350.0, "kPa", (0.35, "MPa")),
        ("depth", 150.0, "mm", (15.0, "cm")),
        ("temperature", 212.0, "°F", (100.0, "°C")),
        ("flow", 1.0, "L/s", (3.6, "m3/h")),
    ],
)
def test_units_convert_to_the_canonical_unit(
    metric: str, value: float, unit: str, expected: tuple[float, str]
) -> None:
    got = to_canonical(metric, value, unit)
    assert got[0] == pytest.approx(expected[0])
    assert got[1] == expected[1]


def test_unconvertible_unit_names_the_known_ones() -> None:
    with pytest.raises(UnitError, match=r"known units: .*kPa"):
        to_canonical("pressure", 1.0, "psi-ish")
