from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cityops.settings import Settings, fresh_env_lines
from ingest.broker_accounts import (
    ADMIN_ROLE,
    PLATFORM_ROLE,
    DeviceAccount,
    check_identifier,
    chunks,
    initial_config,
    password_hash,
    verify_password,
)

DSN = "postgresql://cityops:s3cret-pw@127.0.0.1:15432/cityops"


def make(**kw: object) -> Settings:
    base: dict[str, object] = {"mqtt_password": "mqtt-pw", "db_dsn": DSN, "_env_file": None}
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def test_redacted_config_hides_every_secret() -> None:
    shown = make().redacted()
    text = repr(shown)
    assert "s3cret-pw" not in text
    assert "mqtt-pw" not in text
    assert shown["db_dsn"] == "postgresql://cityops:**********@127.0.0.1:15432/cityops"
    assert shown["kafka_bootstrap"] == "127.0.0.1:19092"


def test_secrets_are_required_without_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITYOPS_MQTT_PASSWORD", raising=False)
    monkeypatch.delenv("CITYOPS_DB_DSN", raising=False)
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None)  # type: ignore[call-arg]
    missing = {e["loc"][0] for e in info.value.errors()}
    assert missing == {"mqtt_password", "db_dsn"}


def test_cities_come_comma_separated_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CITYOPS_CITIES", "320100, 320500")
    assert make().cities == ("320100", "320500")
    monkeypatch.setenv("CITYOPS_CITIES", "32010")
    with pytest.raises(ValidationError, match="6-digit"):
        make()


def test_addresses_are_parsed_for_the_stack() -> None:
    s = make(mqtt_url="mqtt://127.0.0.1:21883", kafka_bootstrap="127.0.0.1:29092")
    assert (s.mqtt_host, s.mqtt_port, s.kafka_port) == ("127.0.0.1", 21883, 29092)
    parts = s.db_parts()
    assert (parts.user, parts.password, parts.port, parts.dbname) == (
        "cityops",
        "s3cret-pw",
        15432,
        "cityops",
    )
    with pytest.raises(ValidationError, match="host:port"):
        make(kafka_bootstrap="localhost")


def test_a_cluster_of_three_gets_every_node_replicated_topics_and_two_in_sync() -> None:
    one = make()
    assert (one.kafka_nodes, one.kafka_replication, one.kafka_min_insync) == (
        [("127.0.0.1", 19092)],
        1,
        1,
    )
    three = make(kafka_brokers=3)
    assert three.kafka_bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    assert three.kafka_nodes == [("127.0.0.1", 19092), ("127.0.0.1", 19094), ("127.0.0.1", 19096)]
    assert (three.kafka_replication, three.kafka_min_insync) == (3, 2)
    listed = make(kafka_brokers=3, kafka_bootstrap="k1:9092,k2:9092,k3:9092")
    assert listed.kafka_nodes == [("k1", 9092), ("k2", 9092), ("k3", 9092)]
    assert make(kafka_brokers=5).kafka_replication == 3
    with pytest.raises(ValidationError, match="list every node, or only the first"):
        make(kafka_brokers=3, kafka_bootstrap="k1:9092,k2:9092")
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        make(kafka_brokers=0)


def test_a_cluster_node_names_every_voter_and_replicates_internal_topics(tmp_path: Path) -> None:
    from cityops.errors import StackError
    from cityops.stack.kafka import Kafka

    nodes = make(kafka_brokers=3).kafka_nodes
    kafka = Kafka(tmp_path, nodes, tmp_path / "cache", replication=3)
    assert [n.name for n in kafka.nodes] == ["kafka-1", "kafka-2", "kafka-3"]
    assert [n.dir for n in kafka.nodes] == [
        tmp_path / "kafka-cluster" / f"node-{i}" for i in (1, 2, 3)
    ]
    props = dict(
        line.split("=", 1) for line in kafka.node(2).properties().splitlines() if "=" in line
    )
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19094,CONTROLLER://127.0.0.1:19095"
    for key in ("default.replication.factor", "offsets.topic.replication.factor"):
        assert props[key] == "3"
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    single = Kafka(tmp_path, [("127.0.0.1", 19092)], tmp_path / "cache", replication=1)
    assert single.nodes[0].name == "kafka"
    assert single.nodes[0].dir == tmp_path / "kafka"
    with pytest.raises(StackError, match="ports overlap"):
        Kafka(tmp_path, [("127.0.0.1", 9092), ("127.0.0.1", 9093)], tmp_path, replication=2)


