"""``cityops simulate``: an onboarded city's devices publish over MQTT, each with its own
credentials, with injected scenarios and their ground truth written as JSONL.

The simulated window ends now: it starts ``duration`` ago and is played ``speed`` times
faster than real time, so every timestamp is a valid one; with ``follow`` the devices go
on reporting in real time afterwards, with a new scenario now and then.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from tqdm import tqdm

from cityops.errors import CityOpsError
from cityops.settings import Settings
from ingest.event_codes import EventCodeError, EventCodes
from simulators.carrier import (
    CarrierPlatform,
    CTWingPlatform,
    IoTDAPlatform,
    ISecureCenterPlatform,
    OneNETPlatform,
    PushStats,
)
from simulators.live import SimDevice, Simulation, plan, unit_of
from simulators.names import SCENARIOS
from simulators.publisher import Publishers, read_credentials
from store.devices import load_devices
from store.push_sources import load_sources

log = logging.getLogger(__name__)


@dataclass
class SimResult:
    ticks: int
    messages: int
    scenarios: int
    truth_file: Path | None
    #: of ``messages``, the reports pushed over HTTPS by carrier platforms
    pushed: int = 0


def simulate(
    settings: Settings,
    city: str,
    credentials: Path,
    *,
    duration: timedelta,
    speed: float,
    interval: timedelta = timedelta(minutes=1),
    scenarios: Sequence[str] = SCENARIOS,
    truth_out: Path | None = None,
    seed: int = 7,
    follow: bool = False,
    show_progress: bool = True,
    stop: threading.Event | None = None,
    on_tick: Callable[[datetime], None] | None = None,
    push_tokens: Path | None = None,
    vendor_dir: Path | None = None,
) -> SimResult:
    if speed <= 0:
        raise CityOpsError("--speed must be above 0 (e.g. 60 for a simulated minute a second)")
    stop = stop or threading.Event()
    with psycopg.connect(settings.db_dsn.get_secret_value(), autocommit=True) as conn:
        devices = [
            SimDevice(
                d.device_id,
                "camera" if d.family == "cameras" else d.kind,
                d.lon,
                d.lat,
                d.grid_code,
                d.asset_id,
                d.source if d.transport == "http" else None,
                d.platform_id,
                d.imei,
            )
            for d in load_devices(conn, [city])
        ]
        sources = load_sources(conn, [city])
    secrets = {s.name: s.hmac_secret for s in sources if s.platform == "cityops"}
    ctwing = {s.name for s in sources if s.platform == "ctwing"}
    onenet = {s.name: s.platform_secret or "" for s in sources if s.platform == "onenet"}

    def url_tokens(platform: str) -> dict[str, str]:
        """The URL tokens of the city's sources of ``platform`` (those in the file)."""
        return {
            s.name: tokens[s.name] for s in sources if s.platform == platform and s.name in tokens
        }

    tokens: dict[str, str] = json.loads(push_tokens.read_text()) if push_tokens else {}
    if not devices:
        raise CityOpsError(f"city {city} has no devices; onboard it first (cityops onboard)")
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - duration
    try:
        planned = plan(devices, list(scenarios), start, duration, rng)
    except ValueError as exc:
        raise CityOpsError(str(exc)) from exc
    sim = Simulation(devices, planned, seed=seed)
    if truth_out is not None:
        truth_out.parent.mkdir(parents=True, exist_ok=True)
        with truth_out.open("w") as fh:
            for s in planned:
                fh.write(json.dumps(s.truth(), ensure_ascii=False) + "\n")
    over_mqtt = [d.device_id for d in devices if d.source is None]
    pubs = Publishers(settings.broker(), read_credentials(credentials, city) if over_mqtt else {})
    pubs.connect(over_mqtt, show_progress)
    carrier = None
    ca_file = settings.tls_dir / "ca.crt"
    if len(over_mqtt) < len(devices):
        carrier = Carriers(
            CarrierPlatform(
                settings.push_url,
                city,
                secrets,
                ca_file=settings.tls_dir / "ca.crt",
                seed=seed,
                idle=lambda seconds: pubs.idle(seconds, stop),
            ),
            CTWingPlatform(settings.push_url, city, tokens, ca_file=ca_file, seed=seed),
            ctwing,
            OneNETPlatform(settings.push_url, city, onenet, ca_file=ca_file, seed=seed),
            IoTDAPlatform(
                settings.push_url,
                city,
                url_tokens("iotda"),
                ca_file=ca_file,
                seed=seed,
            ),
            ISecureCenterPlatform(
                settings.push_url,
                city,
                url_tokens("hik-isc"),
                ca_file=ca_file,
                seed=seed,
                repeat_rate=0.05,
                codes=_event_codes(vendor_dir),
            ),
        )
    ticks = 0
    try:
        total = int(duration / interval)
        bar = tqdm(total=total, desc=f"simulate x{speed:g}", unit="tick", disable=not show_progress)
        wall0 = time.monotonic()
        t = start
        while not stop.is_set():
            if t > datetime.now(UTC):
                if not follow:
                    break
                if pubs.idle((t - datetime.now(UTC)).total_seconds(), stop):
                    break
                if ticks % 10 == 0:
                    _inject(sim, devices, t, rng, truth_out)
            else:
                # Catch-up at the set speed: tick k is due at k * interval / speed.
                due = wall0 + ticks * interval.total_seconds() / speed
                if pubs.idle(due - time.monotonic(), stop):
                    break
            _publish_tick(sim, pubs, carrier, city, t, interval)
            if on_tick is not None:
                on_tick(t)
            ticks += 1
            bar.update()
            t += interval
        bar.close()
        if carrier is not None:
            carrier.flush()
    finally:
        pubs.close()
        if carrier is not None:
            carrier.close()
    pushed = carrier.stats if carrier is not None else None
    if pushed is not None:
        log.info(
            "pushed over HTTPS",
            extra={
                "reports": pushed.reports,
                "requests": pushed.requests,
                "repeated": pushed.repeated,
                "retries": pushed.retries,
                "dead_lettered": pushed.dead_lettered,
                "dropped": pushed.dropped,
            },
        )
    return SimResult(
        ticks,
        pubs.sent + (pushed.reports if pushed else 0),
        len(sim.scenarios),
        truth_out,
        pushed.reports if pushed else 0,
    )


