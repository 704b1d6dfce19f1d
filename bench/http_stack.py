"""What the HTTP workloads run against, and the client that loads it.

``running_stack`` starts the production shape on this machine: ``entityflow worker`` and
``entityflow serve`` processes on the section's broker, over a throwaway store and a topic
namespace of their own.
``load`` drives it with a small keep-alive HTTP/1.1 client on raw asyncio streams, so the
numbers measure the server rather than a heavyweight client library (the load generator
shares the machine's two cores with the API, the worker, the broker and the database).
It also counts the CPU time the API and worker processes spent meanwhile: on a shared,
loaded machine throughput swings with the neighbours' load, CPU time per request much
less, so A/B decisions can rest on it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from eventstore import EventRegistry, Store
from eventstore.kafka import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stack:
    url: str
    host: str
    port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    """``worker``, ``api`` or ``relay``, one per process."""

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds each role's processes used so far (Linux /proc)."""
        used: dict[str, float] = {}
        for role, p in zip(self.roles, self.processes, strict=True):
            used[role] = used.get(role, 0.0) + _cpu_seconds(p.pid)
        return used


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:  # not Linux, or the process is gone
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _spawn(args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(url: str, processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in processes:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args} exited with {p.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the API at {url} was not ready within {timeout}s")


@contextmanager
def running_stack(
    store: str,
    logs: Path,
    bootstrap: str,
    *,
    partitions: int = 8,
    workers: int = 1,
    separate_relay: bool = False,
    domain: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Stack]:
    """Worker process(es) + API process over ``store``; stopped when the block ends.

    ``separate_relay`` runs the event stream relay as its own process (``entityflow relay``)
    instead of inside the worker, as a deployment may choose to. ``domain`` names the
    module exporting ENTITIES and WORKFLOWS (default: the shop example). ``env`` adds
    variables to every process (``OTEL_*``, say).
    """
    # Create the tables once, before two processes race to create them.
    Store(store, EventRegistry()).close()
    port = free_port()
    env = {
        "ENTITYFLOW_STORE": store,
        "ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ENTITYFLOW_NAMESPACE": f"bench{uuid.uuid4().hex[:8]}",
        "ENTITYFLOW_PARTITIONS": str(partitions),
        "ENTITYFLOW_API_PORT": str(port),
        "ENTITYFLOW_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    domain_args = ["--domain", domain or "examples.shop"]
    stack = Stack(f"http://127.0.0.1:{port}", "127.0.0.1", port)
    try:
        worker_env = {**env, "ENTITYFLOW_RELAY": "false"} if separate_relay else env
        for n in range(workers):
            stack.processes.append(
                _spawn(["worker", *domain_args], worker_env, logs / f"worker{n}.log")
            )
            stack.roles.append("worker")
        stack.processes.append(_spawn(["serve", *domain_args], env, logs / "api.log"))
        stack.roles.append("api")
        if separate_relay:
            stack.processes.append(_spawn(["relay", *domain_args], env, logs / "relay.log"))
            stack.roles.append("relay")
        _wait_ready(stack.url, stack.processes, 90)
        yield stack
    finally:
        for p in reversed(stack.processes):
            p.send_signal(signal.SIGTERM)
        for p in stack.processes:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def request(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive)."""
    head = f"{method} {path} HTTP/1.1\r\nhost: bench\r\n{headers}"
    if body or method == "POST":
        head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds each role of the stack used while the load ran."""

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def cpu_ms_per_request(self, role: str) -> float:
        return self.cpu.get(role, 0.0) * 1000 / max(len(self.latencies), 1)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _client(
    host: str,
    port: int,
    requests: Sequence[bytes],
    latencies: list[float],
    statuses: dict[int, int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for raw in requests:
            start = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()
        await writer.wait_closed()


async def _load(host: str, port: int, per_client: Sequence[Sequence[bytes]]) -> LoadResult:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    await asyncio.gather(*(_client(host, port, reqs, latencies, statuses) for reqs in per_client))
    return LoadResult(time.perf_counter() - start, latencies, statuses)


def load(stack: Stack, per_client: Sequence[Sequence[bytes]]) -> LoadResult:
    """Send each client's requests in order over its own connection, all clients at once."""
    before = stack.cpu_seconds()
    result = asyncio.run(_load(stack.host, stack.port, per_client))
    after = stack.cpu_seconds()
    result.cpu = {role: after[role] - before.get(role, 0.0) for role in after}
    return result


def spread(requests: Sequence[bytes], clients: int) -> list[list[bytes]]:
    """Deal requests round-robin to ``clients`` connections."""
    return [list(requests[i::clients]) for i in range(clients)]