def test_the_longest_pause_counts_only_while_a_count_advances() -> None:
    from drills import Progress

    samples = [(0.0, 0), (1.0, 0), (2.0, 5), (3.0, 9), (4.0, 9), (5.0, 9), (9.5, 12), (10.0, 12)]
    assert Progress.longest_pause(samples) == 6.5
    assert Progress.longest_pause([(0.0, 3), (1.0, 3)]) is None


def test_fresh_env_has_different_random_secrets_each_time() -> None:
    assert fresh_env_lines() != fresh_env_lines()
    assert any(line.startswith("CITYOPS_DB_DSN=postgresql://") for line in fresh_env_lines())


def test_mosquitto_password_hash_verifies_only_the_right_password() -> None:
    hashed = password_hash("pw-1")
    assert hashed.startswith("$7$101$")
    assert verify_password("pw-1", hashed)
    assert not verify_password("pw-2", hashed)


def test_device_acl_allows_only_its_own_topics() -> None:
    account = DeviceAccount("320100", "gw-7", "sensors")
    assert account.username == "320100.gw-7"
    assert account.role == "device.320100.gw-7"
    acls = {(a["acltype"], a["topic"]) for a in account.acls()}
    assert acls == {
        ("publishClientSend", "cityops/320100/sensors/gw-7/up"),
        ("publishClientSend", "cityops/320100/sensors/gw-7/status"),
        ("subscribePattern", "cityops/320100/sensors/gw-7/cmd/#"),
    }
    camera = DeviceAccount("320100", "cam-1", "cameras")
    assert ("publishClientSend", "cityops/320100/cameras/cam-1/event") in {
        (a["acltype"], a["topic"]) for a in camera.acls()
    }


def test_a_new_broker_holds_only_the_admin_and_platform_accounts_and_denies_the_rest() -> None:
    config = initial_config(("cityops-admin", "a-pw"), ("cityops-platform", "p-pw"))
    assert config["defaultACLAccess"]["publishClientSend"] is False
    assert config["defaultACLAccess"]["subscribe"] is False
    clients = {c["username"]: c for c in config["clients"]}
    assert set(clients) == {"cityops-admin", "cityops-platform"}
    assert verify_password("a-pw", clients["cityops-admin"]["encoded_password"])
    assert verify_password("p-pw", clients["cityops-platform"]["encoded_password"])
    assert clients["cityops-admin"]["roles"] == [{"rolename": ADMIN_ROLE}]
    roles = {r["rolename"]: r["acls"] for r in config["roles"]}
    admin_topics = {a["topic"] for a in roles[ADMIN_ROLE]}
    assert not any(t.startswith("cityops") for t in admin_topics)
    assert {a["topic"] for a in roles[PLATFORM_ROLE]} >= {"cityops/#"}


def test_control_commands_are_split_into_messages_under_the_size_limit() -> None:
    commands = [
        {"command": "createClient", "username": f"u{i}", "password": "x" * 50} for i in range(1000)
    ]
    parts = list(chunks(commands, limit=4096))
    assert [c for part in parts for c in part] == commands
    import json

    tag = "0" * 32  # what execute() adds: a correlation id per message
    tagged = [[{**c, "correlationData": tag} for c in part] for part in parts]
    assert all(len(json.dumps({"commands": part})) <= 4096 for part in tagged)
    assert len(parts) > 1


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "x y", "", "a\nuser admin"])
def test_identifiers_that_could_escape_a_topic_or_acl_line_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        check_identifier(bad, "device id")
