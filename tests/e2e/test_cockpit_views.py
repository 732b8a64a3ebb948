"""The cockpit's views in Debian's headless Chromium (with CJK fonts): a pipe burst's
readings charted with the rule's levels, its valves to close on the map and in the
panel, a device's series over the ranges, the lifelines and the 24-hour timeline, the
wall at 1920x1080 with nothing overflowing, both languages, and no console error or
failed request on any page. Screenshots of every view are kept in the test's temporary
directory."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import shapely
from pydantic import SecretStr

from cityops.cim import load_layers
from cityops.settings import Settings
from cockpit_api.app import ApiConfig
from geo.network import PipeNetwork
from lifeline.devices import Device
from lifeline.records import Anomaly, Evidence, Reading
from lifeline.vocabulary import IncidentType, Severity
from simulators.city import build_city
from simulators.demo_city import write_demo_city
from store import rollups
from store.devices import upsert_devices
from store.events import upsert_anomalies
from store.readings import write_readings
from tests.e2e.test_cockpit_browser import CHROMIUM_ARGS
from tests.integration.api_support import Server, key, serve, store_incidents

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"


@dataclass
class Burst:
    city: str
    incident_id: str
    device: str
    valves: tuple[str, ...]
    token: str
    #: a camera of iSecure Center that reports events only, with two of them
    camera: str = ""


@pytest.fixture(scope="module")
def server(db_dsn: str, live_stack: Settings) -> Iterator[Server]:
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing: `apt-get install chromium` (make test does)")
    with serve(ApiConfig(dsn=db_dsn, kafka_bootstrap=live_stack.kafka_bootstrap)) as s:
        yield s


@pytest.fixture(scope="module")
def burst(db_dsn: str, live_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Burst:
    """A demo city with its layers and valves, a district pressure gauge whose readings
    fell by half 15 minutes ago, its anomaly and the pipe-burst incident on its main."""
    city = f"3201{90 + secrets.randbelow(10)}"
    folder = tmp_path_factory.mktemp("city")
    files = write_demo_city(folder, code=city)
    settings = live_stack.model_copy(update={"db_dsn": SecretStr(db_dsn)})
    load_layers(
        settings,
        city,
        files.layers(),
        lambda _m: None,
    )
    layers = build_city(county="320102", blocks=3)
    water = layers.pipes[layers.pipes["network"] == "water"]
    network = PipeNetwork(water, layers.valves[layers.valves["network"] == "water"])
    segment, valves = next(
        (str(seg), network.isolate(str(seg)).valve_ids)
        for seg in water["asset_id"]
        if network.isolate(str(seg)).valve_ids
    )
    pipe = water[water["asset_id"] == segment].geometry.iloc[0]
    spot = pipe.interpolate(0.5, normalized=True)
    # Mains run along the streets between cells: the nearest cell is the gauge's.
    nearest = int(np.argmin(shapely.distance(layers.grid.geometry.to_numpy(), spot)))
    cell = str(layers.grid["code"].iloc[nearest])
    device = "wat-burst-1"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    started = now - timedelta(minutes=15)
    rng = np.random.default_rng(3)
    readings = [
        Reading(
            city=city,
            device_id=device,
            ts=now - timedelta(minutes=m),
            metric="pressure",
            value=round((0.16 if m <= 15 else 0.32) + float(rng.normal(0, 0.002)), 4),
            unit="MPa",
        )
        for m in range(120, 0, -1)
    ]
    anomaly = Anomaly(
        anomaly_id=f"{city}:{device}:pressure:{int(started.timestamp())}",
        city=city,
        kind="pressure_sustained",
        device_id=device,
        asset_id=segment,
        grid_cell=cell,
        lon=spot.x,
        lat=spot.y,
        ts=started + timedelta(minutes=5),
        detector="sustained",
        severity=Severity.ORANGE,
        evidence=(
            Evidence(
                device_id=device,
                metric="pressure",
                value=readings[-11].value,
                unit="MPa",
                ts=readings[-11].ts,
            ),
        ),
        message="pressure below 0.14 MPa for 5 min",
    )
    from lifeline.records import Incident

    inc = Incident(
        incident_id=f"{city}:{cell}:pipe_burst:{int(started.timestamp())}",
        revision=1,
        city=city,
        type=IncidentType.PIPE_BURST,
        severity=Severity.ORANGE,
        title="pipe burst",
        anomaly_ids=(anomaly.anomaly_id,),
        asset_ids=(segment,),
        grid_cells=(cell,),
        lon=spot.x,
        lat=spot.y,
        started_at=started,
        updated_at=anomaly.ts,
    )
    camera = f"{city}0008132{1:07d}"
    seen_smoke = Anomaly(
        anomaly_id=f"{city}:{camera}:smoke_fire:1",
        city=city,
        kind="video_smoke_fire",
        camera_id=camera,
        grid_cell=cell,
        ts=started - timedelta(minutes=20),
        detector="video",
        severity=Severity.ORANGE,
        message="烟雾检测 (Hikvision iSecure Center 192513)",
        pictures=("http://isc.invalid/pic/1.jpg",),
    )
    unmapped = seen_smoke.model_copy(
        update={
            "anomaly_id": f"{city}:{camera}:unmapped:2",
            "kind": "video_unmapped",
            "ts": started - timedelta(minutes=10),
            "severity": Severity.BLUE,
            "message": f"Hikvision iSecure Center event 930999: not in city {city}'s table",
            "pictures": (),
        }
    )
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        upsert_devices(
            conn,
            [
                Device(
                    city=city,
                    device_id=device,
                    family="sensors",
                    kind="water_pressure",
                    metrics={"pressure": "MPa"},
                    owner_dept="water",
                    lon=spot.x,
                    lat=spot.y,
                    asset_id=segment,
                    grid_code=cell,
                ),
                Device(
                    city=city,
                    device_id=camera,
                    family="cameras",
                    kind="camera",
                    owner_dept="city management",
                    lon=spot.x,
                    lat=spot.y,
                    grid_code=cell,
                    transport="http",
                    source="isc",
                    platform_id="4c777ca96a1c4eb997ab89caf34f3044",
                ),
            ],
            {device: (f"{city}.{device}", ""), camera: (f"{city}.{camera}", "")},
        )
        write_readings(conn, readings)
        rollups.refresh(conn, timedelta(0))
        upsert_anomalies(conn, [anomaly, seen_smoke, unmapped])
    store_incidents(db_dsn, [inc])
    return Burst(city, inc.incident_id, device, valves, key(db_dsn, "dispatcher", [city]), camera)


class Watch:
    """Console errors, page errors and failed requests of every page it watches."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def on(self, page: Any, name: str) -> Any:
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"{name} console {m.type}: {m.text}")
                if m.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(f"{name} page error: {e}"))
        page.on(
            "response",
            lambda r: (
                self.problems.append(f"{name} {r.status} {r.url}") if r.status >= 400 else None
            ),
        )
        return page


