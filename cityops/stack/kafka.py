"""Apache Kafka from Maven Central jars: KRaft nodes (each broker and controller) on
127.0.0.1, one by default or a replicated cluster."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
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


class KafkaNode:
    """One KRaft node (broker and controller). A one-node stack keeps its files under
    ``<dir>/kafka``, node *i* of a cluster under ``<dir>/kafka-cluster/node-i`` (``dir``:
    ``CITYOPS_KAFKA_DIR``, by default the stack folder); jars under ``<cache>/kafka-<v>``."""

    def __init__(
        self,
        dir: Path,
        host: str,
        port: int,
        cache_dir: Path,
        *,
        node_id: int = 1,
        voters: list[tuple[int, str, int]] | None = None,
        replication: int = 1,
    ) -> None:
        self.host, self.port = host, port
        self.controller_port = port + 1
        self.node_id = node_id
        self.voters = voters or [(node_id, host, self.controller_port)]
        self.replication = replication
        self.dir = dir
        self.data = self.dir / "data"
        self.cache_dir = cache_dir
        self.pid_file = self.dir / "kafka.pid"
        self.log_file = self.dir / "logs" / "server.log"
        self.stdout_file = self.dir / "logs" / "stdout.log"

    @property
    def name(self) -> str:
        return "kafka" if len(self.voters) == 1 else f"kafka-{self.node_id}"

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
        rf = self.replication
        isr = 2 if rf >= 3 else 1
        voters = ",".join(f"{i}@{vh}:{vc}" for i, vh, vc in self.voters)
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={self.node_id}",
                f"controller.quorum.voters={voters}",
                f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
                f"advertised.listeners=PLAINTEXT://{h}:{p}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={self.data}",
                "num.partitions=6",
                f"default.replication.factor={rf}",
                f"min.insync.replicas={isr}",
                f"offsets.topic.replication.factor={rf}",
                "offsets.topic.num.partitions=12",
                f"transaction.state.log.replication.factor={rf}",
                f"transaction.state.log.min.isr={isr}",
                "transaction.state.log.num.partitions=6",
                f"share.coordinator.state.topic.replication.factor={rf}",
                f"share.coordinator.state.topic.min.isr={isr}",
                "unclean.leader.election.enable=false",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.retention.hours=168",
                "message.max.bytes=4194304",
                "",
            ]
        )

    def running(self) -> bool:
        return read_pid(self.pid_file, "kafka.Kafka") is not None

    def prepare(self, lib: Path, cluster_id: str | None, log: Callable[[str], None]) -> list[str]:
        """Write the node's configuration, format its storage on first use (with the
        cluster's id, or a new one) and return the java command line without a main."""
        if port_open(self.host, self.port) or port_open(self.host, self.controller_port):
            raise StackError(
                f"port {self.address} or {self.host}:{self.controller_port} is taken by a "
                "process this stack did not start; stop it (`cityops stack down` if it is "
                "this stack's Kafka of another size) or set CITYOPS_KAFKA_BOOTSTRAP to "
                "other ports"
            )
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        props.write_text(self.properties())
        log4j = self.dir / "log4j2.xml"
        log4j.write_text(LOG4J2_XML.format(log=self.log_file))
        java = ["java", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{lib}/*"]
        if not (self.data / "meta.properties").exists():
            log(f"formatting KRaft storage of {self.name}")
            self.data.mkdir(parents=True, exist_ok=True)
            if cluster_id is None:
                cluster_id = run([*java, "kafka.tools.StorageTool", "random-uuid"]).stdout
            run(
                [
                    *java,
                    *("kafka.tools.StorageTool", "format", "-t", cluster_id.strip()),
                    *("-c", str(props)),
                ]
            )
        return java

    def spawn(self, java: list[str]) -> tuple[int, int]:
        """Start the node; return its pid and where its output starts in the stdout file."""
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
        return pid, offset

    def wait_ready(self, pid: int, offset: int, timeout: float = 120) -> None:
        def alive_and_answers() -> bool:
            if read_pid(self.pid_file, "kafka.Kafka") is None:
                raise _EarlyExit(exit_status(pid), self._output_since(offset))
            return port_open(self.host, self.port) and self.answers()

        if not wait_until(alive_and_answers, timeout=timeout, interval=0.5):
            raise StackError(
                f"Kafka node {self.name} did not answer on {self.address} within "
                f"{timeout:.0f} s; last lines of {self.log_file}:\n{tail(self.log_file)}\n"
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

    def kill(self) -> bool:
        """Kill the node at once (SIGKILL), as a crash or a lost machine would."""
        return stop_pid(self.pid_file, "kafka.Kafka", timeout=0.1, sig=signal.SIGKILL)

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


class Kafka:
    """The stack's Kafka: one node, or a cluster of nodes that are each broker and
    controller (a static KRaft quorum). Nodes start together (a quorum needs a majority
    to elect its leader) and share one cluster id."""

    name = "kafka"

    def __init__(
        self, base: Path, nodes: list[tuple[str, int]], cache_dir: Path, replication: int
    ) -> None:
        self.base = base
        self.cache_dir = cache_dir
        if len(nodes) == 1:
            host, port = nodes[0]
            self.dir = base / "kafka"
            self.nodes = [KafkaNode(self.dir, host, port, cache_dir, replication=replication)]
        else:
            self.dir = base / "kafka-cluster"
            voters = [(i + 1, h, p + 1) for i, (h, p) in enumerate(nodes)]
            self.nodes = [
                KafkaNode(
                    self.dir / f"node-{i + 1}",
                    h,
                    p,
                    cache_dir,
                    node_id=i + 1,
                    voters=voters,
                    replication=replication,
                )
                for i, (h, p) in enumerate(nodes)
            ]
        ports = [port for n in self.nodes for port in (n.port, n.controller_port)]
        if len(set(ports)) != len(ports):
            raise StackError(
                "the Kafka nodes' ports overlap (each node also uses the port after its "
                "own for its controller): give them ports at least two apart"
            )

    @property
    def address(self) -> str:
        return ",".join(n.address for n in self.nodes)

    def others(self) -> list[KafkaNode]:
        """Nodes of this stack's Kafka of another size (one node or a cluster), which
        ``down`` stops too."""
        mine = {n.pid_file for n in self.nodes}
        found = [self.base / "kafka" / "kafka.pid"]
        found += sorted((self.base / "kafka-cluster").glob("node-*/kafka.pid"))
        return [
            KafkaNode(pid.parent, "127.0.0.1", 0, self.cache_dir)
            for pid in found
            if pid not in mine and pid.exists()
        ]

    def up(self, log: Callable[[str], None]) -> StartResult:
        t0 = time.monotonic()
        if all(n.running() for n in self.nodes) and self.answers():
            return StartResult(self.name, False, time.monotonic() - t0, ["already running"])
        for other in self.others():
            if other.running():
                raise StackError(
                    f"this stack's Kafka of another size runs ({other.dir}); stop it with "
                    "`cityops stack down` before starting "
                    f"{len(self.nodes)} node{'s' if len(self.nodes) > 1 else ''}"
                )
        lib = self.nodes[0].lib_dir(log)
        cluster_id = self._cluster_id(lib)
        waiting = []
        for node in self.nodes:
            if node.running():
                continue
            java = node.prepare(lib, cluster_id, log)
            log(f"starting Kafka node {node.name} on {node.address}")
            waiting.append((node, java, *node.spawn(java)))
        for node, java, pid, offset in waiting:
            try:
                node.wait_ready(pid, offset)
            except _EarlyExit as exc:
                # A node that dies in its first seconds is started once more, as a
                # service manager would; a second failure is reported with both outputs.
                log(f"Kafka node {node.name} exited during start-up ({exc.status}); once more")
                try:
                    node.wait_ready(*node.spawn(java))
                except _EarlyExit as again:
                    raise StackError(
                        f"Kafka node {node.name} exited during start-up twice.\n"
                        f"First attempt ({exc.status}):\n{exc.output}\n"
                        f"Second attempt ({again.status}):\n{again.output}\n"
                        f"last lines of {node.log_file}:\n{tail(node.log_file)}"
                    ) from None
        notes = [] if len(self.nodes) == 1 else [f"{len(self.nodes)} nodes"]
        return StartResult(self.name, True, time.monotonic() - t0, notes)

    def _cluster_id(self, lib: Path) -> str | None:
        """The cluster's id, shared by its nodes (None for one node: it makes its own)."""
        if len(self.nodes) == 1:
            return None
        path = self.dir / "cluster.id"
        if not path.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            java = ["java", "-cp", f"{lib}/*"]
            path.write_text(run([*java, "kafka.tools.StorageTool", "random-uuid"]).stdout.strip())
        return path.read_text().strip()

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def down(self) -> bool:
        stopped = [n.down() for n in [*self.nodes, *self.others()]]
        return any(stopped)

    def answers(self) -> bool:
        return asyncio.run(_kafka_answers(self.address))

    def status(self) -> dict[str, ServiceStatus]:
        return {n.name: n.status() for n in self.nodes}


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
