"""Two `cityops api serve` processes behind one database, as behind a load balancer:
an alert is escalated once and each of its changes is pushed to a webhook once, and a
feed ticket issued by one replica opens (and resumes) the live feed on the other."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from cityops.processes import wait_ready
from cityops.settings import Settings
from cityops.stack.common import free_port
from tests.integration.api_support import (
    first_event,
    incident,
    key,
    random_city,
    store_incidents,
    webhook_receiver,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def replicas(
    db_dsn: str, live_stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    logs: Path = tmp_path_factory.mktemp("api-replicas")
    env = {
        **os.environ,
        "CITYOPS_DB_DSN": db_dsn,
        "CITYOPS_KAFKA_BOOTSTRAP": live_stack.kafka_bootstrap,
        "CITYOPS_API_ESCALATE_EVERY_S": "0.3",
        "CITYOPS_WEBHOOK_ALLOW": "127.0.0.1",  # the test's receiver
    }
    procs, urls = [], []
    for n in range(2):
        port = free_port()
        with (logs / f"api-{n}.log").open("ab") as fh:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "cityops.cli", "api", "serve", "--port", str(port)],
                    env=env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                )
            )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for n, url in enumerate(urls):
            wait_ready(url, procs[n], (logs / f"api-{n}.log").read_text)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def _onboarded(dsn: str, city: str) -> None:
    """A city the platform knows (webhooks are refused for unknown cities)."""
    from lifeline.devices import gas_well
    from store.devices import upsert_devices

    device = gas_well(city, "gw-1")
    with psycopg.connect(dsn, autocommit=True) as conn:
        upsert_devices(conn, [device], {"gw-1": (f"{city}.gw-1", "")})


def test_escalation_and_webhooks_happen_once_across_two_replicas(
    replicas: list[str], db_dsn: str
) -> None:
    city = random_city()
    admin = key(db_dsn, "city_admin", [city])
    _onboarded(db_dsn, city)
    headers = {"Authorization": f"Bearer {admin}"}
    with webhook_receiver() as (url, received):
        hook = httpx.post(
            f"{replicas[0]}/v1/cities/{city}/webhooks",
            json={"url": url, "name": "119 centre"},
            headers=headers,
        )
        assert hook.status_code == 201, hook.text
        # Orange and unacknowledged for 12 minutes: due for level 1 (10 minutes).
        late = datetime.now(UTC) - timedelta(minutes=12)
        old = incident(city, started=late)
        store_incidents(db_dsn, [old])
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE alerts SET created_at = %s WHERE alert_id = %s", (late, old.incident_id)
            )

        def state() -> tuple[int, int, list[tuple[str, int]]]:
            with psycopg.connect(db_dsn, autocommit=True) as conn:
                escalations = conn.execute(
                    "SELECT count(*) FROM alert_audit"
                    " WHERE alert_id = %s AND note LIKE 'escalated%%'",
                    (old.incident_id,),
                ).fetchone()
                feed = conn.execute(
                    "SELECT count(*) FROM incident_feed WHERE incident_id = %s", (old.incident_id,)
                ).fetchone()
                deliveries = conn.execute(
                    "SELECT state, attempts FROM webhook_deliveries WHERE alert_id = %s",
                    (old.incident_id,),
                ).fetchall()
            assert escalations is not None
            assert feed is not None
            return int(escalations[0]), int(feed[0]), [(str(s), int(a)) for s, a in deliveries]

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            escalations, changes, deliveries = state()
            if escalations and changes >= 2 and len(received) >= changes:
                break
            time.sleep(0.3)
        time.sleep(3)  # a second escalation or delivery would show by now
        escalations, changes, deliveries = state()
    assert escalations == 1
    assert changes == 2  # the alert raised, then escalated
    assert deliveries == [("delivered", 1)] * changes
    bodies = [b for b in received if old.incident_id.encode() in b]
    assert len(bodies) == changes


def test_a_feed_ticket_from_one_replica_opens_the_feed_on_the_other(
    replicas: list[str], db_dsn: str
) -> None:
    city = random_city()
    viewer = key(db_dsn, "viewer", [city])
    first, second = incident(city), incident(city)
    store_incidents(db_dsn, [first, second])
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT max(id) FROM incident_feed WHERE incident_id = %s", (first.incident_id,)
        ).fetchone()
    assert row is not None
    ticket = httpx.post(
        f"{replicas[0]}/v1/feed/ticket", headers={"Authorization": f"Bearer {viewer}"}
    ).json()["ticket"]
    with (
        httpx.Client(base_url=replicas[1], timeout=10) as c,
        c.stream("GET", "/v1/feed/sse", params={"ticket": ticket, "last_id": row[0]}) as r,
    ):
        assert r.status_code == 200
        data = first_event(r.iter_lines())
    assert data is not None
    assert data["incident_id"] == second.incident_id
    for url in replicas:
        again = httpx.get(f"{url}/v1/feed/sse", params={"ticket": ticket}, timeout=5)
        assert again.status_code == 401
        assert "used or expired" in again.json()["detail"]
