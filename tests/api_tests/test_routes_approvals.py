"""``GET /approvals`` and approval decisions over real HTTP: the refund example's request
is listed with who is asked and when it escalates, a stranger's decision is refused with
a 422 and leaves no trace, the manager's decision pays the refund."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.api_tests.conftest import Stack


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _listed(stack: Stack, wid: str, **params: str) -> list[dict[str, Any]]:
    found = _ok(stack.http.get("/approvals", params=params))["approvals"]
    return [a for a in found if a["workflow_id"] == wid]


def _wait_listed(stack: Stack, wid: str) -> dict[str, Any]:
    for _ in range(200):
        found = _listed(stack, wid)
        if found:
            return found[0]
        stack.http.get(f"/workflows/Refund/{wid}", params={"wait": "0.05"})
    raise AssertionError(f"Refund {wid} never asked for its approval")


def test_an_open_refund_is_listed_and_decided_over_http(stack: Stack) -> None:
    account = stack.new_id("acct")
    _ok(stack.http.post(f"/entities/Account/{account}/updates/open", json={"owner": "Ada"}))
    wid = stack.new_id("refund")
    refund = {"account_id": account, "amount": "12.50", "reason": "late parcel"}
    body = {"input": refund, "workflow_id": wid}
    assert _ok(stack.http.post("/workflows/Refund", json=body), 202)["workflow_id"] == wid
    listed = _wait_listed(stack, wid)
    since = datetime.fromisoformat(listed["since"])
    assert listed["approval"] == "manager"
    assert listed["approvers"] == ["manager"]
    assert datetime.fromisoformat(listed["next_escalation"]) == since + timedelta(hours=24)
    assert listed["decide"] == f"/workflows/Refund/{wid}/signals/manager"
    assert _listed(stack, wid, approver="manager") == [listed]
    assert _listed(stack, wid, approver="finance-lead") == []

    stranger = {"approved": True, "by": "mallory", "comment": "trust me"}
    r = stack.http.post(listed["decide"], json=stranger)
    assert r.status_code == 422, r.text
    assert "'mallory' may not decide approval 'manager'" in r.json()["message"]
    status = _ok(stack.http.get(f"/workflows/Refund/{wid}"))
    assert status["signals_received"] == 0

    decision = {"approved": True, "by": "manager", "comment": "goodwill"}
    _ok(stack.http.post(listed["decide"], json=decision), 202)
    final = _ok(stack.http.get(f"/workflows/Refund/{wid}", params={"wait": "20"}))
    assert final["status"] == "completed", final
    assert final["result"] == {"status": "refunded", "decided_by": "manager", "comment": "goodwill"}
    [approval] = final["approvals"]
    assert [s.split(" at ")[0] for s in approval["steps"]] == ["requested", "approved"]
    state = _ok(stack.http.get(f"/entities/Account/{account}"))["state"]
    assert Decimal(state["balance"]) == Decimal("12.50")
    assert _listed(stack, wid) == []


def test_bad_approval_queries_and_bodies_are_422(stack: Stack) -> None:
    assert stack.http.get("/approvals", params={"approver": ""}).status_code == 422
    wid = stack.new_id("refund")
    r = stack.http.post(f"/workflows/Refund/{wid}/signals/manager", json={"approved": "maybe"})
    assert r.status_code == 422, r.text
