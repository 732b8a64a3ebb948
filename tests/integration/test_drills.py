"""Drills on the real services: hostile traffic, a Kafka restart and a PostgreSQL outage
mid-run lose and duplicate nothing; the security probes find nothing."""

from __future__ import annotations

import pytest

from cityops.drills import run_drills
from cityops.settings import Settings

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
