"""Workflow updates over HTTP, on both stacks: the result comes back in the response, a
refused or invalid update answers 409 or 422 and leaves no trace, an update of an ended
execution is a 409, and the OpenAPI document types the body and the result."""

from __future__ import annotations

from typing import Any

from tests.api_tests.conftest import Stack
from tests.api_tests.test_routes_workflows import _transfer


def _history_types(stack: Stack, wid: str) -> list[str]:
    r = stack.http.get(f"/workflows/Transfer/{wid}/history", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [e["type"] for e in r.json()["events"]]


def _remark(stack: Stack, wid: str, body: Any) -> Any:
    return stack.http.post(f"/workflows/Transfer/{wid}/updates/remark", json=body)


def test_an_update_returns_its_result_and_changes_the_execution(stack: Stack) -> None:
    wid, _, _ = _transfer(stack)
    r = _remark(stack, wid, {"text": "call me first"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["workflow_id"], body["result"]) == (wid, 1)
    assert _remark(stack, wid, {"text": "thanks"}).json()["result"] == 2
    memo = stack.http.get(
        f"/workflows/Transfer/{wid}/queries/memo_value", params={"key": "remarks"}
    )
    assert memo.json()["result"] == "['call me first', 'thanks']"
    outcome = stack.http.get(f"/commands/{body['command_id']}").json()
    assert (outcome["status"], outcome["result"]) == ("applied", 1)
    assert _history_types(stack, wid).count("wf.UpdateCompleted") == 2


def test_refused_and_invalid_updates_leave_no_trace(stack: Stack) -> None:
    wid, _, _ = _transfer(stack)
    before = _history_types(stack, wid)
    cases = [
        ({"text": "LOUD"}, 409, "no shouting in remarks"),
        ({"text": ""}, 422, "text"),
        ({"words": "hi"}, 422, "words"),
    ]
    for body, status, message in cases:
        r = _remark(stack, wid, body)
        assert r.status_code == status, (body, r.text)
        assert message in r.text, (body, r.text)
    assert _history_types(stack, wid) == before
    r = stack.http.post(f"/workflows/Transfer/{wid}/updates/unknown", json={})
    assert r.status_code == 404, r.text
    r = _remark(stack, "never-started", {"text": "hello"})
    assert r.status_code == 404, r.text


def test_an_ended_execution_takes_no_updates(stack: Stack) -> None:
    wid, _, _ = _transfer(stack)
    r = stack.http.post(f"/workflows/Transfer/{wid}/signals/approve", json={"by": "ada"})
    assert r.status_code == 202, r.text
    status = stack.http.get(f"/workflows/Transfer/{wid}", params={"wait": "30"}).json()
    assert status["status"] == "completed", status
    before = _history_types(stack, wid)
    r = _remark(stack, wid, {"text": "too late"})
    assert r.status_code == 409, r.text
    assert "finished" in r.text
    assert _history_types(stack, wid) == before  # nothing recorded


def test_the_document_types_the_update(stack: Stack) -> None:
    doc = stack.http.get("/openapi.json").json()
    op = doc["paths"]["/workflows/Transfer/{workflow_id}/updates/remark"]["post"]
    assert (
        op["summary"] == "Transfer.remark: Add a remark to the transfer; returns how many it has."
    )
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    result = doc["components"]["schemas"][ok.rsplit("/", 1)[1]]["properties"]["result"]
    assert result["type"] == "integer"
    assert {"409", "422"} <= set(op["responses"])
