"""The cockpit API on the real database and broker: auth, tenancy, lifecycle, CAP, feed,
webhooks, escalation and an OpenAPI-driven fuzz."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import psycopg
import pytest
import websockets
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from lxml import etree

from cityops.settings import Settings
from cockpit_api.app import ApiConfig
from lifeline import signature
from lifeline.vocabulary import IncidentType, Severity
from tests.integration.api_support import (
    Server,
    client,
    first_event,
    incident,
    incidents_through_sink,
    key,
    random_city,
    serve,
    store_incidents,
)

pytestmark = pytest.mark.integration

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"


@pytest.fixture(scope="module")
def cities() -> tuple[str, str]:
    a, b = random_city(), random_city()
    while b == a:
        b = random_city()
    return a, b


@pytest.fixture(scope="module")
def server(db_dsn: str, live_stack: Settings, cities: tuple[str, str]) -> Iterator[Server]:
    config = ApiConfig(
        dsn=db_dsn,
        kafka_bootstrap=live_stack.kafka_bootstrap,
        escalate_every_s=0.5,
        cities=cities,
        webhook_allow=("127.0.0.1",),  # the tests' receivers
    )
    with serve(config) as s:
        yield s


@pytest.fixture(scope="module")
def keys(db_dsn: str, cities: tuple[str, str]) -> dict[str, str]:
    a, b = cities
    return {
        "viewer_a": key(db_dsn, "viewer", [a]),
        "dispatcher_a": key(db_dsn, "dispatcher", [a], "Dispatcher Wang"),
        "admin_a": key(db_dsn, "city_admin", [a]),
        "dispatcher_b": key(db_dsn, "dispatcher", [b]),
        "admin_b": key(db_dsn, "city_admin", [b]),
        "platform": key(db_dsn, "platform_admin", []),
    }


@pytest.fixture(scope="module")
def schema(shared_dir: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(shared_dir / "standards" / "CAP-v1.2.xsd")))


def test_health_ready_and_metrics_are_open(server: Server) -> None:
    with client(server, None) as c:
        assert c.get("/health").json() == {"status": "ok"}
        ready = c.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": True, "kafka": True}
        assert "cityops_api_requests_total" in c.get("/metrics").text
        assert c.get("/").status_code == 200


def _operations(server: Server) -> list[tuple[str, str]]:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops]


def _fill(path: str, city: str, alert_id: str) -> str:
    return (
        path.replace("{city}", city)
        .replace("{alert_id}", alert_id)
        .replace("{action}", "acknowledge")
        .replace("{layer}", "devices")
        .replace("{webhook_id}", "1")
        .replace("{device_id}", "dev-1")
    )


def _params(path: str) -> dict[str, str]:
    return {"metric": "ch4"} if path.endswith("/series") else {}


def test_every_endpoint_needs_a_valid_key(server: Server, cities: tuple[str, str]) -> None:
    ops = [(m, p) for m, p in _operations(server) if p.startswith("/v1/")]
    assert len(ops) >= 15
    for token in (None, "cok_deadbeef0000.not-the-secret", "garbage"):
        with client(server, token) as c:
            for method, path in ops:
                r = c.request(method, _fill(path, cities[0], "x"), params=_params(path))
                assert r.status_code == 401, (method, path, token, r.text)
                assert r.headers.get("www-authenticate") == "Bearer"


def test_tenancy_matrix_over_every_endpoint(
    server: Server, db_dsn: str, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    a, b = cities
    theirs = incident(a)
    store_incidents(db_dsn, [theirs])
    probes = 0
    with client(server, keys["admin_b"]) as c:
        for method, path in _operations(server):
            if not path.startswith("/v1/") or path.startswith("/v1/feed"):
                continue
            url = _fill(path, a, theirs.incident_id)
            body = {"url": "http://127.0.0.1:9/x"} if "webhooks" in path else None
            r = c.request(method, url, params=_params(path), json=body)
            probes += 1
            if "{city}" in path:
                assert r.status_code == 403, (method, path, r.text)
            elif "{alert_id}" in path:
                assert r.status_code == 404, (method, path, r.text)
            else:
                assert r.status_code == 200, (method, path, r.text)
                assert a not in r.text, (method, path)
        listed = c.get("/v1/alerts", params={"city": a})
        assert listed.status_code == 403
        mine = c.get("/v1/alerts").json()
        assert all(item["city"] == b for item in mine["items"])
    assert probes >= 12
    with client(server, keys["dispatcher_a"]) as c:
        assert c.get(f"/v1/alerts/{theirs.incident_id}").status_code == 200
    with client(server, keys["platform"]) as c:
        assert c.get(f"/v1/alerts/{theirs.incident_id}").status_code == 200
    with psycopg.connect(db_dsn) as conn:
        row = conn.execute(
            "SELECT status FROM alerts WHERE alert_id = %s", (theirs.incident_id,)
        ).fetchone()
    assert row == ("new",), "a probe from another city changed the alert"


def test_roles_limit_what_a_key_may_do(
    server: Server, db_dsn: str, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    a, _ = cities
    inc = incident(a)
    store_incidents(db_dsn, [inc])
    with client(server, keys["viewer_a"]) as c:
        assert c.get(f"/v1/alerts/{inc.incident_id}").status_code == 200
        r = c.post(f"/v1/alerts/{inc.incident_id}/actions/acknowledge", json={"note": "x"})
        assert r.status_code == 403
        assert "dispatcher" in r.json()["detail"]
    with client(server, keys["dispatcher_a"]) as c:
        assert c.get(f"/v1/cities/{a}/webhooks").status_code == 403
    with client(server, keys["admin_a"]) as c:
        assert c.get(f"/v1/cities/{a}/webhooks").status_code == 200


def test_lifecycle_is_enforced_and_audited(
    server: Server, db_dsn: str, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    a, _ = cities
    inc = incident(a, IncidentType.PIPE_BURST, Severity.RED)
    store_incidents(db_dsn, [inc])
    url = f"/v1/alerts/{inc.incident_id}"
    with client(server, keys["dispatcher_a"]) as c:
        r = c.post(f"{url}/actions/dispatch", json={"note": "too early"})
        assert r.status_code == 409
        assert "cannot dispatch an alert that is new" in r.json()["detail"]
        assert "acknowledge" in r.json()["detail"]
        r = c.post(f"{url}/actions/assign", json={"note": "no department"})
        assert r.status_code == 409
        steps = [
            ("acknowledge", {"note": "seen on the wall"}, "acknowledged"),
            ("assign", {"note": "", "department": "Water Group"}, "acknowledged"),
            ("dispatch", {"note": "crew 3"}, "dispatched"),
            ("on_site", {"note": "arrived"}, "on_site"),
            ("resolve", {"note": "valve closed"}, "resolved"),
            ("close", {"note": "archived"}, "closed"),
        ]
        for action, body, expect in steps:
            r = c.post(f"{url}/actions/{action}", json=body)
            assert r.status_code == 200, r.text
            assert r.json()["alert_status"] == expect
        assert c.post(f"{url}/actions/false_alarm", json={}).status_code == 409
        detail = c.get(url).json()
    assert detail["assigned_dept"] == "Water Group"
    trail = [(e["from_status"], e["to_status"]) for e in detail["audit"]]
    assert trail == [
        (None, "new"),
        ("new", "acknowledged"),
        ("acknowledged", "acknowledged"),
        ("acknowledged", "dispatched"),
        ("dispatched", "on_site"),
        ("on_site", "resolved"),
        ("resolved", "closed"),
    ]
    assert all("Dispatcher Wang" in e["actor"] for e in detail["audit"][1:])
    assert detail["audit"][1]["note"] == "seen on the wall"
    assert detail["actions"] == []
    with client(server, keys["viewer_a"]) as c:
        overview = c.get(f"/v1/cities/{a}/overview").json()
    assert overview["mean_time_to_acknowledge_s"] is not None
    assert overview["resolved_30d"] >= 1


def test_alert_detail_carries_evidence_and_filters_work(
    server: Server, db_dsn: str, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    a, _ = cities
    red = incident(a, IncidentType.WATERLOGGING, Severity.RED, lon=118.70, lat=32.00)
    blue = incident(a, IncidentType.BRIDGE_OVERLOAD, Severity.BLUE, lon=118.90, lat=32.10)
    store_incidents(db_dsn, [red, blue])
    with client(server, keys["viewer_a"]) as c:
        reds = c.get("/v1/alerts", params={"severity": "red", "type": "waterlogging"}).json()
        assert red.incident_id in [i["incident_id"] for i in reds["items"]]
        assert all(i["severity"] == "red" for i in reds["items"])
        boxed = c.get("/v1/alerts", params={"bbox": "118.85,32.05,118.95,32.15"}).json()
        assert [i["incident_id"] for i in boxed["items"]] == [blue.incident_id]
        page = c.get("/v1/alerts", params={"limit": 1}).json()
        assert len(page["items"]) == 1
        assert page["total"] >= 2
        bad = c.get("/v1/alerts", params={"bbox": "nonsense"})
        assert bad.status_code == 422
        assert "bbox" in bad.text
        detail = c.get(f"/v1/alerts/{red.incident_id}").json()
        assert detail["severity_level"] == "I"
        assert detail["actions"] == ["acknowledge", "assign", "false_alarm"]
        layer = c.get(f"/v1/cities/{a}/map/incidents").json()
        assert {f["properties"]["incident_id"] for f in layer["features"]} >= {
            red.incident_id,
            blue.incident_id,
        }
        overview = c.get(f"/v1/cities/{a}/overview").json()
        assert overview["open_incidents"]["by_severity"]["red"] >= 1
        assert overview["lifelines"]["drainage"]["status"] == "alarm"


def _validate(schema: etree.XMLSchema, element: Any) -> None:
    if not schema.validate(element):
        raise AssertionError(str(schema.error_log))


def test_cap_messages_are_valid_cap_1_2(
    server: Server,
    db_dsn: str,
    cities: tuple[str, str],
    keys: dict[str, str],
    schema: etree.XMLSchema,
) -> None:
    a, _ = cities
    inc = incident(a, IncidentType.GAS_LEAK, Severity.RED)
    store_incidents(db_dsn, [inc])
    url = f"/v1/alerts/{inc.incident_id}"
    types = []
    with client(server, keys["dispatcher_a"]) as c:
        for action in (None, "acknowledge", "false_alarm"):
            if action:
                assert c.post(f"{url}/actions/{action}", json={"note": "x"}).status_code == 200
            for lang in ("zh-CN", "en-US"):
                r = c.get(f"{url}/cap", params={"lang": lang})
                assert r.headers["content-type"].startswith("application/cap+xml")
                doc = etree.fromstring(r.content)
                _validate(schema, doc)
            types.append(doc.findtext(f"{{{CAP_NS}}}msgType"))
            assert doc.findtext(f".//{{{CAP_NS}}}severity") == "Extreme"
            assert doc.find(f".//{{{CAP_NS}}}circle") is not None
        feed = c.get(f"/v1/cities/{a}/cap.atom")
    assert types == ["Alert", "Update", "Cancel"]
    atom = etree.fromstring(feed.content)
    entries = atom.findall(f".//{{{CAP_NS}}}alert")
    assert len(entries) >= 1
    for entry in entries:
        _validate(schema, etree.fromstring(etree.tostring(entry)))


def test_titles_descriptions_and_cap_speak_chinese_unless_english_is_asked(
    server: Server,
    db_dsn: str,
    cities: tuple[str, str],
    keys: dict[str, str],
    schema: etree.XMLSchema,
) -> None:
    a, _ = cities
    inc = incident(a, IncidentType.HEATING_LEAK, Severity.ORANGE)
    store_incidents(db_dsn, [inc])
    url = f"/v1/alerts/{inc.incident_id}"
    cell = inc.grid_cells[0] if inc.grid_cells else None
    with client(server, keys["viewer_a"]) as c:
        zh = c.get(url).json()
        en = c.get(url, headers={"Accept-Language": "en-GB,en;q=0.9,zh;q=0.5"}).json()
        asked = c.get(url, params={"lang": "en"}, headers={"Accept-Language": "zh-CN"}).json()
        listed_zh = c.get("/v1/alerts", params={"city": a, "type": "heating_leak"}).json()
        listed_en = c.get(
            "/v1/alerts",
            params={"city": a, "type": "heating_leak"},
            headers={"Accept-Language": "en"},
        ).json()
        doc = etree.fromstring(c.get(f"{url}/cap").content)
        doc_en = etree.fromstring(c.get(f"{url}/cap", params={"lang": "en-US"}).content)
    assert "供热泄漏" in zh["title"]
    assert "heating" not in zh["title"].lower()
    assert "橙色" in zh["description"]
    assert en["title"].startswith("Heating leak")
    assert asked["title"] == en["title"]
    assert "orange" in en["description"]
    if cell:
        assert cell in zh["title"]
        assert cell in en["title"]
    mine = [i for i in listed_zh["items"] if i["incident_id"] == inc.incident_id]
    assert mine
    assert mine[0]["title"] == zh["title"]
    mine_en = [i for i in listed_en["items"] if i["incident_id"] == inc.incident_id]
    assert mine_en
    assert mine_en[0]["title"] == en["title"]
    for message, first in ((doc, "zh-CN"), (doc_en, "en-US")):
        _validate(schema, message)
        infos = message.findall(f"{{{CAP_NS}}}info")
        assert [i.findtext(f"{{{CAP_NS}}}language") for i in infos] == [
            first,
            "en-US" if first == "zh-CN" else "zh-CN",
        ]
    by_lang = {i.findtext(f"{{{CAP_NS}}}language"): i for i in doc.findall(f"{{{CAP_NS}}}info")}
    assert by_lang["zh-CN"].findtext(f"{{{CAP_NS}}}headline") == zh["title"]
    assert by_lang["zh-CN"].findtext(f"{{{CAP_NS}}}event") == "供热泄漏"
    assert "橙色" in by_lang["zh-CN"].findtext(f"{{{CAP_NS}}}description", "")
    assert by_lang["en-US"].findtext(f"{{{CAP_NS}}}headline") == en["title"]


async def _ticket(server: Server, token: str) -> str:
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.post("/v1/feed/ticket", headers={"Authorization": f"Bearer {token}"})
        return str(r.json()["ticket"])


async def _next(ws: Any, wait_s: float = 10.0) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), wait_s)))


async def _until_revision(dsn: str, incident_id: str, revision: int) -> None:
    """Wait until the sink has written ``revision`` of an incident."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for _ in range(300):
            cur = await conn.execute(
                "SELECT revision FROM incidents WHERE incident_id = %s", (incident_id,)
            )
            row = await cur.fetchone()
            if row is not None and row[0] >= revision:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"the sink did not write revision {revision} of {incident_id}")