async def _sign_in(page: Any, url: str, token: str) -> None:
    await page.goto(url)
    await page.fill("#key", token)
    await page.click("#login-form button")
    await page.wait_for_selector("#cockpit:not([hidden])")


async def _option(page: Any, selector: str) -> dict[str, Any]:
    option: dict[str, Any] = await page.evaluate(
        "(sel) => echarts.getInstanceByDom(document.querySelector(sel)).getOption()", selector
    )
    return option


@pytest.mark.asyncio
async def test_the_cockpit_views_in_a_real_browser(
    server: Server, burst: Burst, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    watch = Watch()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = watch.on(
                await browser.new_page(viewport={"width": 1600, "height": 1000}), "desk"
            )
            await page.add_init_script("localStorage.setItem('cityops.lang', 'zh')")
            await _sign_in(page, server.url, burst.token)
            row = page.locator(f'#alerts li[data-id="{burst.incident_id}"]')
            await row.wait_for()
            # Chinese throughout: the type, and the title the API words in Chinese.
            assert "供水爆管" in await row.inner_text()
            assert "网格" in await row.inner_text()
            await page.screenshot(path=str(shots / "overview.png"))

            # The incident: its readings with the rule's levels as bands, the anomaly
            # marked; the map moved to it with the zone and the valves to close.
            before = await page.get_attribute("#map g[data-layer=grid] path", "d")
            await row.click()
            chart = f'#panel-charts .chart[data-device="{burst.device}"]'
            await page.wait_for_selector(f"{chart} canvas")
            option = await _option(page, chart)
            avg = next(s for s in option["series"] if s["name"] == "avg")
            assert len(avg["data"]) >= 40  # 30 min before the start to now
            assert min(v for _t, v in avg["data"]) < 0.2 < max(v for _t, v in avg["data"])
            bands = avg["markArea"]["data"]
            assert [b[0]["yAxis"] for b in bands] == [0.14]
            assert len(avg["markPoint"]["data"]) == 1
            await page.wait_for_selector("#map path.zone")
            drawn = await page.locator("#map .valve-close").evaluate_all(
                "els => els.map(e => e.dataset.valve)"
            )
            assert sorted(drawn) == sorted(burst.valves)
            listed = await page.locator("#impact-valves li").evaluate_all(
                "els => els.map(e => e.dataset.valve)"
            )
            assert sorted(listed) == sorted(burst.valves)
            assert await page.locator("#impact-pois li").count() >= 1
            after = await page.get_attribute("#map g[data-layer=grid] path", "d")
            assert after != before, "the map did not move to the incident"
            spot = await page.locator("#map circle.incident.selected").bounding_box()
            frame = await page.locator("#map").bounding_box()
            assert spot is not None
            assert frame is not None
            assert frame["x"] < spot["x"] < frame["x"] + frame["width"]
            assert frame["y"] < spot["y"] < frame["y"] + frame["height"]
            assert "供水爆管" in await page.inner_text("#panel-title")
            assert "橙色" in await page.inner_text("#panel-desc")
            await page.screenshot(path=str(shots / "incident.png"))

            # A device's series from the device list, over 6 h and then 7 d.
            await page.click("#tabs [data-view=devices]")
            await page.select_option("#f-lifeline", "water")
            device_row = page.locator(f'#devices tr[data-device="{burst.device}"]')
            await device_row.wait_for()
            # the city's camera is listed until the lifeline's page has come
            await page.wait_for_function(
                "() => document.querySelector('#device-count').textContent.startsWith('1 ')"
            )
            assert await page.locator("#devices tbody tr").count() == 1
            assert (await page.inner_text("#device-count")).startswith("1 台设备")
            assert await page.is_disabled("#dev-next")
            assert "供水压力" in await device_row.inner_text()  # named by the catalogue
            # Found by the start of its id, and nothing for an id no device has.
            await page.fill("#f-q", "no-such-device")
            await page.wait_for_function(
                "() => document.querySelector('#device-count').textContent.startsWith('0 ')"
            )
            assert await page.locator("#devices tbody tr").count() == 0
            await page.fill("#f-q", burst.device[:-1].lower())
            await device_row.wait_for()
            await device_row.click()
            await page.wait_for_selector("#device-chart canvas")
            await page.click("#d-ranges [data-range='6']")
            await page.wait_for_function(
                "() => +document.querySelector('#device-chart').dataset.points >= 100"
            )
            option = await _option(page, "#device-chart")
            avg = next(s for s in option["series"] if s["name"] == "avg")
            assert len(avg["data"]) >= 100
            await page.click("#d-ranges [data-range='168']")
            await page.wait_for_selector("#d-ranges [data-range='168'].on")
            await page.screenshot(path=str(shots / "device.png"))

            # A camera that reports events only: not offline, and its view lists its
            # latest events (an unmapped one too) with their pictures, not a chart.
            await page.fill("#f-q", "")
            await page.select_option("#f-lifeline", "public_safety")
            camera_row = page.locator(f'#devices tr[data-device="{burst.camera}"]')
            await camera_row.wait_for()
            assert "仅事件上报" in await camera_row.inner_text()
            assert "离线" not in await camera_row.inner_text()
            await camera_row.click()
            events = page.locator("#camera-events tbody tr")
            await page.wait_for_function(
                "() => document.querySelectorAll('#camera-events tbody tr').length === 2"
            )
            assert await page.is_hidden("#device-chart")
            newest, older = await events.all_inner_texts()
            assert "未映射事件" in newest
            assert "930999" in newest
            assert "烟火" in older
            link = page.locator("#camera-events tbody tr:nth-child(2) a")
            assert await link.get_attribute("href") == "http://isc.invalid/pic/1.jpg"
            await page.screenshot(path=str(shots / "camera.png"))

            # The lifelines and the 24-hour timeline of incidents.
            await page.click("#tabs [data-view=lifelines]")
            card = page.locator('#lifelines .lifeline[data-lifeline="water"]')
            await card.wait_for()
            assert "1" in await card.inner_text()
            await page.wait_for_selector("#timeline canvas")
            option = await _option(page, "#timeline")
            assert sum(sum(s["data"]) for s in option["series"]) >= 1
            await page.screenshot(path=str(shots / "lifelines.png"))

            # English: the page, the titles the API words, the charts.
            await page.click("#tabs [data-view=overview]")
            await page.click("#lang")
            await page.wait_for_selector("h1:has-text('City Lifeline Operations Cockpit')")
            await page.wait_for_selector(
                f'#alerts li[data-id="{burst.incident_id}"]:has-text("Water main burst in cell")'
            )
            await page.screenshot(path=str(shots / "english.png"))

            # The wall: 1920x1080, nothing overflowing, live.
            wall = watch.on(
                await browser.new_page(viewport={"width": 1920, "height": 1080}), "wall"
            )
            await wall.add_init_script("localStorage.setItem('cityops.lang', 'zh')")
            await _sign_in(wall, f"{server.url}/?screen=wall", burst.token)
            await wall.wait_for_selector("#live.on")
            await wall.wait_for_selector("#trend canvas")
            await wall.wait_for_selector(f'#map circle.incident[data-id="{burst.incident_id}"]')
            await wall.wait_for_selector('#lifeline-status .lifeline[data-lifeline="water"]')
            overflow = await wall.evaluate(
                """() => {
                  const out = [];
                  const d = document.documentElement;
                  if (d.scrollWidth > innerWidth || d.scrollHeight > innerHeight)
                    out.push(`page ${d.scrollWidth}x${d.scrollHeight}`);
                  for (const sel of ['#kpis', '#map-wrap', '#lifeline-status', '#alerts-wrap',
                                     '#trend-wrap', 'header']) {
                    const r = document.querySelector(sel).getBoundingClientRect();
                    if (r.width === 0 || r.height === 0) out.push(`${sel} not shown`);
                    if (r.right > innerWidth + 0.5 || r.bottom > innerHeight + 0.5)
                      out.push(`${sel} ends at ${r.right}x${r.bottom}`);
                  }
                  for (const el of document.querySelectorAll('.kpi, .lifeline'))
                    if (el.scrollWidth > el.clientWidth + 1) out.push(`${el.className} clipped`);
                  return out;
                }"""
            )
            assert overflow == []
            assert await wall.locator("#panel").is_hidden()
            await wall.screenshot(path=str(shots / "wall.png"))
        finally:
            await browser.close()
    assert watch.problems == []
    assert {p.name for p in shots.iterdir()} == {
        "overview.png",
        "incident.png",
        "device.png",
        "camera.png",
        "lifelines.png",
        "english.png",
        "wall.png",
    }
