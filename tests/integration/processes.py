"""Worker processes for crash tests: start with `entityflow worker`, kill -9, watch progress."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from actors.mailbox.kafka import KafkaMailbox
from eventstore.kafka.io import KafkaSettings
from sagas import Domain, Host

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def client_host(
    domain: Domain, store_url: str, bootstrap: str, namespace: str, partitions: int
) -> Iterator[Host]:
    """The test's side of a process test: a client of ``domain`` on the broker that runs
    no worker and no activities (opening it creates the tables)."""
    mailbox = KafkaMailbox(KafkaSettings(bootstrap), namespace=namespace, partitions=partitions)
    host = domain.host(store_url, mailbox=mailbox, run_worker=False, run_activities=False)
    try:
        yield host
    finally:
        host.stop()
        mailbox.close()


class WorkerProcess:
    """One `entityflow worker` OS process, its output captured for assertions."""

    def __init__(
        self,
        store_url: str,
        bootstrap: str,
        namespace: str,
        *,
        domain: str = "examples.shop",
        partitions: int = 8,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {
            **os.environ,
            "ENTITYFLOW_STORE": store_url,
            "ENTITYFLOW_NAMESPACE": namespace,
            "ENTITYFLOW_PARTITIONS": str(partitions),
            "ENTITYFLOW_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "worker",
                "--domain",
                domain,
                "--bootstrap-servers",
                bootstrap,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.assigned = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if "assigned partitions [" in line and "assigned partitions []" not in line:
                self.assigned.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_assigned(self, timeout: float = 60) -> None:
        if not self.assigned.wait(timeout):
            raise AssertionError(f"worker got no partitions in {timeout}s:\n{self.output}")

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(timeout)  # its last words (the summary) are read, too
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


def count_rows(store_url: str, table: str, where: str = "") -> int:
    """Count rows of one entityflow table in the URL's schema (PostgreSQL)."""
    base, _, query = store_url.partition("?schema=")
    with psycopg.connect(base) as conn:
        stmt = sql.SQL("SELECT count(*) FROM {}.{} " + where).format(
            sql.Identifier(query), sql.Identifier(table)
        )
        row = conn.execute(stmt).fetchone()
        return int(row[0]) if row else 0


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    poll: float = 0.2,
    context: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    detail = f"\n{context()}" if context else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def outputs(*workers: WorkerProcess) -> Callable[[], str]:
    """What the workers printed (without the Kafka client's own chatter), for failures."""

    def show() -> str:
        return "\n\n".join(
            "\n".join(line for line in w.lines if " kafka." not in line)[-4000:] for w in workers
        )

    return show