@pytest.mark.asyncio
async def test_feed_pushes_incidents_from_kafka_and_resumes(
    server: Server,
    db_dsn: str,
    cities: tuple[str, str],
    keys: dict[str, str],
    live_stack: Settings,
) -> None:
    a, _ = cities
    async with incidents_through_sink(live_stack.kafka_bootstrap, db_dsn, "api") as produce:
        ticket_a = await _ticket(server, keys["viewer_a"])
        ticket_b = await _ticket(server, keys["dispatcher_b"])
        async with (
            websockets.connect(f"{server.ws_url}/v1/feed/ws?ticket={ticket_a}") as ws_a,
            websockets.connect(f"{server.ws_url}/v1/feed/ws?ticket={ticket_b}") as ws_b,
        ):
            inc = incident(a, IncidentType.TUNNEL_HAZARD, Severity.ORANGE)
            await produce(inc)
            event = await _next(ws_a, 30)
            assert event["incident_id"] == inc.incident_id
            assert event["change"] == "incident"
            assert event["alert_status"] == "new"
            with pytest.raises(TimeoutError):
                await _next(ws_b, 1.0)
            last = event["id"]
        # Changes while the client is away arrive, in order, when it resumes.
        update = incident(
            a, IncidentType.TUNNEL_HAZARD, Severity.RED, revision=2, incident_id=inc.incident_id
        )
        await produce(update)
        await _until_revision(db_dsn, inc.incident_id, 2)
        async with httpx.AsyncClient(base_url=server.url) as c:
            r = await c.post(
                f"/v1/alerts/{inc.incident_id}/actions/acknowledge",
                headers={"Authorization": f"Bearer {keys['dispatcher_a']}"},
                json={"note": "on it"},
            )
            assert r.status_code == 200
        ticket = await _ticket(server, keys["viewer_a"])
        async with websockets.connect(
            f"{server.ws_url}/v1/feed/ws?ticket={ticket}&last_id={last}"
        ) as ws:
            missed = [await _next(ws, 30), await _next(ws, 30)]
        assert [m["change"] for m in missed] == ["incident", "alert"]
        assert missed[0]["id"] < missed[1]["id"]
        assert missed[1]["alert_status"] == "acknowledged"
        assert missed[1]["severity"] == "red"
        # A used ticket does not open the feed again.
        with pytest.raises(websockets.exceptions.WebSocketException):
            async with websockets.connect(f"{server.ws_url}/v1/feed/ws?ticket={ticket}") as ws:
                await _next(ws, 5)


