"""The order saga of the shop: the happy path, and a refusal at each step compensated in
reverse, with exact balances and stock afterwards (SQLite and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from examples.shop import Account, OrderResult, order_saga
from tests.sagas_tests.conftest import Shop

pytestmark = pytest.mark.anyio


def order(
    account: str = "acct-1", cart: str = "cart-1", amount: str = "30.00", **lines: int
) -> dict[str, Any]:
    return {
        "account_id": account,
        "cart_id": cart,
        "lines": [{"sku": sku, "quantity": q} for sku, q in (lines or {"apple": 3}).items()],
        "amount": amount,
    }


async def stock_up(shop: Shop, balance: str = "100.00") -> None:
    await shop.open_account("acct-1", balance)
    await shop.restock("apple", 10)
    await shop.restock("pear", 4)
    await shop.fill_cart("cart-1", "apple", 3, "10.00")


def calls(status: Any) -> list[tuple[str, str, str]]:
    return [(s.address, s.command, s.status) for s in status.steps]


async def test_happy_path_reserves_charges_and_confirms(shop: Shop) -> None:
    await stock_up(shop)
    wid = shop.workflows.start(order_saga, order(apple=3, pear=1), workflow_id="o-1")
    status = await shop.workflows.wait(order_saga, wid)
    assert status.status == "completed"
    result = OrderResult.model_validate(status.result)
    assert result == OrderResult(
        order_id="o-1",
        charged=Decimal("30.00"),
        balance=Decimal("70.00"),
        cart_total=Decimal("30.00"),
    )
    assert calls(status) == [
        ("InventoryItem/apple", "reserve", "applied"),
        ("InventoryItem/pear", "reserve", "applied"),
        ("Account/acct-1", "withdraw", "applied"),
        ("Cart/cart-1", "checkout", "applied"),
    ]
    assert status.steps_done == 4
    assert status.compensations_pending == []
    assert status.error is None
    assert shop.balance("acct-1") == Decimal("70.00")
    assert (shop.available("apple"), shop.available("pear")) == (7, 3)
    assert shop.workflows.query(order_saga, wid, "stage") == "completed"
    row = shop.workflows.execution(order_saga, wid)
    assert row is not None
    assert (row.status, row.summary["steps_done"]) == ("completed", 4)
    # live between steps: loaded once (empty, at start), never replayed
    assert shop.kinds["Order"].stats.replays == 0


async def test_refused_reservation_releases_earlier_lines_only(shop: Shop) -> None:
    await stock_up(shop)
    wid = shop.workflows.start(order_saga, order(apple=3, pear=5), workflow_id="o-2")
    status = await shop.workflows.wait(order_saga, wid)
    assert status.status == "compensated"
    assert status.error is not None and "insufficient stock" in status.error
    assert calls(status) == [
        ("InventoryItem/apple", "reserve", "applied"),
        ("InventoryItem/pear", "reserve", "rejected"),
        ("InventoryItem/apple", "release", "applied"),
    ]
    by_index = {c.index: c.status for c in status.compensations}
    assert by_index == {1: "done", 2: "skipped"}
    assert (shop.available("apple"), shop.available("pear")) == (10, 4)
    assert shop.balance("acct-1") == Decimal("100.00")


async def test_refused_charge_releases_the_reservation(shop: Shop) -> None:
    await stock_up(shop, balance="20.00")
    wid = shop.workflows.start(order_saga, order(apple=3), workflow_id="o-3")
    status = await shop.workflows.wait(order_saga, wid)
    assert status.status == "compensated"
    assert status.error is not None and "insufficient funds" in status.error
    assert calls(status) == [
        ("InventoryItem/apple", "reserve", "applied"),
        ("Account/acct-1", "withdraw", "rejected"),
        ("InventoryItem/apple", "release", "applied"),
    ]
    assert shop.balance("acct-1") == Decimal("20.00")
    assert shop.available("apple") == 10
    # the refund was never sent: the account saw no deposit after its opening one
    history = shop.client.history(Account, "acct-1")
    assert [e.event_type for e in history] == ["AccountOpened", "Deposited"]


async def test_refused_confirmation_refunds_then_releases(shop: Shop) -> None:
    await stock_up(shop)
    wid = shop.workflows.start(order_saga, order(cart="empty-cart", apple=3), workflow_id="o-4")
    status = await shop.workflows.wait(order_saga, wid)
    assert status.status == "compensated"
    assert status.error == (
        "step 3 Cart/empty-cart.checkout was rejected: cannot check out an empty cart"
    )
    assert calls(status) == [
        ("InventoryItem/apple", "reserve", "applied"),
        ("Account/acct-1", "withdraw", "applied"),
        ("Cart/empty-cart", "checkout", "rejected"),
        ("Account/acct-1", "deposit", "applied"),
        ("InventoryItem/apple", "release", "applied"),
    ]
    assert shop.balance("acct-1") == Decimal("100.00")
    assert shop.available("apple") == 10
    history = shop.client.history(Account, "acct-1")
    assert [e.event_type for e in history] == [
        "AccountOpened",
        "Deposited",
        "Withdrawn",
        "Deposited",
    ]
    assert shop.workflows.query(order_saga, wid, "stage") == "compensated"


async def test_many_orders_reconcile(shop: Shop) -> None:
    await shop.open_account("acct-1", "1000.00")
    await shop.restock("apple", 100)
    for i in range(20):
        if i % 5 != 4:
            await shop.fill_cart(f"cart-{i}", "apple", 1, "10.00")
    ids = [
        shop.workflows.start(
            order_saga, order(cart=f"cart-{i}", amount="10.00", apple=2), workflow_id=f"m-{i}"
        )
        for i in range(20)
    ]
    outcomes = [(await shop.workflows.wait(order_saga, w)).status for w in ids]
    completed = outcomes.count("completed")
    assert (completed, outcomes.count("compensated")) == (16, 4)
    assert shop.balance("acct-1") == Decimal("1000.00") - 10 * completed
    assert shop.available("apple") == 100 - 2 * completed
    listed = shop.workflows.executions(order_saga, status="compensated")
    assert sorted(r.workflow_id for r in listed) == sorted(f"m-{i}" for i in range(4, 20, 5))
