"""Apache Kafka, started by entityflow itself: one KRaft node from the official jars.

The test suite, the benchmarks and ``entityflow dev`` run on the broker users run in
production, not on a look-alike. The jars come from Maven Central through the small
Maven project beside this module (``pom.xml``): Maven resolves them once into a
classpath file under the user's cache directory, and every later start reads that file
(no network). The broker is one process on 127.0.0.1 acting as both controller and
broker, with its log in a data directory that outlives a restart (:meth:`restart`), so a
test can stop it, start it again and find every acknowledged record still there; or
lose it on purpose (:meth:`restart` with ``wipe=True``).

Settings are tuned for one machine, not the code for the broker: a group's first
rebalance starts at once (``group.initial.rebalance.delay.ms=0``), internal topics have
one replica and few partitions, and topics are created only by entityflow
(``auto.create.topics.enable=false``, as the deployment notes advise for clusters).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from eventstore.kafka.local import (
    BrokerLaunchError,
    alive,
    answers,
    ending_with_this_process,
    free_port,
)

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG_CONFIG = HERE / "log4j2.yaml"


def kafka_version() -> str:
    """The Apache Kafka version of ``pom.xml`` (the one place it is written)."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if found is None:  # pragma: no cover - the pom ships with the package
        raise BrokerLaunchError(f"{POM} names no kafka.version")
    return found.group(1)


def java_available() -> bool:
    """Whether this machine can run Apache Kafka here (a Java runtime is on PATH)."""
    return shutil.which("java") is not None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "entityflow" / f"kafka-{kafka_version()}"


def kafka_classpath(say: Callable[[str], None] = lambda _: None) -> str:
    """The broker's classpath; resolved with Maven the first time, then read from a file."""
    cache = _cache_dir() / "classpath.txt"
    if cache.exists():
        classpath = cache.read_text().strip()
        if classpath and all(Path(jar).exists() for jar in classpath.split(os.pathsep)):
            return classpath
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerLaunchError(
            "Apache Kafka's jars are not resolved yet and Maven (mvn) is not on PATH: "
            "install Maven, or set ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS to a running cluster"
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    say(f"resolving Apache Kafka {kafka_version()} from Maven Central (once; cached in {cache})")
    partial = cache.with_suffix(".partial")
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:build-classpath",
            f"-Dmdep.outputFile={partial}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0 or not partial.exists():
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise BrokerLaunchError(
            "Maven could not resolve Apache Kafka's jars (is Maven Central reachable?):\n"
            + "\n".join(tail)
        )
    partial.replace(cache)
    return cache.read_text().strip()


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def broker_properties(port: int, controller_port: int, log_dir: Path) -> dict[str, str]:
    """One combined controller and broker on 127.0.0.1, tuned for a single machine."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        **TUNING,
    }


TUNING: dict[str, str] = {
    # A group's first rebalance waits for nobody: workers join one at a time anyway.
    "group.initial.rebalance.delay.ms": "0",
    # One node: internal topics have one replica, and few partitions start fast.
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "8",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    # entityflow creates its topics with the partition counts it needs.
    "auto.create.topics.enable": "false",
    # Small segments, so retention frees space of a long-running development broker.
    "log.segment.bytes": str(64 * 1024 * 1024),
    "log.retention.check.interval.ms": "60000",
}
"""Broker settings beyond the listeners (deploy/ sets the same ones; a test compares)."""


class ApacheKafka:
    """One Apache Kafka process on 127.0.0.1; its data lives in ``home`` across restarts.

    Without ``home`` a temporary directory is used and removed by :meth:`close`.
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "768m",
        extra_properties: Mapping[str, str] | None = None,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._temporary = home is None
        self.home = (
            Path(tempfile.mkdtemp(prefix="entityflow-kafka-")) if home is None else home.resolve()
        )
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.heap = heap
        self.extra_properties = dict(extra_properties or {})
        self._say = say
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "broker.log"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _config(self) -> Path:
        props = {
            **broker_properties(self.port, self.controller_port, self.data_dir),
            **self.extra_properties,
        }
        path = self.home / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _java(self, classpath: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerLaunchError(
                "Apache Kafka needs Java 17 or later on PATH (or set "
                "ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS to a running cluster)"
            )
        return [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG_CONFIG}",
            "-cp",
            classpath,
            *args,
        ]

    def _format(self, classpath: str, config: Path) -> None:
        """Give a new data directory its cluster id (KRaft refuses to start without one)."""
        if (self.data_dir / "meta.properties").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # ``--cluster-id=``: an id may start with "-", which would read as an option.
        command = self._java(
            classpath,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={new_cluster_id()}",
            f"--config={config}",
        )
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise BrokerLaunchError(
                f"formatting Kafka's data directory {self.data_dir} failed:\n"
                + (result.stdout + result.stderr)[-2000:]
            )

    @property
    def _pid_file(self) -> Path:
        return self.home / "broker.pid"

    def _stop_leftover(self) -> None:
        """Stop a broker an earlier run left behind on this data directory (it was killed).

        The broker runs in a session of its own so a Ctrl-C reaches only entityflow, which
        then stops it; a process killed with SIGKILL cannot. The parent-death signal
        (:func:`ending_with_this_process`) stops such a broker where Linux and ``setpriv``
        give one; elsewhere it would hold the port and the data directory's lock forever.
        """
        try:
            pid = int(self._pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"kafka.Kafka" not in cmdline or str(self.home).encode() not in cmdline:
            return
        self._say(f"stopping the broker an earlier run left behind (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        self._wait_port_free()

    def start(self, timeout: float = 90.0) -> ApacheKafka:
        if self.running:
            return self
        self.home.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        if answers(self.port):
            raise BrokerLaunchError(
                f"port {self.port} is taken by another process: stop it, or choose another "
                "port for the local broker (ENTITYFLOW_DEV_KAFKA_PORT for `entityflow dev`)"
            )
        classpath = kafka_classpath(self._say)
        config = self._config()
        self._format(classpath, config)
        log_file = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                ending_with_this_process(self._java(classpath, "kafka.Kafka", str(config))),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log_file.close()
        self._pid_file.write_text(str(self._process.pid))
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Wait until the broker answers metadata requests with itself as a live broker."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                code = process.returncode if process is not None else None
                self._process = None
                raise BrokerLaunchError(
                    f"Apache Kafka exited with code {code} while starting; see {self.log_path}"
                )
            if answers(self.port) and self._serves_metadata():
                return
            time.sleep(0.1)
        self.kill()
        raise BrokerLaunchError(
            f"Apache Kafka did not become ready on port {self.port} within {timeout:.0f}s; "
            f"see {self.log_path}"
        )

    def _serves_metadata(self) -> bool:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=[self.bootstrap_servers],
                request_timeout_ms=3000,
                bootstrap_timeout_ms=3000,
            )
        except (KafkaError, OSError):
            return False
        try:
            cluster = admin.describe_cluster()
            return bool(cluster.get("brokers"))
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()

    def stop(self, timeout: float = 60.0) -> None:
        """Shut down cleanly (SIGTERM: the broker flushes and closes its log)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        self._wait_port_free()

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash would; what reached the log is kept."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        self._wait_port_free()

    def _wait_port_free(self) -> None:
        deadline = time.monotonic() + 10
        while answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self, *, wipe: bool = False) -> None:
        """Stop and start on the same ports: with its data, or (``wipe``) with none."""
        self.stop()
        if wipe:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.start()

    def close(self) -> None:
        """Stop, and remove the data directory if it was a temporary one."""
        self.stop()
        if self._temporary:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