def test_sse_feed_resumes_from_last_event_id(
    server: Server, db_dsn: str, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    a, _ = cities
    first, second = incident(a), incident(a, IncidentType.FIRE, Severity.YELLOW)
    store_incidents(db_dsn, [first])
    with psycopg.connect(db_dsn) as conn:
        row = conn.execute(
            "SELECT max(id) FROM incident_feed WHERE incident_id = %s", (first.incident_id,)
        ).fetchone()
    assert row is not None
    store_incidents(db_dsn, [second])
    headers = {"Authorization": f"Bearer {keys['viewer_a']}", "Last-Event-ID": str(row[0])}
    with (
        httpx.Client(base_url=server.url, timeout=10) as c,
        c.stream("GET", "/v1/feed/sse", headers=headers) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        data = first_event(r.iter_lines())
    assert data is not None
    assert data["incident_id"] == second.incident_id


class _Receiver(BaseHTTPRequestHandler):
    failures_left: ClassVar[int] = 2
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(500)
            self.end_headers()
            return
        type(self).received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_webhook_push_retries_until_delivered_and_logs_it(
    server: Server,
    db_dsn: str,
    cities: tuple[str, str],
    keys: dict[str, str],
    schema: etree.XMLSchema,
) -> None:
    a, _ = cities
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/cap"
        with client(server, keys["admin_a"]) as c:
            hook = c.post(f"/v1/cities/{a}/webhooks", json={"url": url, "name": "119 centre"})
            assert hook.status_code == 201
            secret = hook.json()["secret"]
            inc = incident(a, IncidentType.UNDERPASS_FLOODING, Severity.RED)
            store_incidents(db_dsn, [inc])
            deadline = time.monotonic() + 30
            delivered: list[dict[str, Any]] = []
            while time.monotonic() < deadline and not delivered:
                log = c.get(
                    f"/v1/cities/{a}/webhooks/deliveries", params={"alert_id": inc.incident_id}
                ).json()["items"]
                delivered = [d for d in log if d["state"] == "delivered"]
                time.sleep(0.3)
            c.delete(f"/v1/cities/{a}/webhooks/{hook.json()['webhook_id']}")
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert delivered, f"no delivery in the log: {log}"
    assert delivered[0]["attempts"] == 3
    headers, body = _Receiver.received[0]
    # Signed as pushes are: the receiver checks the body and the time it was signed at.
    signature.verify(secret, body, headers["X-CityOps-Signature"], time.time(), 300)
    doc = etree.fromstring(body)
    _validate(schema, doc)
    assert inc.incident_id in body.decode()


def test_unacknowledged_alert_is_escalated(
    server: Server, db_dsn: str, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    a, _ = cities
    old = incident(a, started=datetime.now(UTC) - timedelta(minutes=12))  # orange: 10 min
    store_incidents(db_dsn, [old])
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE alerts SET created_at = %s WHERE alert_id = %s",
            (datetime.now(UTC) - timedelta(minutes=12), old.incident_id),
        )
    deadline = time.monotonic() + 15
    with client(server, keys["viewer_a"]) as c:
        while time.monotonic() < deadline:
            detail = c.get(f"/v1/alerts/{old.incident_id}").json()
            if detail["escalation_level"] == 1:
                break
            time.sleep(0.3)
    assert detail["escalation_level"] == 1
    assert "escalated to level 1" in detail["audit"][-1]["note"]
    assert detail["alert_status"] == "new"


def test_alerts_not_yet_due_never_hold_back_one_that_is(
    db_dsn: str, cities: tuple[str, str]
) -> None:
    from store.alerts import escalate

    a, _ = cities
    now = datetime.now(UTC)
    # Five blue alerts from an hour ago minus a minute (not due for 60 min) are older
    # than an orange one of 20 minutes (due at 10): with two looked at a time, the
    # orange one still escalates.
    waiting = [incident(a, severity=Severity.BLUE) for _ in range(5)]
    due = incident(a)
    store_incidents(db_dsn, [*waiting, due])
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        for old in waiting:
            conn.execute(
                "UPDATE alerts SET created_at = %s WHERE alert_id = %s",
                (now - timedelta(minutes=59), old.incident_id),
            )
        conn.execute(
            "UPDATE alerts SET created_at = %s WHERE alert_id = %s",
            (now - timedelta(minutes=20), due.incident_id),
        )
        escalate(conn, now, limit=2)
        levels = dict(
            conn.execute(
                "SELECT alert_id, escalation_level FROM alerts WHERE alert_id = ANY(%s)",
                ([i.incident_id for i in [*waiting, due]],),
            ).fetchall()
        )
    assert levels == {**{w.incident_id: 0 for w in waiting}, due.incident_id: 2}


def test_rate_limit_answers_429_with_retry_after(
    db_dsn: str, cities: tuple[str, str], live_stack: Settings
) -> None:
    token = key(db_dsn, "viewer", [cities[0]])
    config = ApiConfig(
        dsn=db_dsn,
        kafka_bootstrap=live_stack.kafka_bootstrap,
        rate_per_s=1.0,
        burst=3.0,
        background=False,
    )
    with serve(config) as s, client(s, token) as c:
        codes = [c.get("/v1/me").status_code for _ in range(5)]
        r = c.get("/v1/me")
    assert codes[:3] == [200, 200, 200]
    assert 429 in codes[3:]
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1


def test_device_series_and_status(
    server: Server, db_dsn: str, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    from store import rollups
    from store.readings import ReadingWriter

    a, _ = cities
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO devices (city, device_id, family, kind, owner_dept, lon, lat,"
            " mqtt_username, mqtt_password_hash) VALUES (%s, 'gw-9', 'sensors', 'gas_well',"
            " 'Gas', 118.7, 32.0, %s, 'x'), (%s, 'gw-10', 'sensors', 'gas_well', 'Gas',"
            " 118.71, 32.01, %s, 'x')",
            (a, f"{a}.gw-9", a, f"{a}.gw-10"),
        )
        rows = [
            (a, "gw-9", "ch4", now - timedelta(minutes=m), float(m), "%LEL", [])
            for m in range(1, 31)
        ]
        with conn.transaction():
            ReadingWriter(conn).write_in_transaction(rows)
        rollups.refresh(conn)
    with client(server, keys["viewer_a"]) as c:
        s = c.get(f"/v1/cities/{a}/devices/gw-9/series", params={"metric": "ch4"}).json()
        assert sum(p["count"] for p in s["points"]) == 30
        bad = c.get(
            f"/v1/cities/{a}/devices/gw-9/series",
            params={
                "metric": "ch4",
                "start": "2026-01-02T00:00:00Z",
                "end": "2026-01-01T00:00:00Z",
            },
        )
        assert bad.status_code == 422
        devices = {d["device_id"]: d for d in c.get(f"/v1/cities/{a}/devices").json()["items"]}
        assert devices["gw-9"]["online"] is True
        assert devices["gw-10"]["online"] is False
        overview = c.get(f"/v1/cities/{a}/overview").json()
        assert overview["devices"] == {"total": 2, "online": 1, "offline": 1, "unreported": 0}


def test_device_list_counts_all_pages_and_finds_by_the_start_of_an_id(
    server: Server, db_dsn: str, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    _, b = cities
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        for i in range(12):
            conn.execute(
                "INSERT INTO devices (city, device_id, family, kind, owner_dept, lon, lat,"
                " asset_id, mqtt_username, mqtt_password_hash) VALUES (%s, %s, 'sensors',"
                " %s, 'Gas', 118.7, 32.0, %s, %s, 'x')",
                (
                    b,
                    f"PG-{i:02d}",
                    "gas_well" if i % 3 else "manhole_cover",
                    f"well-{i:02d}" if i < 4 else None,
                    f"{b}.PG-{i:02d}",
                ),
            )
        conn.execute(
            "UPDATE devices SET imei = '862592051651472' WHERE city = %s AND device_id = 'PG-05'",
            (b,),
        )
        conn.execute(
            "UPDATE devices SET transport = 'http', source = 'ct', platform_id = 'CTab12'"
            " WHERE city = %s AND device_id = 'PG-06'",
            (b,),
        )
        everything = conn.execute("SELECT count(*) FROM devices WHERE city = %s", (b,)).fetchone()
    url = f"/v1/cities/{b}/devices"
    with client(server, keys["admin_b"]) as c:
        pages = [
            c.get(url, params={"q": "pg-", "limit": 5, "offset": o}).json() for o in (0, 5, 10)
        ]
        assert [p["total"] for p in pages] == [12, 12, 12]
        ids = [d["device_id"] for p in pages for d in p["items"]]
        assert ids == [f"PG-{i:02d}" for i in range(12)]  # every one once, in id order
        assert c.get(url, params={"q": "pg-", "offset": 40}).json() == {
            "items": [],
            "total": 12,
            "limit": 500,
            "offset": 40,
        }
        assert c.get(url, params={"limit": 1}).json()["total"] == (everything or [0])[0]
        by_asset = c.get(url, params={"q": "WELL-0"}).json()
        assert sorted(d["device_id"] for d in by_asset["items"]) == [
            f"PG-{i:02d}" for i in range(4)
        ]
        covers = c.get(url, params={"q": "PG", "kind": "manhole_cover"}).json()
        assert covers["total"] == 4
        assert {d["kind"] for d in covers["items"]} == {"manhole_cover"}
        down = c.get(url, params={"q": "PG", "sort": "-device_id", "limit": 2}).json()
        assert [d["device_id"] for d in down["items"]] == ["PG-11", "PG-10"]
        by_kind = c.get(url, params={"q": "PG", "sort": "kind"}).json()["items"]
        assert [d["kind"] for d in by_kind] == sorted(d["kind"] for d in by_kind)
        bad = c.get(url, params={"sort": "mqtt_password_hash"})
        assert bad.status_code == 422
        assert "sort" in bad.text
        assert c.get(url, params={"q": "nothing-like-it"}).json()["total"] == 0
        by_imei = c.get(url, params={"q": "8625920"}).json()["items"]
        assert [(d["device_id"], d["imei"]) for d in by_imei] == [("PG-05", "862592051651472")]
        by_platform = c.get(url, params={"q": "ctab"}).json()["items"]
        assert [(d["device_id"], d["platform_id"]) for d in by_platform] == [("PG-06", "CTab12")]
        # A search is a literal prefix: no wildcards.
        assert [c.get(url, params={"q": q}).json()["total"] for q in ("pg_", "%", "PG-%")] == [
            0,
            0,
            0,
        ]


_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["-1", "0", "1e309", "NaN", "' OR 1=1 --", "../../etc/passwd", "%00", "[]"]),
)


def test_fuzz_every_get_endpoint_never_fails_with_5xx(
    server: Server, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    ops = [
        (path, op.get("parameters", []))
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if method == "get" and path.startswith("/v1/") and "sse" not in path
    ]
    c = client(server, keys["platform"])

    @hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def probe(data: st.DataObject) -> None:
        path, params = data.draw(st.sampled_from(ops))
        url = path
        query = {}
        for p in params:
            value = data.draw(_TEXT)
            if p["in"] == "path":
                url = url.replace("{" + p["name"] + "}", quote(value, safe="") or "x")
            elif data.draw(st.booleans()):
                query[p["name"]] = value
        url = url.replace("{city}", cities[0])
        r = c.get(url, params=query)
        assert r.status_code < 500, (url, query, r.text)

    try:
        probe()
    finally:
        c.close()


_JSON = st.recursive(
    # JSON has no NaN or infinity (httpx refuses to encode them).
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def test_fuzz_every_write_endpoint_never_fails_with_5xx(
    server: Server, db_dsn: str, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    a, _ = cities
    target = incident(a)
    store_incidents(db_dsn, [target])
    spec = httpx.get(f"{server.url}/openapi.json").json()
    ops = [
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("post", "delete") and path.startswith("/v1/")
    ]
    assert len(ops) >= 4
    c = client(server, keys["platform"])

    @hsettings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def probe(data: st.DataObject) -> None:
        method, path = data.draw(st.sampled_from(ops))
        url = (
            path.replace("{city}", data.draw(st.sampled_from([a, "000000", "abc"])))
            .replace("{alert_id}", data.draw(st.sampled_from([target.incident_id, "nope"])))
            .replace("{action}", data.draw(st.sampled_from(["acknowledge", "resolve", "x"])))
            .replace("{webhook_id}", str(data.draw(st.integers(-5, 10**12))))
        )
        body = data.draw(
            _JSON | st.fixed_dictionaries({"note": _TEXT, "department": _TEXT | st.none()})
        )
        r = c.request(method, url, json=body)
        assert r.status_code < 500, (method, url, body, r.text)

    try:
        probe()
    finally:
        c.close()


def test_cached_answers_keep_tenancy_and_auth(
    server: Server, db_dsn: str, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    a, _ = cities
    store_incidents(db_dsn, [incident(a)])
    with client(server, keys["viewer_a"]) as c:
        for _ in range(3):  # the second and third come from the cache
            assert c.get(f"/v1/cities/{a}/overview").status_code == 200
            mine = c.get("/v1/alerts", params={"limit": 5})
            assert mine.status_code == 200
    with client(server, keys["dispatcher_b"]) as c:
        for _ in range(2):
            assert c.get(f"/v1/cities/{a}/overview").status_code == 403
            theirs = c.get("/v1/alerts", params={"limit": 5}).json()
            assert all(item["city"] != a for item in theirs["items"])
    with client(server, "cok_0000.not-a-key") as c:
        assert c.get(f"/v1/cities/{a}/overview").status_code == 401
        assert c.get("/v1/alerts", params={"limit": 5}).status_code == 401
    with client(server, None) as c:
        assert c.get("/v1/alerts", params={"limit": 5}).status_code == 401


def test_values_the_store_cannot_hold_are_refused_not_crashed_on(
    server: Server, keys: dict[str, str]
) -> None:
    with client(server, keys["dispatcher_a"]) as c:
        for path in ("/v1/alerts/%00", "/v1/alerts/a%00b/cap"):
            r = c.get(path)
            assert r.status_code == 422, (path, r.text)
            assert "store cannot take" in r.json()["detail"]
        r = c.post("/v1/alerts/x%00/actions/acknowledge", json={"note": "a\u0000b"})
        assert r.status_code == 422


def test_what_a_fuzzer_found_is_refused_with_a_422_or_404(
    server: Server, db_dsn: str, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    a, _ = cities
    with client(server, keys["platform"]) as c:
        # Times: a year 1, a number, a naive time: 422, never a 500.
        series = f"/v1/cities/{a}/devices/gw-1/series"
        for params in (
            {"metric": "ch4", "end": "0001-01-01T00:00:00Z"},
            {"metric": "ch4", "start": "0.5"},
            {"metric": "ch4", "start": "1700000000"},
            {"metric": "ch4", "end": "9999-12-31T23:59:59Z"},
            {"metric": "ch4", "end": "2026-01-01T00:00:00"},
        ):
            r = c.get(series, params=params)
            assert r.status_code == 422, (params, r.text)
        assert c.get("/v1/alerts", params={"start": "0.5"}).status_code == 422
        # A long span without a bucket gets a bucket that fits, not a refusal.
        wide = c.get(
            series,
            params={
                "metric": "ch4",
                "start": "1990-01-01T00:00:00Z",
                "end": "2026-01-01T00:00:00Z",
            },
        )
        assert wide.status_code == 200, wide.text
        assert wide.json()["bucket_s"] >= (36 * 365 * 86400) / 10_000
        # City codes are ASCII digits: Arabic-Indic and full-width ones are not codes.
        arabic_indic = "".join(chr(0x0660 + int(d)) for d in "320100")
        fullwidth = "".join(chr(0xFF10 + int(d)) for d in "320100")
        for code in (arabic_indic, fullwidth):
            assert c.get(f"/v1/cities/{code}/overview").status_code == 422
            assert c.get("/v1/alerts", params={"city": code}).status_code == 422
    with client(server, keys["admin_a"]) as c:
        hooks = f"/v1/cities/{a}/webhooks"
        for url in (
            "http://",
            "https://g",
            "http://exa mple.org/x",
            "http://example.org/\x07",
            "ftp://example.org/",
            "http://localhost:8400/v1/me",
            "http://[::1]/x",
            "http://169.254.169.254/latest",
            "http://10.0.0.5/cap",  # a real-looking host, but not the allowed one
        ):
            r = c.post(hooks, json={"url": url})
            assert r.status_code == 422, (url, r.text)
            assert "url" in r.text
    other = random_city()
    while other in cities:
        other = random_city()
    with client(server, keys["platform"]) as c:
        r = c.post(f"/v1/cities/{other}/webhooks", json={"url": "http://127.0.0.1:9/cap"})
        assert r.status_code == 404, r.text
        assert "no devices" in r.text


def test_webhook_destinations_follow_the_operator_s_policy() -> None:
    from cockpit_api.webhooks import destination_problem

    # Without a policy: public names and addresses, never this machine.
    assert destination_problem("https://cad.example.gov.cn/cap", ()) is None
    assert destination_problem("https://203.0.113.7:8443/cap", ()) is None
    assert destination_problem("http://127.0.0.1:9/x", ()) is not None
    assert destination_problem("http://foo.localhost/x", ()) is not None
    # With one: only what it allows, by name, suffix or network.
    allow = ("cad.example.gov.cn", "*.119.example.cn", "10.20.0.0/16")
    assert destination_problem("https://cad.example.gov.cn/cap", allow) is None
    assert destination_problem("https://a.119.example.cn/cap", allow) is None
    assert destination_problem("http://10.20.3.4/cap", allow) is None
    assert destination_problem("http://10.21.3.4/cap", allow) is not None
    assert destination_problem("https://evil.example.com/cap", allow) is not None
    assert destination_problem("http://127.0.0.1/x", ("127.0.0.1",)) is None


def test_the_sensor_kind_catalogue_is_served_as_declared(
    server: Server, keys: dict[str, str]
) -> None:
    from lifeline.kinds import KINDS

    with client(server, keys["viewer_a"]) as c:
        kinds = {k["kind"]: k for k in c.get("/v1/kinds").json()["kinds"]}
    assert set(kinds) == set(KINDS)
    gas = kinds["gas_well"]
    assert (gas["lifeline"], gas["label"]["zh"]) == ("gas", "燃气窨井")
    (ch4,) = gas["metrics"]
    assert (ch4["metric"], ch4["unit"], ch4["low"], ch4["high"]) == ("ch4", "%LEL", 0, 100)
    assert [lv["threshold"] for lv in ch4["levels"]] == [10, 25, 50]
    assert not ch4["adaptive"]
    assert "GB/T 50493" in gas["sources"]
    flow = kinds["water_flow"]["metrics"][0]
    assert flow["adaptive"]
    assert flow["levels"] == []
    # How long each detector learns before it may alarm: a flow's baseline judges steps
    # after 33 readings (half a minute at one a second), its drifts after a day.
    baseline = next(h for h in flow["history"] if h["detector"] == "Baseline")
    assert (baseline["readings"], baseline["seconds"]) == (33, 86400.0)
    assert next(h for h in ch4["history"] if h["detector"] == "Levels")["readings"] == 2
    assert kinds["heat_network"]["joint"]
    assert not gas["joint"]


def test_the_openapi_document_says_what_the_api_answers(server: Server) -> None:
    doc = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "http", "scheme": "bearer"}
    error = {"$ref": "#/components/schemas/Error"}
    operations = [
        (path, method, op)
        for path, ops in doc["paths"].items()
        if path.startswith("/v1/")
        for method, op in ops.items()
    ]
    assert len(operations) >= 15
    for path, method, op in operations:
        assert op["security"], (method, path)
        for code in ("401", "403", "422", "429", "503"):
            assert op["responses"][code]["content"]["application/json"]["schema"] == error
        assert ("409" in op["responses"]) == ("/actions/" in path), (method, path)
    # Every answer with a JSON body has a schema a client generator can use.
    schemas = doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for code, answer in op["responses"].items():
                json_body = answer.get("content", {}).get("application/json")
                if json_body is None:
                    assert code == "204" or "content" in answer, (method, path, code)
                    continue
                ref = json_body["schema"].get("$ref", "")
                assert ref.startswith("#/components/schemas/"), (method, path, code)
                assert schemas[ref.rsplit("/", 1)[1]].get("properties"), (method, path, code)
    assert (
        len(
            {
                op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
                for path, ops in doc["paths"].items()
                for op in ops.values()
                if "application/json" in op["responses"].get("200", {}).get("content", {})
            }
        )
        >= 12
    )
    sse = doc["paths"]["/v1/feed/sse"]["get"]["responses"]["200"]["content"]
    assert list(sse) == ["text/event-stream"]
    assert "HTTPValidationError" not in json.dumps(doc)
    # What the document promises is what a refusal looks like.
    r = httpx.get(f"{server.url}/v1/alerts", timeout=10)
    assert r.status_code == 401
    assert isinstance(r.json()["detail"], str)


def test_an_alert_of_a_joint_anomaly_charts_the_metrics_it_names_first(
    server: Server, db_dsn: str, cities: tuple[str, str], keys: dict[str, str]
) -> None:
    from lifeline.records import Anomaly, Evidence
    from store.events import upsert_anomalies

    a, _ = cities
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    def anomaly(suffix: str, detector: str, metrics: tuple[str, ...], at: datetime) -> Anomaly:
        return Anomaly(
            anomaly_id=f"{a}:hn-1:{suffix}:{int(at.timestamp())}",
            city=a,
            kind=f"{metrics[0]}_{detector}",
            state="raised",
            device_id="hn-1",
            grid_cell=f"{a}001001001",
            ts=at,
            detector=detector,
            severity=Severity.YELLOW,
            score=0.7,
            evidence=tuple(
                Evidence(device_id="hn-1", metric=m, value=1.0, unit="°C", ts=at) for m in metrics
            ),
            message="test",
        )

    # The flow's own alarm came first; the joint one names other metrics.
    per_metric = anomaly("flow", "drift_up", ("flow",), now - timedelta(minutes=5))
    joint = anomaly("joint", "joint", ("return_temp", "supply_temp"), now)
    inc = incident(a, IncidentType.HEATING_LEAK, Severity.YELLOW).model_copy(
        update={"anomaly_ids": (per_metric.anomaly_id, joint.anomaly_id)}
    )
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        upsert_anomalies(conn, [per_metric, joint])
    store_incidents(db_dsn, [inc])
    with client(server, keys["viewer_a"]) as c:
        detail = c.get(f"/v1/alerts/{inc.incident_id}").json()
    assert [e["metric"] for e in detail["evidence"]] == ["return_temp", "supply_temp", "flow"]
