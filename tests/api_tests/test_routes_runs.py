"""The chain of runs over HTTP: an execution that continued as new shows its current run
and the earlier ones in its status, its history by run, and its run in the visibility
list; a run that does not exist is a 404, a malformed one a 422 (in-memory mailbox,
SQLite)."""

from __future__ import annotations

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
from sagas import Domain, Workflow, WorkflowContext


class RelayInput(BaseModel):
    runs_left: int
    seen: int = 0


relay = Workflow("Relay", input=RelayInput, output=int)
baton = relay.signal("baton", int)


@relay.run
async def run_relay(ctx: WorkflowContext, r: RelayInput) -> int:
    seen = r.seen + await ctx.wait_signal(baton)
    if r.runs_left == 0:
        return seen
    return await ctx.continue_as_new(RelayInput(runs_left=r.runs_left - 1, seen=seen))


@pytest.fixture
def http(tmp_path: Path) -> Iterator[httpx.Client]:
    host = Domain((), [relay]).host(
        f"sqlite:///{tmp_path / 'store.db'}", mailbox=InMemoryMailbox(partitions=4)
    )
    host.start()
    try:
        app = create_app(AppParts.from_host(host, Settings(update_timeout=20)))
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
            yield c
    finally:
        host.stop()


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def test_status_history_and_listing_show_the_chain_of_runs(http: httpx.Client) -> None:
    _ok(http.post("/workflows/Relay", json={"workflow_id": "r1", "input": {"runs_left": 2}}), 202)
    for n in (1, 2, 3):
        _ok(http.post("/workflows/Relay/r1/signals/baton", json=n), 202)
    status = _ok(http.get("/workflows/Relay/r1", params={"wait": "20"}))
    assert (status["status"], status["result"], status["run"]) == ("completed", 6, 3)
    runs = status["runs"]
    assert [(r["run"], r["input"]["seen"], r["next_input"]["seen"]) for r in runs] == [
        (1, 0, 1),
        (2, 1, 3),
    ]
    assert runs[1]["first_version"] == runs[0]["last_version"] + 1

    first = _ok(http.get("/workflows/Relay/r1/history", params={"run": 1}))["events"]
    assert first[0]["type"] == "wf.Started" and first[-1]["type"] == "wf.ContinuedAsNew"
    assert [e["version"] for e in first] == list(
        range(runs[0]["first_version"], runs[0]["last_version"] + 1)
    )
    current = _ok(http.get("/workflows/Relay/r1/history", params={"run": 3}))["events"]
    assert current[0]["data"]["run"] == 3 and current[-1]["type"] == "wf.Completed"
    everything = _ok(http.get("/workflows/Relay/r1/history", params={"limit": 1000}))["events"]
    assert [e["type"] for e in everything].count("wf.Started") == 3

    listed = _ok(http.get("/workflows", params={"type": "Relay"}))["executions"]
    assert [(e["workflow_id"], e["summary"]["run"]) for e in listed] == [("r1", 3)]
    timeline = _ok(http.get("/workflows/Relay/r1/timeline"))
    assert (timeline["run"], timeline["version"]) == (3, status["version"])
    assert [e["kind"] for e in timeline["entries"]].count("signal") == 1  # this run's only

    missing = http.get("/workflows/Relay/r1/history", params={"run": 4})
    assert missing.status_code == 404 and "no run 4" in missing.text
    assert http.get("/workflows/Relay/r1/history", params={"run": 0}).status_code == 422
