"""One settings class for the whole platform, read from ``CITYOPS_*`` variables.

Values come from the environment first, then from the env file named by
``CITYOPS_ENV_FILE`` (default ``.env`` in the working directory), which
``cityops secrets init`` creates with fresh random secrets for a local stack.
"""

from __future__ import annotations

import os
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from lifeline.codes import CITY_PATTERN

if TYPE_CHECKING:
    from simulators.publisher import Broker

CITY_CODE = re.compile(CITY_PATTERN)


def _env_file() -> str:
    return os.environ.get("CITYOPS_ENV_FILE", ".env")


def default_stack_dir() -> Path:
    """Where the local stack keeps data, logs and pid files.

    Root runs keep it outside any checkout so the service users (``postgres``,
    ``mosquitto``) can reach it whatever the permissions of the checkout are.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/cityops/stack")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "cityops" / "stack"


class Settings(BaseSettings):
    """Effective configuration of every CityOps service and tool."""

    model_config = SettingsConfigDict(
        env_prefix="CITYOPS_",
        env_file=_env_file(),
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    kafka_brokers: int = Field(
        1,
        ge=1,
        le=9,
        description="Kafka nodes of the cluster (the local stack runs this many; topics get "
        "min(3, nodes) replicas and, from three, min.insync.replicas 2)",
    )
    kafka_bootstrap: str = Field(
        "127.0.0.1:19092",
        description="Kafka bootstrap servers, host:port[,host:port]; with several nodes and "
        "one address, the nodes listen on every second port from it",
    )
    readings_partitions: int = Field(
        12,
        ge=1,
        le=1024,
        description="Partitions of cityops.readings when the stack creates it: the most "
        "detection workers that can share the load",
    )
    mqtt_url: str = Field("mqtt://127.0.0.1:11883", description="MQTT broker URL")
    mqtt_username: str = Field("cityops-platform", description="MQTT user of the platform")
    mqtt_password: SecretStr = Field(description="MQTT password of the platform user")
    mqtt_admin_username: str = Field(
        "cityops-admin", description="MQTT account that manages device accounts and ACLs"
    )
    mqtt_admin_password: SecretStr | None = Field(
        None, description="Password of the MQTT admin account (dynamic security)"
    )
    mqtt_tls_listen: str = Field(
        "0.0.0.0:8883",
        description="host:port of the broker's TLS listener for devices (user and password); "
        "empty: none",
    )
    mqtt_cert_listen: str = Field(
        "0.0.0.0:8884",
        description="host:port of the broker's TLS listener for devices with a client "
        "certificate (its common name is the user); empty: none",
    )
    mqtt_tls_dir: Path | None = Field(
        None,
        description="Folder of the broker's ca.crt, server.crt, server.key (and ca.key to "
        "issue device certificates); created under the stack folder when not set",
    )
    mqtt_flush_period_s: int = Field(
        0,
        ge=0,
        description="Seconds between the broker's commits of its session store "
        "(0: every loop; a kill -9 loses at most this much of acknowledged messages)",
    )
    push_url: str = Field(
        "https://127.0.0.1:8443",
        description="Base URL of the push endpoint (cityops push serve) that simulated "
        "carrier platforms push to",
    )
    db_dsn: SecretStr = Field(description="PostgreSQL DSN of the platform role")
    cities: Annotated[tuple[str, ...], NoDecode] = Field(
        ("320100",), description="GB/T 2260 codes of the pilot cities, comma separated"
    )
    stack_dir: Path = Field(default_factory=default_stack_dir, description="Local stack state")
    kafka_dir: Path | None = Field(
        None,
        description="Folder the local stack's Kafka nodes keep their data and logs in "
        "(kafka/ for one node, kafka-cluster/node-N for several); default the stack folder",
    )
    webhook_allow: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Hosts (name or *.suffix) and networks (CIDR) the cockpit's webhooks may "
        "be sent to, comma separated; empty: any host but this machine's own addresses",
    )
    worker_data: Path | None = Field(
        None,
        description="Where detection workers keep Faust's per-app files (default: the "
        "system temp directory)",
    )
    timescale: Literal["auto", "off"] = Field(
        "auto",
        description="auto: a new schema uses TimescaleDB when the server has it installed "
        "and preloaded; off: always the plain-PostgreSQL schema",
    )
    log_level: str = Field("INFO", description="Log level of every service")
    metrics_addr: str = Field(
        "127.0.0.1", description="Address the services' Prometheus endpoints listen on"
    )

    @field_validator("cities", "webhook_allow", mode="before")
    @classmethod
    def _split_cities(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [c.strip() for c in value.split(",") if c.strip()]
        return tuple(value)

    @field_validator("cities")
    @classmethod
    def _check_cities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for code in value:
            if not CITY_CODE.match(code):
                raise ValueError(f"city code {code!r} is not a 6-digit GB/T 2260 code")
        return value

    @field_validator("mqtt_tls_listen", "mqtt_cert_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if value and not re.match(r"^[^\s:]+:\d{1,5}$", value):
            raise ValueError("a listener must look like host:port (or be empty for none)")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"mqtt", "tcp"} or not parts.hostname:
            raise ValueError("mqtt_url must look like mqtt://host:port")
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str, info: ValidationInfo) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"kafka_bootstrap entry {server!r} is not host:port")
        nodes = int(info.data.get("kafka_brokers", 1))
        if 1 < len(servers) < nodes:
            raise ValueError(
                f"kafka_bootstrap lists {len(servers)} addresses for {nodes} nodes: "
                "list every node, or only the first"
            )
        if len(servers) == 1 and nodes > 1:
            # One address for a cluster: node i listens 2*i ports up (its controller
            # on the port after), as `cityops stack up` starts them.
            host, _, port = servers[0].rpartition(":")
            servers = [f"{host}:{int(port) + 2 * i}" for i in range(nodes)]
        return ",".join(servers)

    def mqtt_admin(self) -> tuple[str, str]:
        """User name and password of the broker's admin account; raises if not configured."""
        if self.mqtt_admin_password is None:
            raise ValueError(
                "CITYOPS_MQTT_ADMIN_PASSWORD is not set: the MQTT admin account manages "
                "device accounts; run `cityops secrets init` to add it to your env file"
            )
        return self.mqtt_admin_username, self.mqtt_admin_password.get_secret_value()

    @property
    def tls_dir(self) -> Path:
        return self.mqtt_tls_dir or self.stack_dir / "pki"

    @property
    def mqtt_host(self) -> str:
        return urlsplit(self.mqtt_url).hostname or "127.0.0.1"

    @property
    def mqtt_port(self) -> int:
        return urlsplit(self.mqtt_url).port or 1883

    def broker(self) -> Broker:
        """The MQTT broker, as the platform's account (a device connects as itself)."""
        from simulators.publisher import Broker

        return Broker(
            self.mqtt_host,
            self.mqtt_port,
            self.mqtt_username,
            self.mqtt_password.get_secret_value(),
        )

    @property
    def kafka_nodes(self) -> list[tuple[str, int]]:
        """(host, port) of each Kafka node the local stack runs: the first
        ``kafka_brokers`` bootstrap addresses."""
        out = []
        for server in self.kafka_bootstrap.split(",")[: self.kafka_brokers]:
            host, _, port = server.rpartition(":")
            out.append((host, int(port)))
        return out

    @property
    def kafka_replication(self) -> int:
        """Replicas of every topic the platform creates: min(3, nodes)."""
        return min(3, self.kafka_brokers)

    @property
    def kafka_min_insync(self) -> int:
        """``min.insync.replicas`` of the platform's topics: 2 with three replicas, so an
        acknowledged write survives the loss of any one node."""
        return 2 if self.kafka_replication >= 3 else 1

    @property
    def kafka_host(self) -> str:
        return self.kafka_bootstrap.split(",")[0].rpartition(":")[0]

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rpartition(":")[2])

    def db_parts(self) -> DbParts:
        return DbParts.from_dsn(self.db_dsn.get_secret_value())

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with every secret hidden."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                raw = value.get_secret_value()
                out[name] = _redact_url(raw) if "://" in raw else "**********"
            elif isinstance(value, Path):
                out[name] = str(value)
            elif isinstance(value, tuple):
                out[name] = list(value)
            else:
                out[name] = value
        return out


