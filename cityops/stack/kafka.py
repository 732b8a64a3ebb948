"""Apache Kafka from Maven Central jars: one KRaft broker+controller on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from cityops.errors import StackError
from cityops.stack.common import (
    ServiceStatus,
    StartResult,
    ensure_debian_packages,
    exit_status,
    is_root,
    port_open,
    read_pid,
    run,
    spawn,
    stop_pid,
    tail,
    wait_until,
)

#: Tried in order; the first that Maven resolves with its dependencies is used.
KAFKA_VERSIONS = ("4.1.1", "4.1.0", "4.0.1", "3.9.1")
LOG4J_VERSION = "2.25.3"
SLF4J_VERSION = "2.0.17"
HEAP = ("-Xms512m", "-Xmx1g")

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.cityops</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="file" fileName="{log}" filePattern="{log}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


class _EarlyExit(Exception):
    def __init__(self, status: str, output: str) -> None:
        super().__init__(status)
        self.status = status
        self.output = output


class Kafka:
    """The broker's files live under ``<stack>/kafka``; jars under ``<cache>/kafka-<v>``."""

    name = "kafka"

    def __init__(self, stack_dir: Path, host: str, port: int, cache_dir: Path) -> None:
        self.host, self.port = host, port
        self.controller_port = port + 1
        self.dir = stack_dir / "kafka"
        self.data = self.dir / "data"
        self.cache_dir = cache_dir
        self.pid_file = self.dir / "kafka.pid"
        self.log_file = self.dir / "logs" / "server.log"
        self.stdout_file = self.dir / "logs" / "stdout.log"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- install -------------------------------------------------------------------------

    def lib_dir(self, log: Callable[[str], None]) -> Path:
        """The folder of broker jars, resolved with Maven on first use."""
        pinned = os.environ.get("CITYOPS_KAFKA_VERSION")
        versions = (pinned,) if pinned else KAFKA_VERSIONS
        for version in versions:
            lib = self.cache_dir / f"kafka-{version}" / "lib"
            if (lib / ".complete").exists():
                return lib
        ensure_debian_packages(
            {"maven": "/usr/bin/mvn", "openjdk-17-jre-headless": "/usr/bin/java"}, log
        )
        errors: list[str] = []
        for version in versions:
            lib = self.cache_dir / f"kafka-{version}" / "lib"
            log(f"resolving org.apache.kafka:kafka_2.13:{version} with Maven")
            try:
                self._resolve(version, lib)
            except StackError as exc:
                errors.append(f"{version}: {exc}")
                continue
            return lib
        raise StackError(
            "Maven could not resolve the Kafka broker jars; tried " + "; ".join(errors)
        )

    def _resolve(self, version: str, lib: Path) -> None:
        work = lib.parent
        if lib.exists():
            shutil.rmtree(lib)
        work.mkdir(parents=True, exist_ok=True)
        (work / "pom.xml").write_text(
            POM.format(kafka=version, slf4j=SLF4J_VERSION, log4j=LOG4J_VERSION)
        )
        run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(work / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={lib}",
                "-DincludeScope=runtime",
            ],
            timeout=1200,
        )
        # Kafka pulls an old slf4j-api 1.x transitively; the 2.x API is the one to keep.
        for jar in lib.glob("slf4j-api-1.*.jar"):
            jar.unlink()
        if not any(lib.glob(f"kafka_2.13-{version}.jar")):
            raise StackError(f"kafka_2.13-{version}.jar missing after resolution")
        (lib / ".complete").write_text(version)

    # -- lifecycle -----------------------------------------------------------------------

    def properties(self) -> str:
        h, p, c = self.host, self.port, self.controller_port
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{h}:{c}",
                f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
                f"advertised.listeners=PLAINTEXT://{h}:{p}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={self.data}",
                "num.partitions=6",
                "default.replication.factor=1",
                "min.insync.replicas=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=12",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=6",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.retention.hours=168",
                "message.max.bytes=4194304",
                "",
            ]
        )

    def up(self, log: Callable[[str], None]) -> StartResult:
        t0 = time.monotonic()
        if read_pid(self.pid_file, "kafka.Kafka") and self.answers():
            return StartResult(self.name, False, time.monotonic() - t0, ["already running"])
        if port_open(self.host, self.port):
            raise StackError(
                f"port {self.address} is taken by a process this stack did not start; "
                "stop it or set CITYOPS_KAFKA_BOOTSTRAP to another port"
            )
        lib = self.lib_dir(log)
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        props.write_text(self.properties())
        log4j = self.dir / "log4j2.xml"
        log4j.write_text(LOG4J2_XML.format(log=self.log_file))
        java = ["java", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{lib}/*"]
        if not (self.data / "meta.properties").exists():
            log("formatting KRaft storage")
            self.data.mkdir(parents=True, exist_ok=True)
            cluster_id = run([*java, "kafka.tools.StorageTool", "random-uuid"]).stdout.strip()
            run([*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)])
        log(f"starting Kafka on {self.address}")
        try:
            self._start(java)
        except _EarlyExit as exc:
            # A broker that dies in its first seconds is started once more, as a
            # service manager would; a second failure is reported with both outputs.
            log(f"Kafka exited during start-up ({exc.status}); starting it once more")
            try:
                self._start(java)
            except _EarlyExit as again:
                raise StackError(
                    f"Kafka exited during start-up twice.\nFirst attempt ({exc.status}):\n"
                    f"{exc.output}\nSecond attempt ({again.status}):\n{again.output}\n"
                    f"last lines of {self.log_file}:\n{tail(self.log_file)}"
                ) from None
        return StartResult(self.name, True, time.monotonic() - t0)

    def _start(self, java: list[str]) -> None:
        props = self.dir / "server.properties"
        offset = self.stdout_file.stat().st_size if self.stdout_file.exists() else 0
        pid = spawn(
            [
                *java[:1],
                *HEAP,
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                *java[1:],
                "kafka.Kafka",
                str(props),
            ],
            self.stdout_file,
            self.pid_file,
        )

        def alive_and_answers() -> bool:
            if read_pid(self.pid_file, "kafka.Kafka") is None:
                raise _EarlyExit(exit_status(pid), self._output_since(offset))
            return port_open(self.host, self.port) and self.answers()

        if not wait_until(alive_and_answers, timeout=120, interval=0.5):
            raise StackError(
                f"Kafka did not answer on {self.address} within 120 s; "
                f"last lines of {self.log_file}:\n{tail(self.log_file)}\n"
                + self._output_since(offset)
            )

    def _output_since(self, offset: int) -> str:
        try:
            with self.stdout_file.open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace").strip()
        except OSError:
            return f"(no output file at {self.stdout_file})"
        lines = text.splitlines()[-30:]
        return "\n".join(lines) if lines else "(the broker printed nothing)"

    def down(self) -> bool:
        return stop_pid(self.pid_file, "kafka.Kafka", timeout=60)

    def answers(self) -> bool:
        return asyncio.run(_kafka_answers(self.address))

    def status(self) -> ServiceStatus:
        pid = read_pid(self.pid_file, "kafka.Kafka")
        ok = port_open(self.host, self.port) and self.answers()
        return ServiceStatus(
            self.name,
            ok,
            self.address,
            pid,
            pid is not None,
            "" if ok else "no answer to a metadata request",
        )


async def _kafka_answers(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), timeout=5)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout=5)
        return bool(cluster.get("brokers"))
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()


def default_cache_dir() -> Path:
    if is_root():
        return Path("/var/cache/cityops")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cityops"
