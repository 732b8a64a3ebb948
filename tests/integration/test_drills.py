"""Drills on the real services: hostile traffic, Mosquitto restarted and killed, a bridge
kept away, a Kafka restart, a PostgreSQL outage and workers killed mid-run lose and
duplicate nothing; the security probes find nothing."""

from __future__ import annotations

import pytest

from cityops.settings import Settings
from drills import run_drills

pytestmark = pytest.mark.integration


def test_hostile_traffic_and_broker_and_database_outages_lose_nothing(
    live_stack: Settings,
) -> None:
    result = run_drills(live_stack, ["security", "hostile", "kafka", "postgres"])
    table = {row["name"]: row for row in result["table"]}
    assert result["drills"] == 4
    assert table["security"]["detail"]["findings"] == []
    assert table["security"]["detail"]["probes"] >= 100
    assert result["failed"] == 0, result
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    hostile = table["hostile"]["detail"]
    assert sum(hostile["deadlettered"].values()) == hostile["hostile"] == 10_000
    assert set(hostile["deadlettered"]) <= {
        "bad_json",
        "bad_shape",
        "bad_timestamp",
        "oversize",
        "bad_value",
        "out_of_range",
    }
    assert table["postgres"]["stored"] == table["postgres"]["sent"]
    assert table["kafka"]["recovery_s"] is not None


def test_the_device_broker_restarted_or_killed_and_a_bridge_kept_away_lose_nothing(
    live_stack: Settings,
) -> None:
    """Readings the broker acknowledged survive its restart and its kill -9; a bridge
    killed -9 finds its share of the readings queued when it returns."""
    result = run_drills(live_stack, ["mosquitto", "mosquitto-crash", "bridge"], short=True)
    table = {row["name"]: row for row in result["table"]}
    assert result["failed"] == 0, result
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    for name in ("mosquitto", "mosquitto-crash", "bridge"):
        assert table[name]["stored"] == table[name]["sent"] > 0
        assert table[name]["recovery_s"] is not None
    assert table["bridge"]["detail"]["away_s"] == 10.0


def test_a_killed_worker_and_a_lost_group_member_lose_and_repeat_nothing(
    live_stack: Settings,
) -> None:
    """kill -9 mid-leak: restarted, the worker recovers its state (no second anomaly or
    incident for a leak in progress); of two workers, the survivor takes over."""
    result = run_drills(live_stack, ["worker", "workers"])
    table = {row["name"]: row for row in result["table"]}
    assert result["failed"] == 0, result
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert table["worker"]["sent"] == table["worker"]["stored"] == 100_000
    for name in ("worker", "workers"):
        detail = table[name]["detail"]
        assert detail["anomalies"] == detail["incidents"] == detail["expected"] == 50
        assert detail["incidents_cleared"] == 50
        assert table[name]["recovery_s"] is not None
