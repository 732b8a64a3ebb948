"""Short variants of the benchmarks that span the whole platform: they run end to end on
the real services and report what they promise (the full runs stay `cityops bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench
from cityops.settings import Settings

pytestmark = pytest.mark.integration


def test_e2e_on_one_and_three_kafka_nodes_loses_nothing_and_reports_both(
    live_stack: Settings,
) -> None:
    result = json.loads(
        bench.dumps(
            bench.run("e2e", messages=20_000, rates=(1000.0,), seconds=6.0, kafka_brokers=3)
        )
    )
    assert result["name"] == "e2e"
    assert result["kafka_nodes"] == 1
    replicated = result["replicated"]
    assert replicated["kafka_nodes"] == 3
    for side in (result, replicated):
        assert side["lost"] == 0
        assert side["readings_per_s"] > 0
        leaks = side["latency"]["1000"]
        assert leaks["leaks"] == 2
        assert leaks["leaks_seen"] >= 1
        assert {"ingest", "sink", "worker", "api", "mosquitto"} <= set(side["cpu_pct"])
    assert "kafka" in result["cpu_pct"]
    assert {"kafka-1", "kafka-2", "kafka-3"} <= set(replicated["cpu_pct"])
    assert result["replication_cost_pct"] == pytest.approx(
        100.0 * (1.0 - replicated["readings_per_s"] / result["readings_per_s"]), abs=0.1
    )


def test_ingest_over_plaintext_and_tls_loses_nothing_and_reports_both(
    live_stack: Settings,
) -> None:
    result = json.loads(
        bench.dumps(bench.run("ingest", messages=20_000, devices=40, latency_s=2.0, accounts=0))
    )
    assert result["name"] == "ingest"
    assert result["lost"] == 0
    assert result["with_accounts"] is None
    tls = result["tls"]
    assert tls is not None, "the stack's broker has a TLS listener for devices"
    for side in (result, tls):
        assert side["readings_per_s"] > 0
        assert side["single_bridge_per_s"] > 0
        assert side["raw_mqtt_per_s"] > 0
        assert side["ratio"] == pytest.approx(
            side["single_bridge_per_s"] / side["raw_mqtt_per_s"], rel=0.01
        )
    assert 0 < result["p50_ms"] <= result["p99_ms"]


@pytest.mark.parametrize("tls", [True, False], ids=["https", "plain"])
def test_push_in_batches_and_single_reports_loses_nothing(live_stack: Settings, tls: bool) -> None:
    result = json.loads(
        bench.dumps(bench.run("push", seconds=2.0, clients=1, connections=4, devices=50, tls=tls))
    )
    assert result["name"] == "push"
    assert result["tls"] is tls
    assert result["lost"] == 0
    for label, size in (("batched", 50), ("single", 1)):
        phase = result[label]
        assert set(phase["statuses"]) == {"200"}, phase["statuses"]
        assert phase["requests"] > 0
        assert phase["readings_per_s"] == pytest.approx(phase["requests_per_s"] * size, rel=0.02)
        assert 0 < phase["p50_ms"] <= phase["p99_ms"]
    assert result["readings_per_s"] == result["batched"]["readings_per_s"]
    assert result["requests_per_s"] == result["single"]["requests_per_s"]


@pytest.mark.parametrize(
    ("platform", "batched"),
    [
        ("ctwing", "union"),
        ("iotda", "services"),
        ("onenet", "single"),
        ("hik-isc", "events"),
        ("isapi", "single"),
    ],
)
def test_push_as_a_platform_one_message_a_request_and_batches_loses_nothing(
    live_stack: Settings, platform: str, batched: str
) -> None:
    result = json.loads(
        bench.dumps(
            bench.run("push", seconds=2.0, clients=1, connections=4, devices=50, platform=platform)
        )
    )
    assert result["name"] == "push"
    assert result["platform"] == platform
    assert result["lost"] == 0
    for label, size in ((batched, 50 if batched != "single" else 1), ("single", 1)):
        phase = result[label]
        assert set(phase["statuses"]) == {"200"}, phase["statuses"]
        assert phase["requests"] > 0
        assert phase["readings_per_s"] == pytest.approx(phase["requests_per_s"] * size, rel=0.02)
    assert result["readings_per_s"] == result[batched]["readings_per_s"]
    assert result["requests_per_s"] == result["single"]["requests_per_s"]
    assert 0 < result["p50_ms"] <= result["p99_ms"]


def test_device_list_of_a_city_counts_finds_and_times_every_query(live_stack: Settings) -> None:
    result = json.loads(bench.dumps(bench.run("devices", devices=4000, repeats=3)))
    assert result["name"] == "devices"
    q = result["queries"]
    totals = {name: q[name]["total"] for name in q}
    assert totals["first_page"] == totals["deep_page"] == totals["recent_first"] == 4000
    assert totals["kind"] == 1000  # one device in four
    assert totals["grid_cell"] == 4  # 1,000 cells
    assert totals["search_id"] == totals["search_asset"] == 100
    assert totals["search_none"] == 0
    assert 400 <= totals["offline"] < 4000  # reported offline, or never heard
    assert q["first_page"]["items"] == q["deep_page"]["items"] == result["page"]
    for name, query in q.items():
        assert 0 < query["p50_ms"] <= query["p99_ms"], name
    assert result["table_p99_ms"] == max(x["p99_ms"] for x in q.values() if not x["needs_status"])


def test_detect_reports_quality_per_family_kernel_and_worker_rates(live_stack: Settings) -> None:
    result = json.loads(
        bench.dumps(
            bench.run(
                "detect",
                runs=1,
                series_per_kind=4,
                length=600,
                kernel_batch=200,
                worker_readings=100_000,
                sweep_readings=0,
                family_series=2,
                seed=11,
            )
        )
    )
    assert result["name"] == "detect"
    assert result["families_seed"] == 11
    families = result["families"]
    assert set(families) == {
        "daily",
        "steps",
        "drifts",
        "variance",
        "spikes",
        "dropouts",
        "stuck",
        "random_walk",
    }
    for name, fam in families.items():
        assert fam["false_per_1k"] >= 0
        if name != "daily":
            assert fam["events"] > 0
            assert 0.0 <= fam["recall"] <= 1.0
    assert set(result["baseline_targets_met"]) == set(families)
    assert result["baseline_us_per_reading"] > 0
    assert {"rolling_z"} <= set(result["compared"])
    assert 0.0 <= result["precision"] <= 1.0
    assert 0.0 <= result["recall"] <= 1.0
    assert result["kernel_readings_per_s"] > 0
    assert result["worker_readings_per_s"] > 0
    assert result["worker_readings"] == 100_000
    assert result["worker_joint_readings_per_s"] > 0
    assert result["worker_joint_share"] == 0.25
    assert result["sweep"] == []
    assert result["step_readings_per_s"] > 0


DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"


@pytest.mark.skipif(not DATASETS.exists(), reason=f"no shared data sets at {DATASETS}")
def test_detection_on_public_labelled_data_beats_the_references_and_meets_its_targets() -> None:
    from bench import _detect_real

    result = json.loads(bench.dumps(_detect_real.run(short=True)))
    batadal, gecco = result["batadal"], result["gecco"]
    references = result["references"]
    # BATADAL: learn on training_1, judge test causally (S of the battle).
    assert batadal["s"] >= 0.93
    assert batadal["s_cm"] >= 0.85
    assert batadal["s"] > references["batadal"]["always"]["s"] == 0.75
    assert batadal["s"] > references["batadal"]["baseline_per_metric"]["s"]
    # GECCO 2018 (its first 60,000 rows): row-wise F1 after 14 days of learning.
    assert gecco["f1"] >= 0.3
    assert gecco["f1"] > references["gecco"]["baseline_per_metric"]["f1"]
    assert gecco["f1"] > references["gecco"]["always"]["f1"]
    assert result["short"] is True