def _event_codes(vendor_dir: Path | None) -> EventCodes:
    try:
        return EventCodes.load(*([vendor_dir] if vendor_dir else []))
    except EventCodeError as exc:
        raise CityOpsError(f"video event code table: {exc}") from exc


class Carriers:
    """The platforms that push a simulated city's http devices: CTWing's, OneNET's and
    IoTDA's sources in their own formats, one report a request; iSecure Center's cameras'
    events, one a request; every other source in our signed envelope, in batches."""

    def __init__(
        self,
        own: CarrierPlatform,
        ctwing: CTWingPlatform,
        ctwing_sources: set[str],
        onenet: OneNETPlatform,
        iotda: IoTDAPlatform,
        isc: ISecureCenterPlatform,
    ):
        self.own, self.ctwing, self.ctwing_sources = own, ctwing, ctwing_sources
        self.onenet, self.iotda, self.isc = onenet, iotda, isc

    def camera_event(self, dev: SimDevice, event: str, priority: int, at: datetime) -> bool:
        """Push one event of a camera its video platform serves; False for a camera that
        publishes its events over MQTT."""
        if dev.source is None:
            return False
        if dev.source not in self.isc.tokens or dev.platform_id is None:
            raise CityOpsError(
                f"camera {dev.device_id} reports through source {dev.source!r}, which is not "
                "an iSecure Center source with its URL token (--push-tokens), or the camera "
                "has no index code"
            )
        self.isc.event(dev.source, dev.platform_id, event, priority, at)
        return True

    def push(self, dev: SimDevice, ts: datetime, payload: dict[str, Any]) -> bool:
        """Push one report of ``dev``; False when it goes in a batch (:meth:`push_batch`)."""
        platform: CTWingPlatform | OneNETPlatform | IoTDAPlatform | None = (
            self.ctwing
            if dev.source in self.ctwing_sources
            else self.onenet
            if dev.source in self.onenet.tokens
            else self.iotda
            if dev.source in self.iotda.tokens
            else None
        )
        if platform is None or dev.source is None:
            return False
        if dev.platform_id is None:
            raise CityOpsError(
                f"device {dev.device_id} reports through source {dev.source!r} but has no "
                "platform_id; onboard it with the id its platform knows it by"
            )
        platform.report(
            dev.source, dev.platform_id, dev.imei, int(ts.timestamp() * 1000), payload["values"]
        )
        return True

    def push_batch(self, source: str, reports: list[dict[str, Any]]) -> None:
        self.own.push(source, reports)

    def deliver(self) -> None:
        """Send the one-message-a-request platforms' messages of the tick, together."""
        self.ctwing.deliver()
        self.onenet.deliver()
        self.iotda.deliver()
        self.isc.deliver()

    def flush(self) -> None:
        self.own.flush()

    def close(self) -> None:
        self.own.close()
        self.ctwing.close()
        self.onenet.close()
        self.iotda.close()
        self.isc.close()

    @property
    def stats(self) -> PushStats:
        parts = (
            self.own.stats,
            self.ctwing.stats,
            self.onenet.stats,
            self.iotda.stats,
            self.isc.stats,
        )
        return PushStats(
            requests=sum(p.requests for p in parts),
            reports=sum(p.reports for p in parts),
            repeated=sum(p.repeated for p in parts),
            retries=sum(p.retries for p in parts),
            answered_before=sum(p.answered_before for p in parts),
            dead_lettered=sum(p.dead_lettered for p in parts),
            dropped=sum(p.dropped for p in parts),
            errors=[e for p in parts for e in p.errors],
        )


