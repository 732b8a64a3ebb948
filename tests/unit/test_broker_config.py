"""The device broker's configuration: Mosquitto ≥ 2.1 with persist-sqlite and dynamic
security, queues sized for a bridge that is away, TLS listeners for devices."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityops.stack import mosquitto_build
from cityops.stack.mosquitto import MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES, Mosquitto

INSTALL = mosquitto_build.MosquittoInstall(
    broker=Path("/opt/m/sbin/mosquitto"),
    plugin_dir=Path("/opt/m/lib"),
    bin_dir=Path("/opt/m/bin"),
    version="2.1.2",
)


def broker(tmp_path: Path, **kw: object) -> Mosquitto:
    return Mosquitto(tmp_path, "127.0.0.1", 11883, "p", "pw", **kw)  # type: ignore[arg-type]


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_the_broker_persists_to_sqlite_and_takes_accounts_from_dynamic_security(
    tmp_path: Path,
) -> None:
    conf = lines(broker(tmp_path, flush_period_s=0).config(INSTALL))
    assert "plugin /opt/m/lib/mosquitto_persist_sqlite.so" in conf
    assert "plugin_opt_flush_period 0" in conf
    assert "plugin /opt/m/lib/mosquitto_dynamic_security.so" in conf
    assert f"plugin_opt_config_file {tmp_path / 'mosquitto' / 'dynamic-security.json'}" in conf
    assert "allow_anonymous false" in conf
    assert "persistence false" in conf  # the plugin persists, not the built-in file
    assert not any(c.startswith(("password_file", "acl_file")) for c in conf)
    # The plaintext listener is the platform's, on loopback only.
    assert conf[0] == "listener 11883 127.0.0.1"


def test_a_bridge_away_60_s_at_20k_readings_per_s_fits_in_its_session_queue() -> None:
    queued = 60 * 20_000
    assert 2 * queued <= MAX_QUEUED_MESSAGES
    assert queued * 400 <= MAX_QUEUED_BYTES  # a reading on the wire is ~200 bytes
    assert MAX_QUEUED_BYTES < 2**31  # the broker refuses larger values


def test_devices_get_a_password_listener_and_a_certificate_listener_over_tls(
    tmp_path: Path,
) -> None:
    conf = lines(
        broker(
            tmp_path, tls_listen="0.0.0.0:8883", cert_listen="0.0.0.0:8884", tls_dir=tmp_path
        ).config(INSTALL)
    )
    tls = conf.index("listener 8883 0.0.0.0")
    cert = conf.index("listener 8884 0.0.0.0")
    assert f"cafile {tmp_path / 'ca.crt'}" in conf[tls:cert]
    assert "require_certificate true" not in conf[tls:cert]
    after = conf[cert:]
    assert "require_certificate true" in after
    assert "use_identity_as_username true" in after
    assert f"keyfile {tmp_path / 'server.key'}" in after


def test_without_tls_settings_only_the_loopback_listener_is_configured(tmp_path: Path) -> None:
    conf = lines(broker(tmp_path).config(INSTALL))
    assert [c for c in conf if c.startswith("listener")] == ["listener 11883 127.0.0.1"]


@pytest.mark.parametrize(
    ("version", "usable"), [("2.0.11", False), ("2.0.21", False), ("2.1.0", True), ("3.0.1", True)]
)
def test_only_mosquitto_2_1_or_newer_is_used(version: str, usable: bool) -> None:
    assert mosquitto_build._at_least(version) is usable


def test_a_cache_without_both_plugins_is_not_taken_for_a_build(tmp_path: Path) -> None:
    prefix = tmp_path / "mosquitto-2.1.2"
    (prefix / "sbin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    (prefix / "sbin" / "mosquitto").write_text("")
    (prefix / "lib" / "mosquitto_dynamic_security.so").write_text("")
    assert mosquitto_build.cached(tmp_path) is None