class DbParts:
    """The pieces of a PostgreSQL DSN the local stack needs to create the role."""

    def __init__(self, host: str, port: int, user: str, password: str, dbname: str) -> None:
        self.host, self.port, self.user, self.password, self.dbname = (
            host,
            port,
            user,
            password,
            dbname,
        )

    @classmethod
    def from_dsn(cls, dsn: str) -> DbParts:
        parts = urlsplit(dsn)
        if parts.scheme not in {"postgresql", "postgres"}:
            raise ValueError("db_dsn must be a postgresql:// URL")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "cityops",
            password=parts.password or "",
            dbname=(parts.path or "/cityops").lstrip("/") or "cityops",
        )


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:**********@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def fresh_env_lines(db_port: int = 15432) -> list[str]:
    """Lines of a new env file with random secrets for a local stack."""
    db_password = secrets.token_urlsafe(24)
    mqtt_password = secrets.token_urlsafe(24)
    mqtt_admin_password = secrets.token_urlsafe(24)
    dsn = f"postgresql://cityops:{quote(db_password)}@127.0.0.1:{db_port}/cityops"
    return [
        "# Local CityOps stack secrets, generated by `cityops secrets init`. Keep private.",
        f"CITYOPS_DB_DSN={dsn}",
        f"CITYOPS_MQTT_PASSWORD={mqtt_password}",
        f"CITYOPS_MQTT_ADMIN_PASSWORD={mqtt_admin_password}",
    ]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` to re-read."""
    return Settings(_env_file=_env_file())
