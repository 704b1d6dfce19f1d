"""`entityflow dev` and `entityflow serve` as a user runs them: real processes, real HTTP."""

from __future__ import annotations

import gc
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from api import cli
from eventstore.kafka import free_port

ROOT = Path(__file__).resolve().parents[2]


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"not ready in {timeout}s:\n{process.communicate()[0]}")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        out, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError(f"did not stop on SIGINT:\n{out}") from None
    assert process.returncode == 0, out
    return out


def _worker_metrics_url(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Where the banner (printed before the API starts) says the worker's metrics are,
    and the output read to find it."""
    assert process.stdout is not None
    read = []
    for line in process.stdout:
        read.append(line)
        if line.startswith("Ctrl-C to stop."):  # the banner's last line
            break
    out = "".join(read)
    found = re.search(r"(http://127\.0\.0\.1:\d+/metrics) \(worker\)", out)
    assert found is not None, f"the banner does not say where the worker's metrics are:\n{out}"
    return found.group(1), out


def _dev_env() -> dict[str, str]:
    return {"ENTITYFLOW_DEV_KAFKA_PORT": str(free_port())}


def _without_java() -> dict[str, str]:
    """PATH with every directory that holds a ``java`` left out: a machine with no Java."""
    keep = [d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "java").exists()]
    return {"PATH": os.pathsep.join(keep)}


@pytest.mark.kafka
@pytest.mark.slow
def test_dev_runs_apache_kafka_worker_and_api_and_keeps_data_across_restarts(
    tmp_path: Path,
) -> None:
    port, env = free_port(), _dev_env()
    url = f"http://127.0.0.1:{port}"
    process = _start(["dev", "--port", str(port)], tmp_path, env)
    _wait_ready(url, process, timeout=120)
    r = httpx.post(f"{url}/entities/Account/acct-7/updates/open", json={"owner": "Ada"}, timeout=30)
    assert r.status_code == 200, r.text
    assert httpx.get(f"{url}/readyz").json()["checks"] == {"store": "ok", "broker": "ok"}
    assert httpx.get(f"{url}/docs").status_code == 200
    worker_metrics, banner = _worker_metrics_url(process)
    applied = 'entityflow_worker_commands_total{actor_type="Account",outcome="applied"} 1.0'
    assert applied in httpx.get(worker_metrics).text  # counted before the reply was sent
    out = banner + _stop(process)
    assert f"API docs  {url}/docs" in out
    assert "(Apache Kafka, data kept in" in out
    assert (tmp_path / ".entityflow" / "entityflow.db").exists()
    assert (tmp_path / ".entityflow" / "kafka" / "data" / "meta.properties").exists()

    meta = (tmp_path / ".entityflow" / "kafka" / "data" / "meta.properties").read_text()

    # The second run opens the same broker log: same cluster, same commands topic, so the
    # worker resumes from its tracked positions instead of finding the log reset.
    again = _start(["dev", "--port", str(port)], tmp_path, env)
    _wait_ready(url, again, timeout=120)
    r = httpx.post(f"{url}/entities/Account/acct-7/signals/deposit", json={"amount": "5"})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/entities/Account/acct-7").json()["version"] < 2:
        assert time.monotonic() < deadline, "the deposit was not applied"
        time.sleep(0.1)
    _stop(again)
    assert (tmp_path / ".entityflow" / "kafka" / "data" / "meta.properties").read_text() == meta
    # Positions are named after the commands topic's id: one id means one log, kept.
    with sqlite3.connect(tmp_path / ".entityflow" / "entityflow.db") as db:
        names = {row[0] for row in db.execute("SELECT application_name FROM tracking")}
    logs = {name.split("#")[0] for name in names if "commands@" in name}
    assert len(logs) == 1, names


@pytest.mark.kafka
@pytest.mark.slow
def test_dev_falls_back_to_tansu_where_no_java_is_present_and_says_what_it_costs(
    tmp_path: Path,
) -> None:
    port = free_port()
    process = _start(["dev", "--port", str(port)], tmp_path, {**_dev_env(), **_without_java()})
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, process)
    r = httpx.post(f"{url}/entities/Account/acct-7/updates/open", json={"owner": "Ada"}, timeout=30)
    assert r.status_code == 200, r.text
    out = _stop(process)
    assert "no Java on this machine: falling back to tansu, a memory-only broker" in out
    assert "(tansu, memory only: a restart loses queued commands)" in out


@pytest.mark.kafka
@pytest.mark.postgres
def test_serve_runs_the_api_against_a_configured_store_and_cluster(
    pg_url: str, kafka_bootstrap: str
) -> None:
    port = free_port()
    env = {
        "ENTITYFLOW_STORE": pg_url,
        "ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ENTITYFLOW_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
        "ENTITYFLOW_API_PORT": str(port),
    }
    process = _start(["serve", "--domain", "examples.shop"], ROOT, env)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, process)
    # No worker runs: the signal is accepted (durably queued) and stays pending.
    r = httpx.post(f"{url}/entities/Account/a1/signals/open", json={"owner": "Bo"})
    assert r.status_code == 202
    status = httpx.get(f"{url}/commands/{r.json()['command_id']}").json()
    assert status["status"] == "pending"
    out = _stop(process)
    assert f"API on {url}" in out


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_worker_and_serve_without_a_domain_say_what_to_pass(command: str) -> None:
    process = _start([command], ROOT, {"ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 2, out
    assert "name the module that exports the domain: --domain package.module" in out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("domain", "env", "says"),
    [
        (
            "examples.shop",
            {"ENTITYFLOW_ACTIVITY_CONCURRENCY": "0"},
            "with ENTITYFLOW_ACTIVITY_CONCURRENCY=0 would run nothing",
        ),
        ("tests.integration.timer_domain", {}, "but the domain lists no activities"),
    ],
)
def test_an_activities_only_worker_that_could_run_nothing_says_so(
    domain: str, env: dict[str, str], says: str
) -> None:
    process = _start(
        ["worker", "--domain", domain],
        ROOT,
        {
            "ENTITYFLOW_ACTIVITIES_ONLY": "true",
            "ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            **env,
        },
    )
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 2, out
    assert says in out
    assert "Traceback" not in out


def test_serve_explains_a_bad_domain() -> None:
    process = _start(["serve", "--domain", "no.such.module"], ROOT, {})
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "cannot import the domain module 'no.such.module'" in out


def test_service_processes_keep_startup_objects_out_of_the_collector() -> None:
    """Full collections over start-up objects were the p99 of the HTTP bench (94 -> 31 ms)."""
    threshold = gc.get_threshold()
    try:
        cli._tune_gc()
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold()[0] >= 10_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
