"""Workflow routes over real HTTP: the order saga completed and compensated, idempotent
starts, signals, queries, cancellation, history, listing, and every error they answer.

Each test runs against the real broker and PostgreSQL and against the in-memory mailbox
and SQLite (the ``stack`` fixture).
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

from tests.api_tests.conftest import Stack

WAIT = {"wait": "20"}


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _account(stack: Stack, funds: str) -> str:
    account = stack.new_id("acct")
    _ok(stack.http.post(f"/entities/Account/{account}/updates/open", json={"owner": "Ada"}))
    if Decimal(funds) > 0:
        url = f"/entities/Account/{account}/updates/deposit"
        _ok(stack.http.post(url, json={"amount": funds}))
    return account


def _balance(stack: Stack, account: str) -> Decimal:
    return Decimal(_ok(stack.http.get(f"/entities/Account/{account}"))["state"]["balance"])


def _available(stack: Stack, sku: str) -> int:
    r = stack.http.get(f"/entities/InventoryItem/{sku}/queries/available")
    result: int = _ok(r)["result"]
    return result


def _order(
    stack: Stack, *, funds: str = "100", stock: int = 10, quantity: int = 2, filled: bool = True
) -> dict[str, Any]:
    """An account, a SKU in stock and a cart (empty unless ``filled``); the order input."""
    account, sku, cart = _account(stack, funds), stack.new_id("sku"), stack.new_id("cart")
    url = f"/entities/InventoryItem/{sku}/updates/restock"
    _ok(stack.http.post(url, json={"quantity": stock}))
    if filled:
        item = {"sku": sku, "quantity": quantity, "unit_price": "5"}
        _ok(stack.http.post(f"/entities/Cart/{cart}/updates/add_item", json=item))
    return {
        "account_id": account,
        "cart_id": cart,
        "lines": [{"sku": sku, "quantity": quantity}],
        "amount": str(5 * quantity),
    }


def _start(stack: Stack, kind: str, input: dict[str, Any], workflow_id: str | None = None) -> str:
    body: dict[str, Any] = {"input": input}
    if workflow_id is not None:
        body["workflow_id"] = workflow_id
    r = stack.http.post(f"/workflows/{kind}", json=body)
    started = _ok(r, 202)
    assert set(started) == {"workflow_id"}
    assert r.headers["location"] == f"/workflows/{kind}/{started['workflow_id']}"
    wid: str = started["workflow_id"]
    return wid


def _final(stack: Stack, kind: str, wid: str) -> dict[str, Any]:
    status: dict[str, Any] = _ok(stack.http.get(f"/workflows/{kind}/{wid}", params=WAIT))
    assert status["status"] in ("completed", "compensated", "failed", "parked"), status
    return status


def _until_stage(stack: Stack, wid: str, stage: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = stack.http.get(f"/workflows/Transfer/{wid}/queries/stage")
        if r.status_code == 200 and r.json()["result"] == stage:
            return
        assert time.monotonic() < deadline, f"{wid} never reached {stage}: {r.text}"
        time.sleep(0.02)


def _transfer(stack: Stack, amount: str = "30") -> tuple[str, str, str]:
    """A transfer holding ``amount`` and waiting for approval: (workflow id, source, target)."""
    source, target = _account(stack, "100"), _account(stack, "0")
    wid = _start(stack, "Transfer", {"source": source, "target": target, "amount": amount})
    _until_stage(stack, wid, "waiting")
    return wid, source, target


# -- the order saga ------------------------------------------------------------------------


def test_order_saga_completes_with_exact_balance_and_stock(stack: Stack) -> None:
    order = _order(stack, quantity=3)
    wid = _start(stack, "Order", order, stack.new_id("order"))
    status = _final(stack, "Order", wid)
    assert status["status"] == "completed"
    assert status["workflow_type"] == "Order"
    assert status["input"] == {
        **order,
        "ship_to": None,
        "confirm_delivery": False,
    }  # collected in the shop
    assert status["result"] == {
        "order_id": wid,
        "charged": "15",
        "balance": "85",
        "cart_total": "15",
        "tracking": None,
        "delivery": None,
    }
    assert status["error"] is None
    assert status["steps_done"] == 3
    assert [(s["command"], s["status"]) for s in status["steps"]] == [
        ("reserve", "applied"),
        ("withdraw", "applied"),
        ("checkout", "applied"),
    ]
    assert status["compensations_pending"] == []
    assert _balance(stack, order["account_id"]) == Decimal(85)
    assert _available(stack, order["lines"][0]["sku"]) == 7
    query = stack.http.get(f"/workflows/Order/{wid}/queries/stage")
    assert _ok(query) == {"result": "completed"}


def test_order_saga_refused_at_checkout_is_compensated_in_reverse(stack: Stack) -> None:
    order = _order(stack, filled=False)
    wid = _start(stack, "Order", order, stack.new_id("order"))
    status = _final(stack, "Order", wid)
    assert status["status"] == "compensated"
    assert "cannot check out an empty cart" in status["error"]
    assert status["result"] is None
    assert [(s["command"], s["status"], s["compensation"]) for s in status["steps"]] == [
        ("reserve", "applied", None),
        ("withdraw", "applied", None),
        ("checkout", "rejected", None),
        ("deposit", "applied", 2),
        ("release", "applied", 1),
    ]
    assert [c["status"] for c in status["compensations"]] == ["done", "done"]
    assert status["compensations_pending"] == []
    assert _balance(stack, order["account_id"]) == Decimal(100)
    assert _available(stack, order["lines"][0]["sku"]) == 10


def test_insufficient_funds_releases_only_the_reservation(stack: Stack) -> None:
    order = _order(stack, funds="3")
    wid = _start(stack, "Order", order, stack.new_id("order"))
    status = _final(stack, "Order", wid)
    assert status["status"] == "compensated"
    assert "insufficient funds" in status["error"]
    assert [(s["command"], s["status"]) for s in status["steps"]] == [
        ("reserve", "applied"),
        ("withdraw", "rejected"),
        ("release", "applied"),
    ]
    assert [c["status"] for c in status["compensations"]] == ["done", "skipped"]
    assert _balance(stack, order["account_id"]) == Decimal(3)
    assert _available(stack, order["lines"][0]["sku"]) == 10


# -- starting ----------------------------------------------------------------------------


def test_the_same_workflow_id_twice_is_one_execution(stack: Stack) -> None:
    order = _order(stack)
    wid = stack.new_id("order")
    assert _start(stack, "Order", order, wid) == wid
    other = {**order, "amount": "1"}  # a different input does not start a second execution
    assert _start(stack, "Order", other, wid) == wid
    status = _final(stack, "Order", wid)
    assert status["status"] == "completed"
    assert status["input"]["amount"] == "10"
    assert _start(stack, "Order", order, wid) == wid  # after it finished, too
    history = _ok(stack.http.get(f"/workflows/Order/{wid}/history"))
    assert [e["type"] for e in history["events"]].count("wf.Started") == 1
    assert _balance(stack, order["account_id"]) == Decimal(90)
    assert _available(stack, order["lines"][0]["sku"]) == 8


def test_a_start_without_an_id_gets_a_new_one_each_time(stack: Stack) -> None:
    source = _account(stack, "0")
    body = {"source": source, "target": source, "amount": "5"}
    first, second = _start(stack, "Transfer", body), _start(stack, "Transfer", body)
    assert first != second
    for wid in (first, second):  # both are refused (no funds) and end compensated
        assert _final(stack, "Transfer", wid)["status"] == "compensated"


def test_idempotency_key_on_start_returns_the_same_execution(stack: Stack) -> None:
    source = _account(stack, "0")
    body = {"input": {"source": source, "target": source, "amount": "5"}}
    key = {"Idempotency-Key": f"start-{uuid.uuid4().hex}"}
    first = stack.http.post("/workflows/Transfer", json=body, headers=key)
    wid = _ok(first, 202)["workflow_id"]
    assert "idempotent-replayed" not in first.headers
    again = stack.http.post("/workflows/Transfer", json=body, headers=key)
    assert _ok(again, 202) == {"workflow_id": wid}
    assert again.headers["idempotent-replayed"] == "true"
    other = stack.http.post("/workflows/Transfer", json={**body, "workflow_id": "x"}, headers=key)
    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert _final(stack, "Transfer", wid)["status"] == "compensated"
    listed = _ok(stack.http.get("/workflows", params={"type": "Transfer", "limit": 1000}))
    mine = [e for e in listed["executions"] if e["workflow_id"] == wid]
    assert len(mine) == 1


def test_invalid_starts_are_422_and_unknown_types_404(stack: Stack) -> None:
    r = stack.http.post("/workflows/Order", json={"input": {"account_id": "a"}})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request"
    missing = {tuple(d["loc"]) for d in r.json()["details"]}
    assert ("body", "input", "cart_id") in missing
    order = _order(stack)
    for bad_id in ("with space", "x" * 101, "a/b", ""):
        r = stack.http.post("/workflows/Order", json={"workflow_id": bad_id, "input": order})
        assert r.status_code == 422, (bad_id, r.text)
    dupes = {**order, "lines": [order["lines"][0], order["lines"][0]]}
    assert stack.http.post("/workflows/Order", json={"input": dupes}).status_code == 422
    assert stack.http.post("/workflows/Order", content=b"{").status_code == 422
    r = stack.http.post("/workflows/Ghost", json={"input": {}})
    assert r.status_code == 404
    assert r.json()["error"] == "unknown_workflow"
    assert "registered: Order, Payout, Receipt, Refund, Transfer" in r.json()["message"]


# -- status and its long poll ------------------------------------------------------------


def test_status_of_an_unknown_execution_is_404_even_with_wait(stack: Stack) -> None:
    for params in ({}, {"wait": "20"}):
        started = time.monotonic()
        r = stack.http.get(f"/workflows/Order/{stack.new_id('nobody')}", params=params)
        assert r.status_code == 404
        assert r.json()["error"] == "workflow_not_found"
        assert time.monotonic() - started < 5
    for tail in ("", "/history", "/queries/q"):
        path = f"/workflows/Ghost/x{tail}"
        assert stack.http.get(path).json()["error"] == "unknown_workflow"
    assert stack.http.get("/workflows/Order/x", params={"wait": "0"}).status_code == 422
    assert stack.http.get("/workflows/Order/x", params={"wait": "31"}).status_code == 422


def test_wait_returns_a_running_execution_when_the_time_is_up(stack: Stack) -> None:
    wid, _, _ = _transfer(stack)
    started = time.monotonic()
    status = _ok(stack.http.get(f"/workflows/Transfer/{wid}", params={"wait": "0.5"}))
    elapsed = time.monotonic() - started
    assert status["status"] == "running"
    assert 0.45 <= elapsed < 5
    assert status["steps_done"] == 1
    assert status["compensations_pending"] == [f"#1 Account/{status['input']['source']}.deposit"]


# -- signals and queries -----------------------------------------------------------------


def test_signals_and_queries_drive_a_transfer_to_completion(stack: Stack) -> None:
    wid, source, target = _transfer(stack, "30")
    assert _balance(stack, source) == Decimal(70)
    base = f"/workflows/Transfer/{wid}"
    noted = _ok(stack.http.post(f"{base}/signals/note", json="see ticket 7"), 202)
    assert noted["workflow_id"] == wid
    assert _ok(stack.http.get(f"/commands/{noted['command_id']}"))["status"] == "applied"
    _ok(stack.http.post(f"{base}/signals/nudge"), 202)
    query = stack.http.get(f"{base}/queries/memo_value", params={"key": "approved_by"})
    assert _ok(query) == {"result": "-"}
    _ok(stack.http.post(f"{base}/signals/approve", json={"by": "Grace"}), 202)
    status = _final(stack, "Transfer", wid)
    assert status["status"] == "completed"
    assert status["result"] == {"approved_by": "Grace", "amount": "30"}
    assert status["signals_received"] == 3
    params = {"key": "approved_by", "default": "nobody"}
    assert _ok(stack.http.get(f"{base}/queries/memo_value", params=params)) == {"result": "Grace"}
    assert _ok(stack.http.get(f"{base}/queries/stage")) == {"result": "completed"}
    assert _balance(stack, source) == Decimal(70)
    assert _balance(stack, target) == Decimal(30)
    late = stack.http.post(f"{base}/signals/approve", json={"by": "Late"})
    assert late.status_code == 409
    assert late.json()["error"] == "workflow_closed"
    assert "already finished (completed)" in late.json()["message"]
    assert _ok(stack.http.get(f"/commands/{late.json()['command_id']}"))["status"] == "rejected"


def test_signal_and_query_errors(stack: Stack) -> None:
    wid, _, _ = _transfer(stack)
    base = f"/workflows/Transfer/{wid}"
    for body in ({}, {"by": ""}, {"by": 7, "extra": 1}):
        r = stack.http.post(f"{base}/signals/approve", json=body)
        assert r.status_code == 422, r.text
    assert stack.http.post(f"{base}/signals/note", json="").status_code == 422
    r = stack.http.post(f"{base}/signals/teleport", json={})
    assert r.status_code == 404
    assert "has no signal named 'teleport'" in r.json()["message"]
    r = stack.http.post(f"/workflows/Transfer/{stack.new_id('nobody')}/signals/nudge")
    assert r.status_code == 404
    assert r.json()["error"] == "workflow_not_found"
    assert stack.http.post("/workflows/Order/o/signals/approve", json={}).status_code == 404
    r = stack.http.get(f"{base}/queries/memo_value")
    assert r.status_code == 422
    assert "key" in r.text
    r = stack.http.get(f"{base}/queries/stage", params={"surprise": "1"})
    assert r.status_code == 422
    r = stack.http.get(f"{base}/queries/nope")
    assert r.status_code == 404
    assert "has no query named 'nope'" in r.json()["message"]
    r = stack.http.get(f"/workflows/Transfer/{stack.new_id('nobody')}/queries/stage")
    assert r.status_code == 404
    assert _ok(stack.http.get(f"{base}/queries/stage")) == {"result": "waiting"}


def test_idempotency_key_on_a_signal_delivers_it_once(stack: Stack) -> None:
    wid, _, _ = _transfer(stack)
    url = f"/workflows/Transfer/{wid}/signals/note"
    key = {"Idempotency-Key": f"note-{uuid.uuid4().hex}"}
    first = _ok(stack.http.post(url, json="once", headers=key), 202)
    replay = stack.http.post(url, json="once", headers=key)
    assert _ok(replay, 202) == first
    assert replay.headers["idempotent-replayed"] == "true"
    assert stack.http.post(url, json="twice", headers=key).status_code == 422
    status = _ok(stack.http.get(f"/workflows/Transfer/{wid}"))
    assert status["signals_received"] == 1


# -- cancellation ------------------------------------------------------------------------


def test_cancel_runs_the_compensations_and_restores_the_balance(stack: Stack) -> None:
    wid, source, target = _transfer(stack, "40")
    assert _balance(stack, source) == Decimal(60)
    base = f"/workflows/Transfer/{wid}"
    cancelled = stack.http.post(f"{base}/cancel", json={"reason": "changed my mind"})
    assert _ok(cancelled, 202)["workflow_id"] == wid
    status = _final(stack, "Transfer", wid)
    assert status["status"] == "compensated"
    assert status["cancelled"] is True
    assert status["error"] == "cancelled: changed my mind"
    assert [(s["command"], s["status"]) for s in status["steps"]] == [
        ("withdraw", "applied"),
        ("deposit", "applied"),
    ]
    assert _balance(stack, source) == Decimal(100)
    assert _balance(stack, target) == Decimal(0)
    again = stack.http.post(f"{base}/cancel")
    assert again.status_code == 409
    assert again.json()["error"] == "workflow_closed"
    assert stack.http.post(f"{base}/signals/approve", json={"by": "x"}).status_code == 409
    r = stack.http.post(f"/workflows/Transfer/{stack.new_id('nobody')}/cancel")
    assert r.status_code == 404
    assert stack.http.post("/workflows/Ghost/x/cancel").status_code == 404
    r = stack.http.post(f"{base}/cancel", json={"reason": "x" * 501})
    assert r.status_code == 422


def test_cancel_after_completion_is_409(stack: Stack) -> None:
    order = _order(stack)
    wid = _start(stack, "Order", order, stack.new_id("order"))
    assert _final(stack, "Order", wid)["status"] == "completed"
    r = stack.http.post(f"/workflows/Order/{wid}/cancel", json={"reason": "too late"})
    assert r.status_code == 409
    assert r.json()["error"] == "workflow_closed"
    assert _balance(stack, order["account_id"]) == Decimal(90)


# -- history and listing -------------------------------------------------------------------


def test_history_pages_through_the_events(stack: Stack) -> None:
    order = _order(stack)
    wid = _start(stack, "Order", order, stack.new_id("order"))
    _final(stack, "Order", wid)
    base = f"/workflows/Order/{wid}/history"
    whole = _ok(stack.http.get(base))
    types = [e["type"] for e in whole["events"]]
    assert types[0] == "wf.Started"
    assert types[-1] == "wf.Completed"
    assert types.count("wf.CallScheduled") == 3
    assert types.count("wf.CallCompleted") == 3
    assert [e["version"] for e in whole["events"]] == list(range(1, len(types) + 1))
    assert whole["next_after"] is None
    assert whole["events"][0]["data"]["input"] == {
        **order,
        "ship_to": None,
        "confirm_delivery": False,
    }
    pages: list[str] = []
    after: int | None = 0
    while after is not None:
        page = _ok(stack.http.get(base, params={"after": after, "limit": 4}))
        pages += [e["type"] for e in page["events"]]
        after = page["next_after"]
    assert pages == types
    assert _ok(stack.http.get(base, params={"after": 1000})) == {"events": [], "next_after": None}
    r = stack.http.get(f"/workflows/Order/{stack.new_id('nobody')}/history")
    assert r.status_code == 404
    assert stack.http.get(base, params={"limit": 0}).status_code == 422


def test_list_by_type_and_status_pages(stack: Stack) -> None:
    running = [_transfer(stack)[0] for _ in range(3)]
    order = _order(stack)
    done = _start(stack, "Order", order, stack.new_id("order"))
    _final(stack, "Order", done)

    def listed(**params: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = None
        while True:
            query = {**params, "limit": 2, **({"after": after} if after else {})}
            page = _ok(stack.http.get("/workflows", params=query))
            found += page["executions"]
            after = page["next_after"]
            if after is None:
                return found

    transfers = listed(type="Transfer", status="running")
    assert set(running) <= {e["workflow_id"] for e in transfers}
    assert {e["status"] for e in transfers} == {"running"}
    assert {e["workflow_type"] for e in transfers} == {"Transfer"}
    mine = next(e for e in transfers if e["workflow_id"] == running[0])
    assert mine["summary"]["steps_done"] == 1
    assert mine["summary"]["compensations_pending"] == 1
    completed = listed(type="Order", status="completed")
    assert done in {e["workflow_id"] for e in completed}
    assert not {e["workflow_id"] for e in completed} & set(running)
    everything = {e["workflow_id"] for e in listed()}
    assert {*running, done} <= everything
    assert stack.http.get("/workflows", params={"type": "Ghost"}).status_code == 404
    assert stack.http.get("/workflows", params={"status": "sleepy"}).status_code == 422
    assert stack.http.get("/workflows", params={"limit": 1001}).status_code == 422


def test_openapi_types_each_workflow(stack: Stack) -> None:
    doc = _ok(stack.http.get("/openapi.json"))
    paths = doc["paths"]
    for path in (
        "/workflows",
        "/workflows/Order",
        "/workflows/Order/{workflow_id}",
        "/workflows/Order/{workflow_id}/cancel",
        "/workflows/Order/{workflow_id}/history",
        "/workflows/Order/{workflow_id}/queries/stage",
        "/workflows/Order/{workflow_id}/signals/shipped",
        "/workflows/Transfer/{workflow_id}/signals/approve",
        "/workflows/Transfer/{workflow_id}/signals/note",
        "/workflows/Transfer/{workflow_id}/signals/nudge",
        "/workflows/Transfer/{workflow_id}/queries/memo_value",
    ):
        assert path in paths, path
    schemas = doc["components"]["schemas"]
    start = paths["/workflows/Order"]["post"]["requestBody"]["content"]["application/json"]
    assert start["schema"] == {"$ref": "#/components/schemas/Order_start"}
    example = start["examples"]["start"]["value"]
    assert example["workflow_id"] == "order-17"
    assert set(example["input"]) == {"account_id", "cart_id", "lines", "amount", "confirm_delivery"}
    assert set(schemas["Order_start"]["properties"]) == {"workflow_id", "input"}
    status = paths["/workflows/Order/{workflow_id}"]["get"]["responses"]["200"]
    status_schema = schemas[status["content"]["application/json"]["schema"]["$ref"].split("/")[-1]]
    assert "OrderResult" in str(status_schema["properties"]["result"])
    approve = paths["/workflows/Transfer/{workflow_id}/signals/approve"]["post"]["requestBody"]
    assert "Approval" in str(approve["content"]["application/json"]["schema"])
    params = paths["/workflows/Transfer/{workflow_id}/queries/memo_value"]["get"]["parameters"]
    assert {(p["name"], p["required"]) for p in params} >= {("key", True), ("default", False)}
    assert "requestBody" not in paths["/workflows/Transfer/{workflow_id}/signals/nudge"]["post"]


def test_status_shows_each_activity_attempts_error_and_options(stack: Stack) -> None:
    wid = _start(stack, "Receipt", {"email": "ada@example.com"})
    status = _final(stack, "Receipt", wid)
    assert (status["status"], status["result"]) == ("completed", "sent to ada@example.com")
    (step,) = status["steps"]
    assert (step["address"], step["command"]) == ("activity:send_receipt", "send_receipt")
    assert (step["status"], step["attempts"]) == ("applied", 2)
    assert step["activity"]["start_to_close"] == 60
    assert step["args"] == {"email": "ada@example.com"}
    refused = _final(stack, "Receipt", _start(stack, "Receipt", {"email": "nobody"}))
    assert refused["result"] == "not sent: BadAddress"
    (step,) = refused["steps"]
    assert (step["status"], step["attempts"]) == ("rejected", 1)
    assert step["code"] == "non_retryable:BadAddress"
    assert "BadAddress: 'nobody' is no address" in step["error"]
