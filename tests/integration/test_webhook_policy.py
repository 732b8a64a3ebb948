"""Webhook destinations checked again when a push goes out: a policy tightened after a
hook was registered, or a host that resolves to this machine, stops the pushes (on the
real database, with a real receiver), and the delivery log says why."""

from __future__ import annotations

import secrets

import psycopg
import pytest

from cockpit_api.webhooks import Dispatcher
from store.webhooks import add_webhook, delivery_log, enqueue_deliveries
from tests.integration.api_support import (
    incident,
    random_city,
    store_incidents,
    webhook_receiver,
)

pytestmark = pytest.mark.integration


@pytest.mark.asyncio
async def test_a_push_to_a_destination_the_policy_no_longer_allows_is_refused(
    db_dsn: str,
) -> None:
    city = random_city()
    inc = incident(city)
    store_incidents(db_dsn, [inc])
    with webhook_receiver() as (url, received):
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            # Registered while the operator allowed 127.0.0.1 (CITYOPS_WEBHOOK_ALLOW)...
            add_webhook(conn, city, url, "")
            feed = 10**12 + secrets.randbelow(10**9)
            enqueue_deliveries(
                conn, [{"feed_id": feed, "incident_id": inc.incident_id, "city": city}]
            )
        # ...and pushed by a platform whose policy no longer does.
        dispatcher = Dispatcher(db_dsn, allow=())
        async with dispatcher.client() as http:
            assert await dispatcher.deliver_due(http) >= 1
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            (entry,) = delivery_log(conn, [city], inc.incident_id, 10)
        # With the address allowed again, the same platform delivers.
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            enqueue_deliveries(
                conn, [{"feed_id": feed + 1, "incident_id": inc.incident_id, "city": city}]
            )
        allowed = Dispatcher(db_dsn, allow=("127.0.0.1",))
        async with allowed.client() as http:
            assert await allowed.deliver_due(http) >= 1
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            states = [d["state"] for d in delivery_log(conn, [city], inc.incident_id, 10)]
    assert entry["state"] == "failed"
    assert entry["last_error"].startswith("destination refused: 127.0.0.1 is this machine")
    assert states == ["delivered", "failed"]
    assert len(received) == 1
