"""The carrier's ``shipped`` callback over real HTTP, through the workflow signal route: an
order placed with ``confirm_delivery`` waits for it, a malformed callback is a 422 that
records nothing, and the callback completes the order as confirmed."""

from __future__ import annotations

import time
from typing import Any

from tests.api_tests.conftest import Stack


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _order(stack: Stack) -> dict[str, Any]:
    account, sku, cart = stack.new_id("acct"), stack.new_id("sku"), stack.new_id("cart")
    _ok(stack.http.post(f"/entities/Account/{account}/updates/open", json={"owner": "Ada"}))
    _ok(stack.http.post(f"/entities/Account/{account}/updates/deposit", json={"amount": "50"}))
    _ok(stack.http.post(f"/entities/InventoryItem/{sku}/updates/restock", json={"quantity": 5}))
    item = {"sku": sku, "quantity": 1, "unit_price": "5"}
    _ok(stack.http.post(f"/entities/Cart/{cart}/updates/add_item", json=item))
    return {
        "account_id": account,
        "cart_id": cart,
        "lines": [{"sku": sku, "quantity": 1}],
        "amount": "5",
        "ship_to": "1 Main St",
        "confirm_delivery": True,
    }


def _until_stage(stack: Stack, wid: str, stage: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = stack.http.get(f"/workflows/Order/{wid}/queries/stage")
        if r.status_code == 200 and r.json()["result"] == stage:
            return
        assert time.monotonic() < deadline, f"{wid} never reached {stage}: {r.text}"
        time.sleep(0.02)


def test_the_carriers_callback_over_http_confirms_the_delivery(stack: Stack) -> None:
    wid = stack.new_id("order")
    body = {"input": _order(stack), "workflow_id": wid}
    _ok(stack.http.post("/workflows/Order", json=body), 202)
    _until_stage(stack, wid, "awaiting carrier")
    callback = f"/workflows/Order/{wid}/signals/shipped"

    r = stack.http.post(callback, json={"tracking": ""})
    assert r.status_code == 422, r.text
    assert _ok(stack.http.get(f"/workflows/Order/{wid}"))["signals_received"] == 0

    _ok(stack.http.post(callback, json={"tracking": "TRK-CARRIER-1"}), 202)
    final = _ok(stack.http.get(f"/workflows/Order/{wid}", params={"wait": "20"}))
    assert final["status"] == "completed", final
    assert final["result"]["delivery"] == "confirmed"
    assert final["result"]["tracking"].startswith("TRK-")
    assert final["signals_received"] == 1
