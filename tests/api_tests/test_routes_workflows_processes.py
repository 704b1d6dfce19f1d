"""The order saga as a user runs it: `entityflow dev`, and `entityflow worker` + `serve` as
separate OS processes, driven over real HTTP (the shop domain's WORKFLOWS are run by the
worker and served by the API with no extra wiring)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventstore.kafka import free_port

ROOT = Path(__file__).resolve().parents[2]


def _spawn(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(url: str, processes: list[subprocess.Popen[str]], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in processes:
            assert p.poll() is None, p.communicate()[0]
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready in {timeout}s")


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


def _post(http: httpx.Client, path: str, body: Any, status: int = 200) -> Any:
    r = http.post(path, json=body)
    assert r.status_code == status, r.text
    return r.json()


def _run_orders(url: str, count: int) -> None:
    """``count`` order sagas (every 4th with an empty cart) end as planned; books balance."""
    run = uuid.uuid4().hex[:6]
    with httpx.Client(base_url=url, timeout=60) as http:
        account, sku = f"acct-{run}", f"sku-{run}"
        _post(http, f"/entities/Account/{account}/updates/open", {"owner": "Ada"})
        _post(http, f"/entities/Account/{account}/updates/deposit", {"amount": "1000"})
        _post(http, f"/entities/InventoryItem/{sku}/updates/restock", {"quantity": 100})
        expected: dict[str, str] = {}
        for i in range(count):
            cart, wid = f"cart-{run}-{i}", f"order-{run}-{i}"
            refused = i % 4 == 3
            if not refused:
                item = {"sku": sku, "quantity": 2, "unit_price": "5"}
                _post(http, f"/entities/Cart/{cart}/updates/add_item", item)
            order = {
                "account_id": account,
                "cart_id": cart,
                "lines": [{"sku": sku, "quantity": 2}],
                "amount": "10",
            }
            body = {"workflow_id": wid, "input": order}
            assert _post(http, "/workflows/Order", body, 202) == {"workflow_id": wid}
            expected[wid] = "compensated" if refused else "completed"
        for wid, status in expected.items():
            r = http.get(f"/workflows/Order/{wid}", params={"wait": "30"})
            assert r.status_code == 200, r.text
            assert r.json()["status"] == status, r.text
        completed = sum(1 for s in expected.values() if s == "completed")
        balance = http.get(f"/entities/Account/{account}").json()["state"]["balance"]
        assert Decimal(balance) == Decimal(1000 - 10 * completed)
        available = http.get(f"/entities/InventoryItem/{sku}/queries/available").json()
        assert available["result"] == 100 - 2 * completed
        listed = http.get("/workflows", params={"type": "Order", "limit": 1000}).json()
        mine = {e["workflow_id"]: e["status"] for e in listed["executions"]}
        assert {w: mine[w] for w in expected} == expected


@pytest.mark.kafka
@pytest.mark.slow
def test_dev_runs_the_order_saga(tmp_path: Path) -> None:
    port = free_port()
    process = _spawn(["dev", "--port", str(port)], tmp_path, {})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, [process])
        _run_orders(url, 8)
    finally:
        out = _stop(process)
    assert "entityflow dev is running" in out


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            _stop(p)


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.slow
def test_worker_and_serve_processes_run_the_order_saga(
    pg_url: str, kafka_bootstrap: str, processes: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    env = {
        "ENTITYFLOW_STORE": pg_url,
        "ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ENTITYFLOW_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
        "ENTITYFLOW_PARTITIONS": "4",
        "ENTITYFLOW_API_PORT": str(port),
        "ENTITYFLOW_WORKER_GROUP": f"workers-{uuid.uuid4().hex[:8]}",
    }
    processes.append(_spawn(["worker", "--domain", "examples.shop"], ROOT, env))
    processes.append(_spawn(["serve", "--domain", "examples.shop"], ROOT, env))
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, processes)
    _run_orders(url, 12)
