"""Workflow routes when things go wrong: a parked execution (its code no longer replays its
history) refuses signals, cancellation and queries with 409 and shows why; a broker that
is down makes starts, signals and cancellations 503 while reads keep working."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from actors import InMemoryMailbox
from api.app import AppParts, create_app
from api.server import ServerThread
from api.settings import Settings
from api.wiring import load_domain
from eventstore import Store
from eventstore.kafka import ApacheKafka
from examples.shop import ENTITIES, Account
from sagas import Domain, Workflow, WorkflowContext, WorkflowView
from tests.api_tests.conftest import StackFactory

# Deliberately global state in workflow code, so the test can change the code's decisions
# under a running execution (what a careless deployment does).
CODE = {"version": 1}


class DriftInput(BaseModel):
    first: str
    second: str


drift = Workflow("Drift", input=DriftInput)
go = drift.signal("go")


@drift.run
async def run_drift(ctx: WorkflowContext, d: DriftInput) -> None:
    account = d.first if CODE["version"] == 1 else d.second
    await ctx.call(Account.deposit, account, amount=1)
    await ctx.wait_signal(go)


@drift.query
def where(view: WorkflowView) -> str:
    return view.status


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture
def restore_code() -> Iterator[None]:
    yield
    CODE["version"] = 1


def test_a_parked_execution_refuses_messages_with_409_and_says_why(
    tmp_path: Path, restore_code: None
) -> None:
    domain = Domain(ENTITIES, [drift])
    store = Store(f"sqlite:///{tmp_path / 'store.db'}", domain.registry())
    mailbox = InMemoryMailbox(partitions=2)
    first = domain.host(store, mailbox=mailbox).start()
    app = create_app(AppParts(store, mailbox, domain, Settings(update_timeout=10)))
    try:
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            for account in ("a", "b"):
                _ok(http.post(f"/entities/Account/{account}/updates/open", json={"owner": "o"}))
            body = {"workflow_id": "d-1", "input": {"first": "a", "second": "b"}}
            _ok(http.post("/workflows/Drift", json=body), 202)
            deadline = time.monotonic() + 20
            while _ok(http.get("/workflows/Drift/d-1", params={"wait": "0.1"}))["steps_done"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            # A new deployment with different code: the new worker replays and diverges.
            first.stop()
            CODE["version"] = 2
            second = domain.host(store, mailbox=mailbox).start()
            try:
                status = _ok(http.get("/workflows/Drift/d-1", params={"wait": "20"}))
                assert status["status"] == "parked"
                parked = status["parked"]
                assert parked["step"] == "step 1"
                assert parked["expected"] == "call #1 Account/a.deposit(amount='1')"
                assert parked["actual"] == "call #1 Account/b.deposit(amount='1')"
                assert "non-deterministic workflow code" in parked["error"]
                for r in (
                    http.post("/workflows/Drift/d-1/signals/go"),
                    http.post("/workflows/Drift/d-1/cancel", json={"reason": "stuck"}),
                    http.get("/workflows/Drift/d-1/queries/where"),
                ):
                    assert r.status_code == 409, r.text
                    assert r.json()["error"] == "workflow_parked"
                    assert "replay diverged" in r.json()["message"]
                listed = _ok(http.get("/workflows", params={"type": "Drift", "status": "parked"}))
                assert [e["workflow_id"] for e in listed["executions"]] == ["d-1"]
                assert listed["executions"][0]["summary"]["parked"].startswith("workflow:Drift")
                assert _ok(http.get("/entities/Account/b"))["state"]["balance"] == "0"
                # Code that replays the history again resumes it on its next load.
                second.stop()
                CODE["version"] = 1
                third = domain.host(store, mailbox=mailbox).start()
                try:
                    deadline = time.monotonic() + 20
                    while _ok(http.get("/workflows/Drift/d-1"))["status"] != "running":
                        assert time.monotonic() < deadline
                        time.sleep(0.05)
                    _ok(http.post("/workflows/Drift/d-1/signals/go"), 202)
                    done = _ok(http.get("/workflows/Drift/d-1", params={"wait": "20"}))
                    assert done["status"] == "completed"
                finally:
                    third.stop()
            finally:
                if not second.worker.stopping:
                    second.stop()
    finally:
        if not first.worker.stopping:
            first.stop()
        store.close()


@pytest.mark.kafka
def test_broker_down_makes_starts_and_cancellations_503_while_reads_work(
    running_broker: ApacheKafka, tmp_path: Path
) -> None:
    settings = Settings(
        store=f"sqlite:///{tmp_path / 'store.db'}",
        kafka_bootstrap_servers=running_broker.bootstrap_servers,
        namespace=f"t{uuid.uuid4().hex[:10]}",
        partitions=2,
        update_timeout=1.0,
    )
    # The API as `entityflow serve` builds it: the shop domain, its order saga included.
    app = create_app(settings, load_domain("examples.shop"))
    order = {"account_id": "a", "cart_id": "c", "lines": [{"sku": "s", "quantity": 1}]}
    body = {"workflow_id": "o-1", "input": {**order, "amount": "1"}}
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert _ok(http.post("/workflows/Order", json=body), 202) == {"workflow_id": "o-1"}
        running_broker.stop()
        started = time.monotonic()
        r = http.post("/workflows/Order", json={**body, "workflow_id": "o-2"})
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "unavailable"
        assert r.json()["command_id"] == "workflow:Order/o-2#start"
        r = http.post("/workflows/Order/o-1/cancel", json={"reason": "no broker"})
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "unavailable"
        assert time.monotonic() - started < 20
        # No worker ever ran: o-1 was accepted, so a short wait ends with a 404 that says so.
        r = http.get("/workflows/Order/o-1", params={"wait": "0.3"})
        assert r.status_code == 404
        assert "not processed yet" in r.json()["message"]
        listed = _ok(http.get("/workflows", params={"type": "Order"}))
        assert listed == {"executions": [], "next_after": None}


def test_no_verdict_in_time_is_504_with_a_command_id_that_stays_valid(
    make_stack: StackFactory,
) -> None:
    with make_stack(run_worker=False) as s:
        r = s.http.post("/workflows/Transfer/t-1/signals/note?timeout=0.3", json="hello")
        assert r.status_code == 504, r.text
        assert r.json()["error"] == "update_timeout"
        command_id = r.json()["command_id"]
        assert _ok(s.http.get(f"/commands/{command_id}"))["status"] == "pending"
        r = s.http.post("/workflows/Transfer/t-1/cancel?timeout=0.3")
        assert r.status_code == 504, r.text
