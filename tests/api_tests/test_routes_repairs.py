"""Compensation repair over HTTP, on both stacks: a Payout whose undo is refused (its
account was closed meanwhile) fails; a retry fails again, honestly; a skip with a reason
ends it compensated; repairs that do not fit answer 409 or 422 and record nothing."""

from __future__ import annotations

import time
from typing import Any

from tests.api_tests.conftest import Stack

WAIT = {"wait": "30"}


def _status(stack: Stack, wid: str, until: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        r = stack.http.get(f"/workflows/Payout/{wid}", params=WAIT)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] == until:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def _history_length(stack: Stack, wid: str) -> int:
    r = stack.http.get(f"/workflows/Payout/{wid}/history", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return len(r.json()["events"])


def failed_payout(stack: Stack) -> tuple[str, int, int]:
    """(workflow id, the failed compensation's index, the execution's history length)."""
    account = stack.new_id("acct")
    http = stack.http
    assert http.post(f"/entities/Account/{account}/updates/open", json={"owner": "Ada"}).is_success
    assert http.post(
        f"/entities/Account/{account}/updates/deposit", json={"amount": "10"}
    ).is_success
    wid = stack.new_id("payout")
    r = http.post(
        "/workflows/Payout",
        json={"workflow_id": wid, "input": {"account_id": account, "amount": "10"}},
    )
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 30
    while http.get(f"/entities/Account/{account}").json()["state"]["balance"] != "0":
        assert time.monotonic() < deadline, "the payout never withdrew"
        time.sleep(0.05)
    assert http.post(f"/entities/Account/{account}/updates/close", json={}).is_success
    assert http.post(f"/workflows/Payout/{wid}/signals/go", json=None).status_code == 202
    failed = _status(stack, wid, "failed")
    (comp,) = failed["compensations"]
    assert comp["status"] == "failed" and "not open" in failed["error"]
    return wid, comp["index"], _history_length(stack, wid)


def test_retry_then_skip_repairs_a_failed_saga(stack: Stack) -> None:
    wid, index, _ = failed_payout(stack)
    base = f"/workflows/Payout/{wid}/compensations/{index}"
    r = stack.http.post(f"{base}/retry", json={"reason": "try once more"})
    assert r.status_code == 202, r.text
    assert set(r.json()) == {"workflow_id", "command_id"}
    # the account is still closed: the retried compensation runs out again, and says so
    again = _status(stack, wid, "failed")
    assert again["repairs"] == 1
    r = stack.http.post(f"{base}/skip", json={"reason": "paid back by hand, ticket 7"})
    assert r.status_code == 202, r.text
    done = _status(stack, wid, "compensated")
    assert done["repairs"] == 2 and done["failed_compensation"] is None
    (comp,) = done["compensations"]
    assert comp["status"] == "skipped"
    assert comp["error"] == "skipped by an operator: paid back by hand, ticket 7"
    events = stack.http.get(f"/workflows/Payout/{wid}/history", params={"limit": 1000}).json()
    repairs = [e["data"] for e in events["events"] if e["type"] == "wf.CompensationRepaired"]
    assert [(r["action"], r["reason"]) for r in repairs] == [
        ("retry", "try once more"),
        ("skip", "paid back by hand, ticket 7"),
    ]


def test_repairs_that_do_not_fit_are_refused_and_record_nothing(stack: Stack) -> None:
    wid, index, length = failed_payout(stack)
    base = f"/workflows/Payout/{wid}/compensations"
    refused = [
        (f"{base}/{index}/skip", {"reason": ""}, 409, "a skip needs a reason"),
        (f"{base}/{index + 50}/retry", {}, 409, f"no compensation #{index + 50}"),
        (f"{base}/{index}/redo", {}, 422, "retry"),
        (f"{base}/-1/retry", {}, 422, "greater than or equal to 0"),
        (f"{base}/{index}/retry", {"reason": "x", "extra": 1}, 422, "extra"),
    ]
    for path, body, status, message in refused:
        r = stack.http.post(path, json=body)
        assert r.status_code == status, (path, r.text)
        assert message in r.text, (path, r.text)
    assert _history_length(stack, wid) == length
    r = stack.http.post("/workflows/Payout/nobody-here/compensations/1/retry", json={})
    assert r.status_code == 404, r.text