def _publish_tick(
    sim: Simulation,
    pubs: Publishers,
    carrier: Carriers | None,
    city: str,
    t: datetime,
    interval: timedelta,
) -> None:
    infos = []
    ts = t.isoformat().replace("+00:00", "Z")
    pushed: dict[str, list[dict[str, Any]]] = {}
    for dev, values in sim.readings_at(t):
        payload = {
            "ts": ts,
            "values": values,
            "units": {m: unit_of(m) for m in values},
        }
        if dev.source is not None:
            # Its carrier platform pushes it, naming the device in the report.
            if carrier is None or not carrier.push(dev, t, payload):
                pushed.setdefault(dev.source, []).append({"device_id": dev.device_id, **payload})
            continue
        info = pubs.publish(dev.device_id, json.dumps(payload).encode())
        if info is not None:
            infos.append(info)
    if carrier is not None:
        for source, reports in pushed.items():
            carrier.push_batch(source, reports)
    for camera, event, priority, confidence, event_at in sim.camera_events_at(t, interval):
        cam = next(d for d in sim.devices if d.device_id == camera)
        if carrier is not None and carrier.camera_event(cam, event, priority, event_at):
            continue
        body = {
            "v": 1,
            "city": city,
            "camera_id": camera,
            "event_type": event,
            "ts": event_at.isoformat().replace("+00:00", "Z"),
            "confidence": confidence,
            "lon": cam.lon,
            "lat": cam.lat,
            "priority": priority,
            "description": f"{event} seen by camera {camera}",
        }
        info = pubs.publish(camera, json.dumps(body).encode())
        if info is not None:
            infos.append(info)
    if carrier is not None:
        carrier.deliver()
    unacked = pubs.wait(infos)
    if unacked:
        log.warning("readings not acknowledged by the broker", extra={"count": unacked})


def _inject(
    sim: Simulation,
    devices: Sequence[SimDevice],
    t: datetime,
    rng: np.random.Generator,
    truth_out: Path | None,
) -> None:
    """In follow mode: a new scenario in the next minutes, on devices not busy now."""
    busy = {d for s in sim.scenarios if s.end > t for d in s.effects}
    free = [d for d in devices if d.device_id not in busy]
    name = SCENARIOS[int(rng.integers(len(SCENARIOS) - 2))]  # not the last two (see names)
    try:
        (new,) = plan(free, [name], t, timedelta(minutes=20), rng)
    except ValueError:
        return
    sim.scenarios.append(new)
    if truth_out is not None:
        with truth_out.open("a") as fh:
            fh.write(json.dumps(new.truth(), ensure_ascii=False) + "\n")
    log.info("scenario injected", extra={"scenario": new.name, "start": new.start.isoformat()})
