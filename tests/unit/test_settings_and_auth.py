from __future__ import annotations

import pytest
from pydantic import ValidationError

from cityops.settings import Settings, fresh_env_lines
from ingest.mqtt_auth import (
    AuthFiles,
    DeviceAccount,
    check_identifier,
    device_fragments,
    password_hash,
    platform_fragments,
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
    account = DeviceAccount("320100", "gw-7", "sensors", password_hash("x"))
    passwd, acl = device_fragments([account])
    assert passwd.startswith("320100.gw-7:$7$")
    assert "topic write cityops/320100/sensors/gw-7/up" in acl
    assert "topic write cityops/320100/sensors/gw-7/status" in acl
    assert "#" not in acl.replace("cmd/#", "")


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "x y", "", "a\nuser admin"])
def test_identifiers_that_could_escape_a_topic_or_acl_line_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        check_identifier(bad, "device id")


def test_auth_files_render_every_fragment(tmp_path: object) -> None:
    from pathlib import Path

    files = AuthFiles(Path(str(tmp_path)))
    files.write_fragment("platform", *platform_fragments("cityops-platform", "pw"))
    files.write_fragment(
        "devices", *device_fragments([DeviceAccount("320100", "d1", "sensors", "h")])
    )
    files.render()
    assert files.passwd.read_text().count("\n") == 2
    acl = files.acl.read_text()
    assert "user cityops-platform" in acl
    assert "user 320100.d1" in acl
    assert oct(files.passwd.stat().st_mode)[-3:] == "600"
