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


def test_the_push_endpoint_serves_https_with_the_brokers_certificate() -> None:
    services = load()["services"]
    push = services["push"]
    assert push["command"] == ["push", "serve"]
    assert push["image"] == "cityops:latest"
    assert push["environment"]["CITYOPS_PUSH_PORT"] == "8443"
    assert push["ports"] == ["8443:8443"]
    pki = push["environment"]["CITYOPS_MQTT_TLS_DIR"]
    assert f"mosquitto-pki:{pki}:ro" in push["volumes"]
    # The init container leaves the key to the broker's user; the push service runs as it.
    assert "chown -R 1883:1883" in " ".join(services["mosquitto-init"]["command"])
    assert push["user"] == "1883"
    assert "https://127.0.0.1:8443/health" in " ".join(push["healthcheck"]["test"])


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


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of an override file: mappings key by key, the rest replaced."""
    out = dict(base)
    for k, v in override.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_the_cluster_variant_runs_three_replicating_nodes_every_client_knows() -> None:
    cluster = yaml.safe_load((COMPOSE.parent / "docker-compose.cluster.yml").read_text())
    services = _merged(load(), cluster)["services"]
    nodes = [services[n] for n in ("kafka", "kafka-2", "kafka-3")]
    assert [n["environment"]["KAFKA_NODE_ID"] for n in nodes] == [1, 2, 3]
    voters = {n["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for n in nodes}
    assert voters == {"1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert len({n["environment"]["CLUSTER_ID"] for n in nodes}) == 1
    for node in nodes:
        env = node["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert "test" in node["healthcheck"]
    assert len({n["environment"]["KAFKA_ADVERTISED_LISTENERS"] for n in nodes}) == 3
    platform = [s for s in services.values() if s.get("build") == "."]
    for svc in platform:
        assert svc["environment"]["CITYOPS_KAFKA_BROKERS"] == "3"
        assert svc["environment"]["CITYOPS_KAFKA_BOOTSTRAP"] == (
            "kafka:9092,kafka-2:9092,kafka-3:9092"
        )
        assert svc["environment"]["CITYOPS_DB_DSN"]  # the base file's variables remain
