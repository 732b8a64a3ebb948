"""Mosquitto from Debian with a generated config, password file, ACL and persistence."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cityops.errors import StackError
from cityops.stack.common import (
    ServiceStatus,
    StartResult,
    chown_tree,
    ensure_debian_packages,
    is_root,
    port_open,
    read_pid,
    spawn,
    stop_pid,
    tail,
    wait_until,
)
from ingest.mqtt_auth import PLATFORM_FRAGMENT, AuthFiles, platform_fragments

MOSQUITTO = "/usr/sbin/mosquitto"
SERVICE_USER = "mosquitto"


class Mosquitto:
    name = "mqtt"

    def __init__(self, stack_dir: Path, host: str, port: int, user: str, password: str) -> None:
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.dir = stack_dir / "mosquitto"
        self.pid_file = self.dir / "mosquitto.pid"
        self.log_file = self.dir / "mosquitto.log"
        self.stdout_file = self.dir / "stdout.log"
        self.auth = AuthFiles(self.dir)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def config(self) -> str:
        lines = [
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            "protocol mqtt",
            "allow_anonymous false",
            f"password_file {self.auth.passwd}",
            f"acl_file {self.auth.acl}",
            "persistence true",
            f"persistence_location {self.dir / 'data'}/",
            "autosave_interval 10",
            "max_queued_messages 1000000",
            "max_inflight_messages 0",
            "max_packet_size 1048576",
            "message_size_limit 0",
            "persistent_client_expiration 14d",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if is_root():
            lines.append(f"user {SERVICE_USER}")
        return "\n".join(lines) + "\n"

    def write_platform_account(self) -> None:
        passwd, acl = platform_fragments(self.user, self.password)
        self.auth.write_fragment(PLATFORM_FRAGMENT, passwd, acl)
        self.auth.render(owner=SERVICE_USER if is_root() else None)

    def up(self, log: Callable[[str], None]) -> StartResult:
        t0 = time.monotonic()
        ensure_debian_packages({"mosquitto": MOSQUITTO}, log)
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        pid = read_pid(self.pid_file, MOSQUITTO)
        if pid is not None:
            if self.answers():
                return StartResult(self.name, False, time.monotonic() - t0, ["already running"])
            # The platform password changed. A reload would kick the persisted sessions
            # of the old account, which Mosquitto 2.0 can crash on (corrupted session
            # expiry list), so restart instead: sessions come back from persistence.
            log("platform MQTT password changed; restarting Mosquitto")
            self.down()
        self.write_platform_account()
        (self.dir / "mosquitto.conf").write_text(self.config())
        if is_root():
            chown_tree(self.dir, SERVICE_USER)
        if port_open(self.host, self.port):
            raise StackError(
                f"port {self.address} is taken by a process this stack did not start; "
                "stop it or set CITYOPS_MQTT_URL to another port"
            )
        log(f"starting Mosquitto on {self.address}")
        spawn([MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")], self.stdout_file, self.pid_file)
        if not wait_until(self.answers, timeout=20, interval=0.2):
            raise StackError(
                f"Mosquitto did not accept the platform login on {self.address}; "
                f"last lines of {self.log_file}:\n{tail(self.log_file)}\n{tail(self.stdout_file)}"
            )
        return StartResult(self.name, True, time.monotonic() - t0)

    def reload(self) -> bool:
        """Make the broker re-read its password and ACL files (SIGHUP)."""
        pid = read_pid(self.pid_file, MOSQUITTO)
        if pid is None:
            return False
        os.kill(pid, signal.SIGHUP)
        return True

    def down(self) -> bool:
        return stop_pid(self.pid_file, MOSQUITTO, timeout=20)

    def answers(self) -> bool:
        return mqtt_login(self.host, self.port, self.user, self.password) == 0

    def status(self) -> ServiceStatus:
        pid = read_pid(self.pid_file, MOSQUITTO)
        rc = mqtt_login(self.host, self.port, self.user, self.password)
        detail = {0: "", -1: "no answer"}.get(rc, f"login refused (reason code {rc})")
        return ServiceStatus(self.name, rc == 0, self.address, pid, pid is not None, detail)


def mqtt_login(host: str, port: int, user: str, password: str, timeout: float = 3.0) -> int:
    """Connect and log in once: 0 on success, the CONNACK reason code, or -1 if unreachable."""
    result: list[int] = []
    done = threading.Event()

    def on_connect(
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
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
