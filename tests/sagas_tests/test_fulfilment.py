"""The order saga's fulfilment activity: a carrier that is sometimes away is retried, a
parcel is booked once per order, an undeliverable address refunds and releases.

On an in-process host of the shop's own domain (its activity worker included); the
same saga runs over HTTP with worker processes in ``bench/http_sagas.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from actors import InMemoryMailbox
from examples.shop import (
    CARRIER,
    DOMAIN,
    Account,
    Cart,
    InventoryItem,
    OrderResult,
    order_saga,
)
from examples.shop.shipping import FAIL_EVERY, UNDELIVERABLE, carrier_fails_first
from sagas import Host

pytestmark = pytest.mark.anyio


@pytest.fixture
def host(store_url: str) -> Iterator[Host]:
    CARRIER.parcels.clear()
    with DOMAIN.host(store_url, mailbox=InMemoryMailbox(), tick_interval=0.02) as running:
        yield running


async def stock_up(host: Host, cart: str) -> None:
    await host.client.update(Account.open, "acct-1", owner="Ada")
    await host.client.update(Account.deposit, "acct-1", amount=Decimal(100))
    await host.client.update(InventoryItem.restock, "apple", quantity=10)
    await host.client.update(
        Cart.add_item, cart, sku="apple", quantity=3, unit_price=Decimal("10.00")
    )


def shipped_order(cart: str, ship_to: str = "1 Main St") -> dict[str, Any]:
    return {
        "account_id": "acct-1",
        "cart_id": cart,
        "lines": [{"sku": "apple", "quantity": 3}],
        "amount": "30.00",
        "ship_to": ship_to,
    }


def order_id(*, flaky: bool) -> str:
    """An order id whose first shipping attempt fails (or not), as the carrier decides."""
    return next(f"o-{n}" for n in range(100) if carrier_fails_first(f"o-{n}") == flaky)


def test_the_carrier_is_away_for_one_order_in_fail_every() -> None:
    away = sum(carrier_fails_first(f"order-{n}") for n in range(10_000))
    assert abs(away - 10_000 / FAIL_EVERY) < 300


async def test_a_carrier_away_at_first_is_retried_and_the_order_ships_once(host: Host) -> None:
    wid = order_id(flaky=True)
    await stock_up(host, "cart-1")
    host.workflows.start(order_saga, shipped_order("cart-1"), workflow_id=wid)
    status = await host.workflows.wait(order_saga, wid, timeout=20)
    assert status.status == "completed", status
    result = OrderResult.model_validate(status.result)
    key = f"workflow:Order/{wid}#4"
    assert result.tracking == CARRIER.parcels[key]
    assert list(CARRIER.parcels) == [key]  # one parcel, however many attempts
    ship = status.steps[-1]
    assert (ship.address, ship.status, ship.attempts) == ("activity:ship_order", "applied", 2)
    assert ship.result["attempt"] == 2
    assert host.client.query(Account.balance, "acct-1").result == Decimal(70)
    assert host.workflows.query(order_saga, wid, "stage") == "completed"


async def test_an_order_the_carrier_takes_at_once_ships_in_one_attempt(host: Host) -> None:
    wid = order_id(flaky=False)
    await stock_up(host, "cart-2")
    host.workflows.start(order_saga, shipped_order("cart-2"), workflow_id=wid)
    status = await host.workflows.wait(order_saga, wid, timeout=20)
    assert status.status == "completed", status
    assert status.steps[-1].attempts == 1
    assert OrderResult.model_validate(status.result).tracking is not None


async def test_an_undeliverable_order_is_refunded_and_released(host: Host) -> None:
    wid = order_id(flaky=False)
    await stock_up(host, "cart-3")
    host.workflows.start(order_saga, shipped_order("cart-3", UNDELIVERABLE), workflow_id=wid)
    status = await host.workflows.wait(order_saga, wid, timeout=20)
    assert status.status == "compensated", status
    ship = next(s for s in status.steps if s.command == "ship_order")
    assert (ship.attempts, ship.code) == (1, "non_retryable:Undeliverable")
    assert "does not deliver" in (status.error or "")
    undone = [(s.address, s.command) for s in status.steps if s.compensation is not None]
    assert undone == [("Account/acct-1", "deposit"), ("InventoryItem/apple", "release")]
    assert host.client.query(Account.balance, "acct-1").result == Decimal(100)
    assert host.client.query(InventoryItem.available, "apple").result == 10
    assert CARRIER.parcels == {}
