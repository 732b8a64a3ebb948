from __future__ import annotations

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
