"""The API's /metrics counts what only the store knows, on both stacks: executions by
workflow type and status across every worker, and the durable timers pending."""

from __future__ import annotations

import re
import time

import pytest

from tests.api_tests.conftest import Stack, StackFactory

KINDS = [
    "memory-sqlite",
    pytest.param("kafka-postgres", marks=[pytest.mark.kafka, pytest.mark.postgres]),
]


def _gauges(stack: Stack) -> dict[str, float]:
    r = stack.http.get("/metrics")
    assert r.status_code == 200, r.text
    found = {}
    for line in r.text.splitlines():
        m = re.match(r"^(entityflow_(?:workflow_executions|timers_pending)\S*) (\S+)$", line)
        if m:
            found[m.group(1)] = float(m.group(2))
    return found


def _until(stack: Stack, wf: str, wid: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while stack.http.get(f"/workflows/{wf}/{wid}").json().get("status") != status:
        assert time.monotonic() < deadline, f"{wf}/{wid} never {status}"
        time.sleep(0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_executions_by_status_and_pending_timers_are_counted(
    make_stack: StackFactory, kind: str
) -> None:
    with make_stack(kind) as s:
        assert _gauges(s) == {"entityflow_timers_pending": 0.0}  # nothing yet
        account = s.new_id("acct")
        assert s.http.post(
            f"/entities/Account/{account}/updates/open", json={"owner": "A"}
        ).is_success
        assert s.http.post(
            f"/entities/Account/{account}/updates/deposit", json={"amount": "9"}
        ).is_success
        refunds = []
        for _ in range(2):  # each waits for a manager, with a reminder timer set
            body = {"input": {"account_id": account, "amount": "1.00"}}
            refunds.append(s.http.post("/workflows/Refund", json=body).json()["workflow_id"])
        receipt = s.http.post("/workflows/Receipt", json={"input": {"email": "a@b.c"}}).json()
        for wid in refunds:
            _until(s, "Refund", wid, "running")
        _until(s, "Receipt", receipt["workflow_id"], "completed")
        deadline = time.monotonic() + 30
        while (timers := s.host.store.count_timers()) < 2:
            assert time.monotonic() < deadline, "the refunds set no timers"
            time.sleep(0.05)
        gauges = _gauges(s)
        running = 'entityflow_workflow_executions{status="running",workflow_type="Refund"}'
        done = 'entityflow_workflow_executions{status="completed",workflow_type="Receipt"}'
        assert gauges[running] == 2
        assert gauges[done] == 1
        assert gauges["entityflow_timers_pending"] == timers
