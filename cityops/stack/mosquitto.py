"""Mosquitto 2.1 with persist-sqlite (sessions and queued messages survive restarts and
kill -9) and dynamic security (accounts and ACLs changed live, never a reload)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from cityops.errors import StackError
from cityops.stack import mosquitto_build
from cityops.stack.common import (
    ServiceStatus,
    StartResult,
    chown_tree,
    is_root,
    port_open,
    read_pid,
    spawn,
    stop_pid,
    tail,
    wait_until,
)
from ingest.broker_accounts import BrokerAccountError, BrokerAdmin, initial_config

SERVICE_USER = "mosquitto"
#: Readings a session may hold while its subscriber is away: a bridge away 60 s at
#: 20,000 readings/s queues 1.2 million; this leaves room for 2.5 times that.
MAX_QUEUED_MESSAGES = 3_000_000
#: QoS 1 messages in flight per client each way.
MAX_INFLIGHT = 10_000
#: Bytes of payload a session may hold while its subscriber is away (a reading is ~200 B;
#: the broker takes at most 2^31 - 1).
MAX_QUEUED_BYTES = 1024**3


class Mosquitto:
    name = "mqtt"

    def __init__(
        self,
        stack_dir: Path,
        host: str,
        port: int,
        user: str,
        password: str,
        *,
        admin: tuple[str, str] | None = None,
        flush_period_s: int = 0,
        cache_dir: Path | None = None,
        tls_listen: str = "",
        cert_listen: str = "",
        tls_dir: Path | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.admin = admin
        self.flush_period_s = flush_period_s
        self.cache_dir = cache_dir
        self.dir = stack_dir / "mosquitto"
        self.data_dir = self.dir / "data"
        self.pid_file = self.dir / "mosquitto.pid"
        self.log_file = self.dir / "mosquitto.log"
        self.stdout_file = self.dir / "stdout.log"
        self.dynsec_file = self.dir / "dynamic-security.json"
        self.install: mosquitto_build.MosquittoInstall | None = None
        self.tls_listen, self.cert_listen = tls_listen, cert_listen
        self.tls_dir = tls_dir or stack_dir / "pki"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def config(self, install: mosquitto_build.MosquittoInstall) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            "protocol mqtt",
            "allow_anonymous false",
            "persistence false",
            f"persistence_location {self.data_dir}/",
            f"plugin {install.persist_sqlite}",
            f"plugin_opt_flush_period {self.flush_period_s}",
            "plugin_opt_sync normal",
            f"plugin {install.dynamic_security}",
            f"plugin_opt_config_file {self.dynsec_file}",
            *self._tls_listeners(),
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            f"max_queued_bytes {MAX_QUEUED_BYTES}",
            # QoS 1 messages in flight per client each way (the Receive Maximum the
            # broker announces; a client's own, e.g. a bridge's, applies to what it
            # receives). 2.1.2 warns on every message at 0 and at 65535.
            f"max_inflight_messages {MAX_INFLIGHT}",
            # Device payloads are small; the admin account's account commands come in
            # messages of up to 1.9 MB (see ingest.broker_accounts).
            "max_packet_size 2097152",
            "persistent_client_expiration 14d",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if is_root():
            lines.append(f"user {SERVICE_USER}")
        return "\n".join(lines) + "\n"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.crt"

    def _tls_listeners(self) -> list[str]:
        """Devices' listeners: TLS with user and password, and TLS with a client
        certificate whose common name is the user (no password)."""
        lines: list[str] = []
        files = [
            f"cafile {self.ca_file}",
            f"certfile {self.tls_dir / 'server.crt'}",
            f"keyfile {self.tls_dir / 'server.key'}",
            "tls_version tlsv1.2",
        ]
        if self.tls_listen:
            host, port = self.tls_listen.rsplit(":", 1)
            lines += [f"listener {port} {host}", "protocol mqtt", *files]
        if self.cert_listen:
            host, port = self.cert_listen.rsplit(":", 1)
            lines += [
                f"listener {port} {host}",
                "protocol mqtt",
                *files,
                "require_certificate true",
                "use_identity_as_username true",
            ]
        return lines

    def _ensure_tls_files(self, log: Callable[[str], None]) -> None:
        """A CA and the broker's certificate where none is provided."""
        if not (self.tls_listen or self.cert_listen):
            return
        from ingest.pki import ensure_ca, ensure_server_cert

        if not (self.tls_dir / "server.crt").exists():
            log(f"creating the device CA and the broker's TLS certificate in {self.tls_dir}")
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        if not self.ca_file.exists():
            ensure_ca(self.tls_dir)
        ensure_server_cert(ensure_ca(self.tls_dir), self.tls_dir)
        if is_root():
            import shutil

            shutil.chown(self.tls_dir / "server.key", user=SERVICE_USER, group=SERVICE_USER)

    def _admin(self) -> tuple[str, str]:
        if self.admin is None:
            raise StackError(
                "CITYOPS_MQTT_ADMIN_PASSWORD is not set: the broker's admin account manages "
                "device accounts; run `cityops secrets init` to add it to your env file"
            )
        return self.admin

    def up(self, log: Callable[[str], None]) -> StartResult:
        t0 = time.monotonic()
        admin = self._admin()
        from cityops.stack.kafka import default_cache_dir

        install = mosquitto_build.ensure(self.cache_dir or default_cache_dir(), log)
        self.install = install
        notes = [f"Mosquitto {install.version} from {install.broker.parent.parent}"]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pid = read_pid(self.pid_file, "mosquitto")
        if pid is not None and not self.dynsec_file.exists():
            log("replacing the running Mosquitto (password file) with one using dynamic security")
            self.down()
            pid = None
        if pid is not None:
            if not self.answers():
                # The platform password changed: set it through the admin account.
                self._set_platform_account(admin)
            return StartResult(self.name, False, time.monotonic() - t0, ["already running"])
        if not self.dynsec_file.exists():
            config = initial_config(admin, (self.user, self.password))
            self.dynsec_file.write_text(json.dumps(config, indent=2))
            self.dynsec_file.chmod(0o600)
        if is_root():
            _ensure_service_user()
        self._ensure_tls_files(log)
        (self.dir / "mosquitto.conf").write_text(self.config(install))
        if is_root():
            chown_tree(self.dir, SERVICE_USER)
        for address, setting in (
            (self.address, "CITYOPS_MQTT_URL"),
            (self.tls_listen, "CITYOPS_MQTT_TLS_LISTEN"),
            (self.cert_listen, "CITYOPS_MQTT_CERT_LISTEN"),
        ):
            if not address:
                continue
            host, port = address.rsplit(":", 1)
            if port_open("127.0.0.1" if _unspecified(host) else host, int(port)):
                raise StackError(
                    f"port {address} is taken by a process this stack did not start; "
                    f"stop it or set {setting} to another address"
                )
        log(f"starting Mosquitto {install.version} on {self.address}")
        spawn(
            [str(install.broker), "-c", str(self.dir / "mosquitto.conf")],
            self.stdout_file,
            self.pid_file,
        )

        def answers_or_ended() -> bool:
            return self.pid() is None or self.login_code() != -1

        if not wait_until(answers_or_ended, timeout=60, interval=0.2) or self.pid() is None:
            raise StackError(
                f"Mosquitto did not answer on {self.address}; last lines of "
                f"{self.log_file}:\n{tail(self.log_file)}\n{tail(self.stdout_file)}"
            )
        if not self.answers():
            self._set_platform_account(admin)
        return StartResult(self.name, True, time.monotonic() - t0, notes)

    def _set_platform_account(self, admin: tuple[str, str]) -> None:
        try:
            with BrokerAdmin(self.host, self.port, *admin, timeout=20) as broker:
                broker.set_platform_account(self.user, self.password)
        except BrokerAccountError as exc:
            raise StackError(
                f"the broker refused the platform login and the admin account could not set "
                f"it: {exc}. If the admin password changed, stop the stack and remove "
                f"{self.dynsec_file} (device accounts are then re-issued with "
                "`cityops onboard --rotate`)"
            ) from exc
        if not wait_until(self.answers, timeout=10):
            raise StackError(f"Mosquitto on {self.address} still refuses the platform login")

    def down(self) -> bool:
        return stop_pid(self.pid_file, "mosquitto", timeout=30)

    def kill(self) -> bool:
        """Kill the broker at once (SIGKILL), as a crash would."""
        import signal

        return stop_pid(self.pid_file, "mosquitto", timeout=0.1, sig=signal.SIGKILL)

    def pid(self) -> int | None:
        return read_pid(self.pid_file, "mosquitto")

    def rss_bytes(self) -> int | None:
        pid = self.pid()
        if pid is None:
            return None
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def login_code(self) -> int:
        return mqtt_login(self.host, self.port, self.user, self.password)

    def answers(self) -> bool:
        return self.login_code() == 0

    def status(self) -> ServiceStatus:
        pid = read_pid(self.pid_file, "mosquitto")
        rc = mqtt_login(self.host, self.port, self.user, self.password)
        detail = {0: "", -1: "no answer"}.get(rc, f"login refused (reason code {rc})")
        return ServiceStatus(self.name, rc == 0, self.address, pid, pid is not None, detail)


def _unspecified(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _ensure_service_user() -> None:
    """The unprivileged user the broker drops root to (Debian's package would add it)."""
    import pwd

    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        from cityops.stack.common import run

        run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/var/lib/mosquitto",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                SERVICE_USER,
            ]
        )


def mqtt_login(host: str, port: int, user: str, password: str, timeout: float = 3.0) -> int:
    """Connect and log in once: 0 on success, the CONNACK reason code, or -1 if unreachable."""
    result: list[int] = []
    done = threading.Event()

    def on_connect(_c: object, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        result.append(int(reason.value))
        done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)
    except OSError:
        return -1
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return result[0] if result else -1
