"""The whole pipeline: simulator → MQTT → ingest, and simulator → HTTPS push (the city's
NB-IoT gas wells and manhole covers, through their carrier platform) → Kafka → Faust
worker → sink → store → API and WebSocket. Every injected scenario of a short run becomes
exactly one incident of the right type, grid cell and severity; no incident appears
where none was injected."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import websockets
from pydantic import SecretStr

from cityops.cim import load_layers
from cityops.onboard import onboard, placer_from_files
from cityops.settings import Settings
from cityops.stack.common import free_port
from cockpit_api.app import ApiConfig
from ingest.event_codes import EVENT_CODES_DIR
from simulators.demo_city import DEMO_CITY, VIA, ensure_push_sources, write_demo_city
from simulators.score import score
from tests.integration.api_support import Server, key, serve

pytestmark = pytest.mark.e2e

# Every scenario but device_offline (silence is judged on the wall clock, which a
# simulation at 120x outruns).
SCENARIOS = (
    "rainstorm_waterlogging,gas_leak,underpass_flooding,manhole_cover,tunnel_gas,smoke_fire,"
    "missing_cover,pipe_burst,heating_leak,bridge_overload"
)


@dataclass
class Pilot:
    code: str
    settings: Settings
    folder: Path
    credentials: Path
    push_tokens: Path
    push_url: str = ""


@pytest.fixture(scope="module")
def pilot(live_stack: Settings, db_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Pilot:
    code = f"3201{secrets.randbelow(80) + 10:02d}"
    folder = tmp_path_factory.mktemp("pilot")
    settings = live_stack.model_copy(update={"db_dsn": SecretStr(db_dsn), "cities": (code,)})
    files = write_demo_city(folder, code=code)
    # The pilot city's cameras' events come through iSecure Center: its event codes are
    # the demo city's.
    (folder / "vendors" / "events").mkdir(parents=True)
    (folder / "vendors" / "events" / f"{code}.toml").write_bytes(
        (EVENT_CODES_DIR / f"{DEMO_CITY}.toml").read_bytes()
    )
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        ensure_push_sources(conn, code, folder / "push-tokens.json")
    onboard(
        settings,
        files.devices,
        code,
        crs="EPSG:4326",
        placer=placer_from_files(files.grid, [files.pipes, files.assets]),
        credentials_out=folder / "credentials.csv",
        rotate=False,
        show_progress=False,
    )
    load_layers(
        settings,
        code,
        files.layers(),
        lambda _m: None,
    )
    return Pilot(code, settings, folder, folder / "credentials.csv", folder / "push-tokens.json")


def _evidence(pilot: Pilot, incidents: object) -> list[tuple[object, ...]]:
    """The anomalies behind incidents nothing was injected for, to say why they opened."""
    ids = [i["incident_id"] for i in incidents] if isinstance(incidents, list) else []
    with psycopg.connect(pilot.settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        return conn.execute(
            "SELECT a.anomaly_id, a.kind, a.state, a.device_id, a.detector, a.severity, a.ts,"
            " a.message FROM incidents i JOIN anomalies a ON a.anomaly_id = ANY(i.anomaly_ids)"
            " WHERE i.incident_id = ANY(%s) ORDER BY a.ts",
            (ids,),
        ).fetchall()


class Service:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cityops.cli", *argv],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.tail()}")
            if text in self.log.read_text(errors="replace"):
                return
            time.sleep(0.3)
        raise AssertionError(f"{self.name} never logged {text!r}: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def services(pilot: Pilot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Service]]:
    logs = tmp_path_factory.mktemp("logs")
    tag = secrets.token_hex(3)
    port = free_port()
    env = {
        **os.environ,
        "CITYOPS_DB_DSN": pilot.settings.db_dsn.get_secret_value(),
        "CITYOPS_CITIES": pilot.code,
        "CITYOPS_LOG_LEVEL": "INFO",
        "CITYOPS_VENDOR_DIR": str(pilot.folder / "vendors"),
    }
    started = [
        Service(
            "ingest",
            ["ingest", "--metrics-port", "0", "--client-id", f"e2e-{tag}", "--end-session"],
            env,
            logs / "ingest.log",
        ),
        Service(
            "sink",
            # From the end of the topics: a stack with history (days of readings of other
            # runs) must not keep the sink busy with a backlog before this city's readings.
            [
                *("sink", "--metrics-port", "0", "--group", f"e2e-sink-{tag}"),
                *("--offset-reset", "latest"),
            ],
            env,
            logs / "sink.log",
        ),
        Service(
            "worker",
            ["worker", "--app-id", f"e2e-worker-{tag}", "--offset-reset", "latest"],
            env,
            logs / "worker.log",
        ),
        Service("push", ["push", "serve", "--port", str(port)], env, logs / "push.log"),
    ]
    pilot.push_url = f"https://localhost:{port}"
    try:
        started[0].wait_for("ingest bridging")
        started[2].wait_for("Worker ready")
        started[3].wait_for("push serving")
        time.sleep(3)  # the sink joins its group and takes the partitions (at their end)
        yield started
    finally:
        for svc in started:
            svc.stop()


@pytest.fixture(scope="module")
def api(pilot: Pilot) -> Iterator[Server]:
    config = ApiConfig(
        dsn=pilot.settings.db_dsn.get_secret_value(),
        kafka_bootstrap=pilot.settings.kafka_bootstrap,
    )
    with serve(config) as s:
        yield s


@pytest.mark.asyncio
async def test_every_scenario_becomes_exactly_one_incident(
    pilot: Pilot, services: list[Service], api: Server, tmp_path: Path
) -> None:
    token = key(pilot.settings.db_dsn.get_secret_value(), "viewer", [pilot.code])
    headers = {"Authorization": f"Bearer {token}"}
    truth_file = tmp_path / "truth.jsonl"
    pushed: list[dict[str, object]] = []
    async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=10) as client:
        ticket = (await client.post("/v1/feed/ticket")).json()["ticket"]
        async with websockets.connect(f"{api.ws_url}/v1/feed/ws?ticket={ticket}") as ws:

            async def listen() -> None:
                async for message in ws:
                    pushed.append(json.loads(message))

            listener = asyncio.create_task(listen())
            env = {
                **os.environ,
                "CITYOPS_DB_DSN": pilot.settings.db_dsn.get_secret_value(),
                "CITYOPS_CITIES": pilot.code,
                "CITYOPS_PUSH_URL": pilot.push_url,
                "CITYOPS_VENDOR_DIR": str(pilot.folder / "vendors"),
            }
            sim = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cityops.cli",
                "simulate",
                "--city",
                pilot.code,
                "--credentials",
                str(pilot.credentials),
                "--duration",
                "60m",
                "--speed",
                "120",
                "--scenarios",
                SCENARIOS,
                "--truth",
                str(truth_file),
                "--push-tokens",
                str(pilot.push_tokens),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                out, _ = await asyncio.wait_for(sim.communicate(), 180)
            finally:
                if sim.returncode is None:  # timed out or cancelled: no simulator left behind
                    sim.kill()
                    await sim.wait()
            assert sim.returncode == 0, out.decode()[-3000:]
            played = json.loads(out.decode().strip().splitlines()[-1])
            assert 0 < played["pushed"] < played["messages"], played
            truth = [json.loads(line) for line in truth_file.read_text().splitlines()]
            assert len(truth) == 10
            start = min(t["start"] for t in truth)
            result: dict[str, object] = {}
            for _ in range(120):
                page = (
                    await client.get(
                        "/v1/alerts", params={"city": pilot.code, "start": start, "limit": 500}
                    )
                ).json()
                result = score(truth, page["items"])
                if result["matched"] == len(truth):
                    break
                await asyncio.sleep(1)
            await asyncio.sleep(5)  # anything spurious would show by now
            page = (
                await client.get("/v1/alerts", params={"city": pilot.code, "limit": 500})
            ).json()
            listener.cancel()
    final = score(truth, page["items"])
    logs = "\n".join(f"--- {s.name}\n{s.tail()}" for s in services)
    assert final["missed"] == [], f"{final}\n{logs}"
    assert final["false_positives"] == [], (final, _evidence(pilot, final["false_positives"]))
    assert final["severity_mismatches"] == [], final
    assert final["precision"] == 1.0
    assert final["recall"] == 1.0
    # Every way in carried scenarios: the gas leak's wells report through CTWing, the
    # manhole covers through OneNET, the cameras' events through iSecure Center, the
    # pipes over MQTT.
    with psycopg.connect(pilot.settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT device_id, kind, transport, source FROM devices WHERE city = %s",
            (pilot.code,),
        ).fetchall()
    how = {d: (t, src) for d, kind, t, src in rows}
    for kind, source in VIA.items():
        assert {how[d] for d, k, _t, _s in rows if k == kind} == {("http", source)}
    gas = next(t for t in truth if t["scenario"] == "gas_leak")
    cover = next(t for t in truth if t["scenario"] == "manhole_cover")
    pipe = next(t for t in truth if t["scenario"] == "pipe_burst")
    assert {how[d] for d in gas["devices"]} == {("http", VIA["gas_well"])}
    assert {how[d] for d in cover["devices"]} == {("http", VIA["manhole_cover"])}
    smoke = next(t for t in truth if t["scenario"] == "smoke_fire")
    assert {how[d] for d in smoke["devices"]} == {("http", VIA["camera"])}
    assert {how[d][0] for d in pipe["devices"]} == {"mqtt"}
    incident_ids = {i["incident_id"] for i in page["items"]}
    assert incident_ids <= {e["incident_id"] for e in pushed}, "not every incident was pushed"
