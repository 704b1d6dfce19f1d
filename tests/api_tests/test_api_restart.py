"""kill -9 of the API process mid-load, then a restart: no acknowledged signal is lost.

Real parts only: the broker, PostgreSQL, `entityflow worker` and `entityflow serve` as OS
processes. Clients send deposits as signals, each with its own Idempotency-Key, and retry
(same key) on connection errors, 503 and 409-in-flight until they get a 202. The API is
killed with SIGKILL in the middle and started again on the same port. Afterwards every
deposit was acknowledged, every acknowledged command is applied, and every balance is
exactly the number of deposits sent to it: nothing lost, nothing applied twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from eventstore.kafka import free_port
from tests.integration.processes import WorkerProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = 10
CLIENTS = 4
PER_CLIENT = 150


def _serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--domain", "examples.shop"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.slow
def test_killing_the_api_mid_load_loses_no_acknowledged_signal(
    pg_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "ENTITYFLOW_STORE": pg_url,
        "ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ENTITYFLOW_NAMESPACE": namespace,
        "ENTITYFLOW_PARTITIONS": "4",
        "ENTITYFLOW_API_PORT": str(port),
        "ENTITYFLOW_UPDATE_TIMEOUT": "2",
        "ENTITYFLOW_WORKER_GROUP": f"workers-{namespace}",
    }
    worker = WorkerProcess(
        pg_url,
        kafka_bootstrap,
        namespace,
        partitions=4,
        extra_env={"ENTITYFLOW_WORKER_GROUP": f"workers-{namespace}"},
    )
    log = tmp_path / "api.log"
    api: subprocess.Popen[bytes] | None = None
    try:
        worker.wait_assigned()  # the worker has created the tables and topics by now
        api = _serve(env, log)
        wait_until(lambda: _ready(url), 60, "the API to be ready", context=log.read_text)
        accounts = [f"acct-{i}" for i in range(ACCOUNTS)]
        with httpx.Client(base_url=url, timeout=30) as http:
            for account in accounts:
                r = http.post(f"/entities/Account/{account}/updates/open", json={"owner": "R"})
                assert r.status_code == 200, r.text
        acknowledged: dict[str, tuple[str, str]] = {}  # key -> (account, command id)
        retries = Counter[str]()
        lock = threading.Lock()
        progress = threading.Event()

        def client(n: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                for i in range(PER_CLIENT):
                    key = f"dep-{n}-{i}"
                    account = accounts[(n * PER_CLIENT + i) % ACCOUNTS]
                    while True:
                        try:
                            r = http.post(
                                f"/entities/Account/{account}/signals/deposit",
                                json={"amount": "1"},
                                headers={"Idempotency-Key": key},
                            )
                        except httpx.TransportError:
                            with lock:
                                retries["transport"] += 1
                            time.sleep(0.05)
                            continue
                        if r.status_code == 202:
                            break
                        assert r.status_code in (409, 503), r.text
                        with lock:
                            retries[str(r.status_code)] += 1
                        time.sleep(0.1)
                    with lock:
                        acknowledged[key] = (account, r.json()["command_id"])
                        if len(acknowledged) >= CLIENTS * PER_CLIENT // 4:
                            progress.set()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        assert progress.wait(60), "no progress before the kill"
        api.send_signal(signal.SIGKILL)
        api.wait(30)
        killed_at = len(acknowledged)
        time.sleep(0.5)
        api = _serve(env, log)
        for t in threads:
            t.join(180)
            assert not t.is_alive()
        assert killed_at < CLIENTS * PER_CLIENT, "the kill came after the load"
        assert retries["transport"] > 0, "no request saw the API down"
        assert len(acknowledged) == CLIENTS * PER_CLIENT

        expected = Counter(account for account, _ in acknowledged.values())
        with httpx.Client(base_url=url, timeout=30) as http:

            def all_applied() -> bool:
                for _, command_id in acknowledged.values():
                    if http.get(f"/commands/{command_id}").json()["status"] != "applied":
                        return False
                return True

            wait_until(all_applied, 120, "every acknowledged deposit to be applied")
            for account in accounts:
                state = http.get(f"/entities/Account/{account}").json()
                assert Decimal(state["state"]["balance"]) == expected[account], account
                assert state["version"] == expected[account] + 1, account
    finally:
        if api is not None and api.poll() is None:
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(30)
            except subprocess.TimeoutExpired:
                api.kill()
        worker.stop()
