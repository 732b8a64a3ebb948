"""docker-compose.yml describes the same stack for hosts with Docker."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_has_the_three_services_with_healthchecks() -> None:
    services = load()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb-ha:")
    for name in ("kafka", "mosquitto", "timescaledb"):
        assert "test" in services[name]["healthcheck"], name


def test_platform_services_wait_for_healthy_dependencies_and_use_one_image() -> None:
    services = load()["services"]
    platform = [s for s in services.values() if s.get("build") == "."]
    assert platform, "no platform service is built from the Dockerfile"
    assert {s["image"] for s in platform} == {"cityops:latest"}
    for svc in platform:
        deps = svc["depends_on"]
        for name in ("kafka", "mosquitto", "timescaledb"):
            if name in deps:
                assert deps[name]["condition"] == "service_healthy"


def test_secrets_are_required_from_the_environment() -> None:
    text = COMPOSE.read_text()
    for var in ("CITYOPS_DB_PASSWORD", "CITYOPS_MQTT_PASSWORD", "CITYOPS_MQTT_ADMIN_PASSWORD"):
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert uses, var
        assert all(u.startswith(":?") for u in uses), f"{var} has a default: {uses}"


def test_every_replication_factor_is_one_on_the_single_broker() -> None:
    env = load()["services"]["kafka"]["environment"]
    factors = {k: v for k, v in env.items() if "REPLICATION_FACTOR" in k or "MIN_ISR" in k}
    assert factors
    assert set(factors.values()) == {1}


def test_the_cockpit_api_is_a_service_with_a_health_check() -> None:
    api = load()["services"]["api"]
    assert api["command"] == ["api", "serve"]
    assert api["image"] == "cityops:latest"
    assert api["environment"]["CITYOPS_API_HOST"] == "0.0.0.0"  # noqa: S104  # inside its container
    assert api["environment"]["CITYOPS_DB_DSN"].startswith("postgresql://")
    assert api["ports"] == ["127.0.0.1:8400:8400"]
    assert "/health" in " ".join(api["healthcheck"]["test"])


def test_the_broker_is_mosquitto_2_1_configured_like_the_local_stack() -> None:
    from cityops.stack.mosquitto import MAX_INFLIGHT, MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES

    compose = load()
    assert compose["services"]["mosquitto"]["image"] == "eclipse-mosquitto:2.1"
    conf = compose["configs"]["mosquitto_conf"]["content"].splitlines()
    assert "plugin /usr/lib/mosquitto_persist_sqlite.so" in conf
    assert "plugin /usr/lib/mosquitto_dynamic_security.so" in conf
    assert "plugin_opt_flush_period 0" in conf
    assert f"max_queued_messages {MAX_QUEUED_MESSAGES}" in conf
    assert f"max_queued_bytes {MAX_QUEUED_BYTES}" in conf
    assert f"max_inflight_messages {MAX_INFLIGHT}" in conf
    assert not any(line.startswith(("password_file", "acl_file")) for line in conf)
    assert "use_identity_as_username true" in conf
