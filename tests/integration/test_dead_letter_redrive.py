"""Dead letters re-driven on the real parts: Apache Kafka, PostgreSQL, a worker OS process,
the API as an ``entityflow serve`` process (uvicorn), and the operator CLI as a process.

A parcel's shipping crashes until it is labelled: the crash is dead-lettered, listed over
HTTP and by the CLI; once labelled (the fix), a re-drive applies the command once and its
outcome under the original command id reads applied; a second re-drive is refused and
applies nothing; and a worker killed and restarted afterwards does not apply it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventstore.kafka import free_port
from tests.integration.processes import WorkerProcess, outputs, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "tests.integration.redrive_domain"
PARTITIONS = 4


def _env(pg_url: str, namespace: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ENTITYFLOW_STORE": pg_url,
        "ENTITYFLOW_NAMESPACE": namespace,
        "ENTITYFLOW_PARTITIONS": str(PARTITIONS),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def api(pg_url: str, kafka_bootstrap: str, namespace: str) -> Iterator[str]:
    """``entityflow serve`` on a free port; its URL once it is ready."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--domain", DOMAIN, "--port", str(port)],
        cwd=ROOT,
        env={**_env(pg_url, namespace), "ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "entityflow serve not ready in 90s"
            time.sleep(0.2)
        yield url
    finally:
        died = process.poll()
        process.send_signal(signal.SIGINT)
        try:
            out, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        assert died is None, f"entityflow serve died during the test ({died}):\n{out[-4000:]}"


def entityflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        check=False,  # the exit code is what these tests look at
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _http(url: str) -> httpx.Client:
    """A connection per request: the CLI and a worker restart leave long pauses between
    requests, and a kept-alive connection that uvicorn closes meanwhile is reset."""
    return httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0))


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _status(http: httpx.Client, command_id: str) -> str:
    return str(_ok(http.get(f"/commands/{command_id}"))["status"])


def _shipped_events(http: httpx.Client, parcel: str) -> int:
    events = _ok(http.get(f"/entities/Parcel/{parcel}/events", params={"limit": 100}))["events"]
    return sum(1 for e in events if e["type"] == "Shipped")


def test_a_crashed_command_is_redriven_once_after_the_fix_on_kafka_and_postgres(
    pg_url: str,
    kafka_bootstrap: str,
    namespace: str,
    workers: list[WorkerProcess],
    api: str,
) -> None:
    worker = WorkerProcess(pg_url, kafka_bootstrap, namespace, domain=DOMAIN, partitions=PARTITIONS)
    workers.append(worker)
    worker.wait_assigned()
    log = outputs(worker)
    with _http(api) as http:
        cid = _ok(http.post("/entities/Parcel/p-7/signals/ship", json={}), 202)["command_id"]
        wait_until(lambda: _status(http, cid) == "dead_lettered", 60, "the crash", context=log)

        # Listed over HTTP, with what an operator needs.
        (parked,) = _ok(http.get("/deadletters"))["dead_letters"]
        assert (parked["entity_type"], parked["entity_id"], parked["command"]) == (
            "Parcel",
            "p-7",
            "ship",
        )
        assert parked["error"] == "RuntimeError: no label: the printer is jammed"
        assert parked["source"].startswith(f"{namespace}.commands#")
        assert parked["redriven_at"] is None
        assert _ok(http.get(f"/deadletters/{parked['id']}"))["command_id"] == cid

        # Listed by the CLI, as a table and as JSON.
        listed = entityflow("deadletters", "list", "--url", api)
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if line.startswith(parked["id"]))
        assert "Parcel/p-7" in row and "ship" in row and "no label" in row
        as_json = json.loads(entityflow("deadletters", "list", "--json", "--url", api).stdout)
        assert as_json["dead_letters"] == [parked]

        # The fix, then the re-drive: applied once, under the original command id.
        _ok(http.post("/entities/Parcel/p-7/updates/label", json={}))
        redriven = entityflow("deadletters", "redrive", parked["id"], "--url", api)
        assert redriven.returncode == 0, redriven.stderr
        wait_until(lambda: _status(http, cid) == "applied", 60, "the re-drive", context=log)
        outcome = _ok(http.get(f"/commands/{cid}"))
        assert outcome["result"] == 1
        assert _shipped_events(http, "p-7") == 1

        # A second re-drive (CLI or HTTP) is refused and applies nothing.
        again = entityflow("deadletters", "redrive", parked["id"], "--url", api)
        assert again.returncode == 1 and "409 already_redriven" in again.stderr
        refused = http.post(f"/deadletters/{parked['id']}/redrive")
        assert refused.status_code == 409 and refused.json()["error"] == "already_redriven"
        listed_again = _ok(http.get("/deadletters"))["dead_letters"]
        assert [d["id"] for d in listed_again] == [parked["id"]]  # nothing parked anew
        assert listed_again[0]["redriven_at"] is not None

        # A marker that the worker has read past everything sent before it.
        _ok(http.post("/entities/Parcel/p-7/updates/label", json={}))
        assert _shipped_events(http, "p-7") == 1

        # A restarted worker re-reads nothing into a second application.
        worker.kill9()
        restarted = WorkerProcess(
            pg_url, kafka_bootstrap, namespace, domain=DOMAIN, partitions=PARTITIONS
        )
        workers.append(restarted)
        restarted.wait_assigned()
    with _http(api) as http:
        _ok(http.post("/entities/Parcel/p-7/updates/label", json={}))
        assert _shipped_events(http, "p-7") == 1
        assert _status(http, cid) == "applied"
        state = _ok(http.get("/entities/Parcel/p-7"))["state"]
        assert state == {"labelled": True, "shipped": 1}
