"""The web cockpit in headless Chromium (Debian's, driven by Playwright): an incident that
arrives through Kafka and the sink appears live and is acknowledged from the page."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cityops.settings import Settings
from cockpit_api.app import ApiConfig
from lifeline.vocabulary import IncidentType, Severity
from store.layers import store_layer
from tests.integration.api_support import (
    Server,
    incident,
    incidents_through_sink,
    key,
    random_city,
    serve,
)

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing: `apt-get install chromium` (make test does)")
    return CHROMIUM


@pytest.fixture(scope="module")
def server(db_dsn: str, live_stack: Settings) -> Iterator[Server]:
    with serve(ApiConfig(dsn=db_dsn, kafka_bootstrap=live_stack.kafka_bootstrap)) as s:
        yield s


def _cell(
    code: str, x: float, y: float
) -> tuple[str, dict[str, object], dict[str, object], tuple[float, ...]]:
    ring = [[x, y], [x + 0.01, y], [x + 0.01, y + 0.01], [x, y + 0.01], [x, y]]
    return code, {"type": "Polygon", "coordinates": [ring]}, {}, (x, y, x + 0.01, y + 0.01)


@pytest.mark.asyncio
async def test_live_incident_appears_and_is_acknowledged_from_the_page(
    server: Server, db_dsn: str, live_stack: Settings, chromium: str, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    city = random_city()
    token = key(db_dsn, "dispatcher", [city], "Duty officer Li")
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        store_layer(
            conn,
            city,
            "grid",
            [_cell(f"{city}00100100{i}", 118.70 + 0.01 * i, 32.0) for i in range(1, 4)],
        )
    async with (
        incidents_through_sink(live_stack.kafka_bootstrap, db_dsn, "ui") as produce,
        async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            await page.goto(server.url)
            await page.fill("#key", "cok_wrong.key")
            await page.click("#login-form button")
            await page.wait_for_selector("#login-error:has-text('密钥无效')")
            await page.fill("#key", token)
            await page.click("#login-form button")
            await page.wait_for_selector("#cockpit:not([hidden])")
            await page.wait_for_selector("#live.on", timeout=15_000)
            assert await page.locator("#map path.cell").count() == 3

            inc = incident(city, IncidentType.GAS_LEAK, Severity.RED, lon=118.715, lat=32.005)
            await produce(inc)
            row = page.locator(f'#alerts li[data-id="{inc.incident_id}"]')
            await row.wait_for(timeout=30_000)
            assert "sev-red" in (await row.get_attribute("class") or "")
            assert "燃气泄漏" in await row.inner_text()
            await page.wait_for_selector(f'#map circle.incident[data-id="{inc.incident_id}"]')
            await page.wait_for_selector('.kpi[data-kpi="red"] b:text-is("1")')

            await row.click()
            await page.wait_for_selector("#panel:not([hidden]) [data-action='acknowledge']")
            await page.fill("#note", "确认 已通知燃气集团")
            await page.click("#panel [data-action='acknowledge']")
            await page.wait_for_selector(
                f'#alerts li[data-id="{inc.incident_id}"][data-status="acknowledged"]',
                timeout=15_000,
            )
            await page.wait_for_selector("#panel [data-action='dispatch']")
            await page.click("#panel [data-action='false_alarm']")
            await page.wait_for_selector(
                f'#alerts li[data-id="{inc.incident_id}"]', state="detached", timeout=15_000
            )

            await page.click("#lang")
            await page.wait_for_selector("h1:has-text('City Lifeline Operations Cockpit')")
            await page.screenshot(path=str(tmp_path / "cockpit.png"))
        finally:
            await browser.close()
    assert errors == []
    with psycopg.connect(db_dsn) as conn:
        trail = conn.execute(
            "SELECT to_status, actor, note FROM alert_audit WHERE alert_id = %s ORDER BY id",
            (inc.incident_id,),
        ).fetchall()
    assert [t[0] for t in trail] == ["new", "acknowledged", "false_alarm"]
    assert "Duty officer Li" in trail[1][1]
    assert trail[1][2] == "确认 已通知燃气集团"
