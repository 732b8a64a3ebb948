"""`cityops push serve` over HTTPS on the real Kafka and PostgreSQL: what a carrier
platform pushes, signed or with its key, lands in the readings topic as batch records
before the answer; everything else is refused or dead-lettered with its reason."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from cityops.settings import Settings
from lifeline import codec, topics
from lifeline.devices import Device, gas_well
from lifeline.signature import sign
from store.devices import upsert_devices
from store.push_sources import create_source, revoke_source
from tests.integration.api_support import random_city
from tests.integration.helpers import TailConsumer, push_service

pytestmark = pytest.mark.integration


@dataclass
class Push:
    url: str
    city: str
    other_city: str
    ca: ssl.SSLContext
    dsn: str
    key: str
    secret: str
    slow_key: str
    other_key: str

    def post(self, body: bytes, headers: dict[str, str], city: str | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/ingest/{city or self.city}/push",
            content=body,
            headers={"content-type": "application/json", **headers},
            verify=self.ca,
            timeout=30,
        )

    def signed(self, body: bytes, at: int | None = None) -> httpx.Response:
        return self.post(
            body,
            {"x-cityops-source": "ctwing", "x-cityops-signature": sign(self.secret, body, at)},
        )


def _device(city: str, device_id: str, source: str | None, **kw: object) -> Device:
    return gas_well(city, device_id, transport="http" if source else "mqtt", source=source, **kw)


@pytest.fixture(scope="module")
def push(
    db_dsn: str, live_stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Push]:
    city, other_city = random_city(), random_city()
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        source, key, *_ = create_source(conn, city, "ctwing")
        _slow, slow_key, *_ = create_source(conn, city, "slow", rate_per_s=5)
        _vendor, _vendor_key, *_ = create_source(conn, city, "acme", vendor="acme-lora")
        _other, other_key, *_ = create_source(conn, other_city, "ctwing")
        devices = [
            _device(city, "nb-1", "ctwing"),
            _device(city, "nb-2", "ctwing"),
            _device(city, "slow-1", "slow"),
            _device(city, "acme-1", "acme", vendor="acme-lora"),
            _device(city, "mqtt-1", None),
            _device(other_city, "nb-9", "ctwing"),
        ]
        creds = {d.device_id: (f"{d.city}.{d.device_id}", "") for d in devices}
        upsert_devices(conn, [d for d in devices if d.city == city], creds)
        upsert_devices(conn, [d for d in devices if d.city == other_city], creds)
    logs: Path = tmp_path_factory.mktemp("push")
    with push_service(db_dsn, live_stack, [city, other_city], logs) as (url, ca):
        yield Push(url, city, other_city, ca, db_dsn, key, source.hmac_secret, slow_key, other_key)


def _report(device: str, minutes_ago: int, value: float) -> dict[str, object]:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return {"device_id": device, "ts": ts.isoformat(), "metric": "ch4", "value": value}


async def _readings_during(push: Push, send: object, count: int) -> list[codec.WireReading]:
    async with TailConsumer(_settings(), topics.READINGS.name) as tail:
        assert callable(send)
        await asyncio.to_thread(send)
        found = await tail.collect(lambda v, _k: codec.decode(v)[0].city == push.city, count)
    return [codec.decode(v)[0] for _k, v in found]


def _settings() -> Settings:
    from cityops.settings import get_settings

    return get_settings()


def test_a_signed_batch_is_in_kafka_when_the_answer_comes(push: Push) -> None:
    reports = [_report("nb-1", 3, 1.0), _report("nb-2", 3, 2.0), _report("nb-1", 2, 3.5)]
    body = json.dumps({"reports": reports}).encode()
    answers: list[httpx.Response] = []
    got = asyncio.run(_readings_during(push, lambda: answers.append(push.signed(body)), 3))
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json() == {"reports": 3, "readings": 3, "dead_lettered": 0, "errors": []}
    assert sorted((r.device_id, r.value) for r in got) == [
        ("nb-1", 1.0),
        ("nb-1", 3.5),
        ("nb-2", 2.0),
    ]
    assert {r.unit for r in got} == {"%LEL"}


def test_the_ingest_key_works_as_well_and_a_retry_is_answered_alike(push: Push) -> None:
    body = json.dumps(_report("nb-2", 1, 4.0)).encode()
    bearer = {"authorization": f"Bearer {push.key}"}
    first, retry = push.post(body, bearer), push.post(body, bearer)
    assert first.status_code == retry.status_code == 200
    assert first.json()["readings"] == retry.json()["readings"] == 1


def test_bad_credentials_stale_times_and_replays_are_refused(push: Push) -> None:
    body = json.dumps(_report("nb-1", 1, 1.0)).encode()
    assert push.post(body, {}).json()["error"] == "unauthenticated"
    assert push.post(body, {}).status_code == 401
    forged = {"x-cityops-source": "ctwing", "x-cityops-signature": sign("guess", body)}
    assert push.post(body, forged).json()["error"] == "bad_signature"
    stale = push.signed(body, int(time.time()) - 3600)
    assert (stale.status_code, stale.json()["error"]) == (401, "stale_signature")
    headers = {"x-cityops-source": "ctwing", "x-cityops-signature": sign(push.secret, body)}
    assert push.post(body, headers).status_code == 200
    replay = push.post(body, headers)
    assert (replay.status_code, replay.json()["error"]) == (409, "replayed")
    other = push.post(body, {"authorization": f"Bearer {push.other_key}"})
    assert (other.status_code, other.json()["error"]) == (403, "wrong_city")


def test_reports_a_source_may_not_send_are_dead_lettered_and_the_rest_kept(push: Push) -> None:
    reports = [
        _report("nb-1", 1, 2.0),
        _report("nb-9", 1, 2.0),  # the same source's name in another city
        _report("mqtt-1", 1, 2.0),  # an MQTT device
        _report("slow-1", 1, 2.0),  # another source's device
        _report("ghost", 1, 2.0),
        {**_report("nb-2", 1, 2.0), "value": 10_000.0},
        "not an object",
    ]
    body = json.dumps(reports).encode()

    async def run() -> tuple[httpx.Response, list[dict[str, object]]]:
        async with TailConsumer(_settings(), topics.DEADLETTER.name) as tail:
            answer = await asyncio.to_thread(push.signed, body)
            want = f"push/{push.city}/ctwing"
            found = await tail.collect(lambda v, _k: json.loads(v)["mqtt_topic"] == want, 6)
        return answer, [json.loads(v) for _k, v in found]

    answer, letters = asyncio.run(run())
    assert answer.status_code == 200
    result = answer.json()
    assert (result["readings"], result["dead_lettered"]) == (1, 6)
    assert [(e["index"], e["reason"]) for e in result["errors"]] == [
        (1, "unknown_device"),
        (2, "not_this_source"),
        (3, "not_this_source"),
        (4, "unknown_device"),
        (5, "out_of_range"),
        (6, "bad_shape"),
    ]
    assert sorted(str(letter["reason"]) for letter in letters) == sorted(
        e["reason"] for e in result["errors"]
    )


def test_a_body_that_is_not_json_is_refused_and_dead_lettered(push: Push) -> None:
    body = b"\x00\x01 not json"

    async def run() -> tuple[httpx.Response, list[tuple[bytes | None, bytes]]]:
        async with TailConsumer(_settings(), topics.DEADLETTER.name) as tail:
            answer = await asyncio.to_thread(push.signed, body)
            found = await tail.collect(lambda v, _k: json.loads(v)["reason"] == "bad_json", 1)
        return answer, found

    answer, found = asyncio.run(run())
    assert (answer.status_code, answer.json()["error"]) == (400, "bad_json")
    assert len(found) == 1


def test_an_oversize_body_is_refused(push: Push) -> None:
    body = json.dumps([_report("nb-1", 1, 1.0)] * 20_000).encode()
    answer = push.signed(body)
    assert (answer.status_code, answer.json()["error"]) == (413, "oversize")


def test_a_source_over_its_rate_is_told_when_to_retry(push: Push) -> None:
    bearer = {"authorization": f"Bearer {push.slow_key}"}
    first = push.post(json.dumps([_report("slow-1", 5, 1.0)] * 5).encode(), bearer)
    assert first.status_code == 200
    second = push.post(json.dumps([_report("slow-1", 4, 1.0)] * 5).encode(), bearer)
    assert second.status_code == 429
    assert second.json()["error"] == "rate_limited"
    assert int(second.headers["retry-after"]) >= 1


def test_a_vendor_source_reports_in_its_own_shape(push: Push) -> None:
    ms = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp() * 1000)
    report = {
        "meta": {"sn": "acme-1"},
        "payload": {"frames": [{"collectTime": ms, "sensors": {"methane": {"val": 0.5}}}]},
    }
    body = json.dumps(report).encode()
    with psycopg.connect(push.dsn) as conn:
        row = conn.execute(
            "SELECT hmac_secret FROM push_sources WHERE city = %s AND name = 'acme'", (push.city,)
        ).fetchone()
    assert row is not None
    headers = {"x-cityops-source": "acme", "x-cityops-signature": sign(row[0], body)}
    answers: list[httpx.Response] = []
    got = asyncio.run(_readings_during(push, lambda: answers.append(push.post(body, headers)), 1))
    assert answers[0].status_code == 200, answers[0].text
    assert [(r.device_id, r.metric, r.unit) for r in got] == [("acme-1", "ch4", "%LEL")]
    assert got[0].value == pytest.approx(10.0)  # 0.5 %vol


def test_a_revoked_source_is_refused_within_seconds(push: Push) -> None:
    with psycopg.connect(push.dsn, autocommit=True) as conn:
        _source, key, *_ = create_source(conn, push.city, "short-lived")
        deadline = time.monotonic() + 15
        body = b"{}"
        while push.post(body, {"authorization": f"Bearer {key}"}).status_code == 401:
            assert time.monotonic() < deadline, "a new source was not picked up"
            time.sleep(0.5)
        assert revoke_source(conn, push.city, "short-lived")
    deadline = time.monotonic() + 15
    while push.post(body, {"authorization": f"Bearer {key}"}).status_code != 401:
        assert time.monotonic() < deadline, "a revoked source was still accepted"
        time.sleep(0.5)


def test_the_simulated_carrier_platform_delivers_every_report_and_repeats_some(
    push: Push, live_stack: Settings
) -> None:
    from simulators.carrier import CarrierPlatform

    carrier = CarrierPlatform(
        push.url,
        push.city,
        {"ctwing": push.secret},
        ca_file=live_stack.tls_dir / "ca.crt",
        repeat_rate=1.0,  # every batch's answer "lost": each comes again with the next
    )
    reports = [
        {
            "device_id": f"nb-{1 + i % 2}",
            "ts": _report("nb-1", 30 - i, 0)["ts"],
            "values": {"ch4": i},
        }
        for i in range(6)
    ]

    def play() -> None:
        carrier.push("ctwing", reports[:3])
        carrier.push("ctwing", reports[3:])
        carrier.flush()

    got = asyncio.run(_readings_during(push, play, 9))
    carrier.close()
    # Three reports, then those three again with the next three, then those six again
    # (answered 409 when sent within the same second as their first time: in already).
    assert carrier.stats.reports + carrier.stats.answered_before == 15
    assert carrier.stats.repeated == 9
    assert carrier.stats.dead_lettered == 0
    assert sorted({(r.device_id, r.value) for r in got}) == sorted(
        (r["device_id"], float(r["values"]["ch4"]))
        for r in reports  # type: ignore[index]
    )
