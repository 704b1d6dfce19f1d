"""The order saga waits for the carrier's ``shipped`` callback, on the virtual clock.

An order placed with ``confirm_delivery`` waits two days for the callback, then has the
dispatch desk chase the carrier and waits five more, then completes unconfirmed. The
environment skips to each deadline, so a week passes in milliseconds; what is asserted
is the result, the recorded history (each escalation step, each timer) and the desk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from examples.shop import DOMAIN, Account, Cart, InventoryItem, order_saga
from examples.shop.orders import CALLBACK_WAIT, CHASE_WAIT, shipped
from examples.shop.shipping import DISPATCH, Shipped, carrier_fails_first
from sagas import InvalidWorkflowInputError
from sagas.testing import WorkflowEnvironment

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    DISPATCH.chasing.clear()
    async with WorkflowEnvironment(DOMAIN) as environment:
        client = environment.client
        await environment.call(client.update(Account.open, "acct", owner="Ada"))
        await environment.call(client.update(Account.deposit, "acct", amount=Decimal(100)))
        await environment.call(client.update(InventoryItem.restock, "tea", quantity=10))
        yield environment


async def place(env: WorkflowEnvironment, n: int, *, confirm: bool = True) -> str:
    """Start an order whose carrier books at the first attempt (no retry to wait for)."""
    wid = next(f"ord-{n}-{i}" for i in range(100) if not carrier_fails_first(f"ord-{n}-{i}"))
    cart = f"cart-{wid}"
    line = {"sku": "tea", "quantity": 1, "unit_price": Decimal("4.00")}
    await env.call(env.client.update(Cart.add_item, cart, **line))
    order: dict[str, Any] = {
        "account_id": "acct",
        "cart_id": cart,
        "lines": [{"sku": "tea", "quantity": 1}],
        "amount": "4.00",
        "ship_to": "1 Main St",
        "confirm_delivery": confirm,
    }
    return await env.start(order_saga, order, workflow_id=wid)


def steps(env: WorkflowEnvironment, wid: str) -> list[str]:
    """The history's waits and escalations, in order."""
    out: list[str] = []
    for recorded in env.history(order_saga, wid):
        event: Any = recorded.event
        if event.event_type == "wf.TimerStarted":
            out.append("timer set")
        elif event.event_type == "wf.TimerFired":
            out.append("timer fired")
        elif event.event_type == "wf.LocalActivityRan":
            out.append(f"{event.name} {event.status}")
        elif event.event_type == "wf.SignalReceived":
            out.append(f"signal {event.name}")
    return out


def stage(env: WorkflowEnvironment, wid: str) -> str:
    return str(env.workflows.query(order_saga, wid, "stage"))


async def test_the_callback_before_the_deadline_confirms_the_delivery(
    env: WorkflowEnvironment,
) -> None:
    wid = await place(env, 1)
    assert stage(env, wid) == "awaiting carrier"
    await env.sleep(CALLBACK_WAIT - timedelta(minutes=1))
    await env.signal(shipped, wid, Shipped(tracking="TRK-1"))
    status = await env.result(order_saga, wid)
    assert status.status == "completed"
    assert status.result["delivery"] == "confirmed"
    assert status.result["tracking"].startswith("TRK-")
    assert steps(env, wid) == ["timer set", "signal shipped"]
    assert DISPATCH.chasing == {}


async def test_a_late_callback_is_chased_and_then_confirms(env: WorkflowEnvironment) -> None:
    wid = await place(env, 2)
    await env.sleep(CALLBACK_WAIT + timedelta(hours=1))
    assert stage(env, wid) == "chasing carrier"
    tracking = DISPATCH.chasing[wid]
    assert tracking.startswith("TRK-")
    await env.signal(shipped, wid, Shipped(tracking=tracking))
    status = await env.result(order_saga, wid)
    assert status.result["delivery"] == "confirmed"
    assert steps(env, wid) == [
        "timer set",
        "timer fired",
        "chase_carrier applied",
        "timer set",
        "signal shipped",
    ]


async def test_a_silent_carrier_is_chased_then_the_order_completes_unconfirmed(
    env: WorkflowEnvironment,
) -> None:
    began = env.now()
    wid = await place(env, 3)
    status = await env.result(order_saga, wid)
    assert status.status == "completed"
    assert status.result["delivery"] == "unconfirmed"
    assert env.now() - began == CALLBACK_WAIT + CHASE_WAIT
    assert steps(env, wid) == [
        "timer set",
        "timer fired",
        "chase_carrier applied",
        "timer set",
        "timer fired",
    ]
    assert list(DISPATCH.chasing) == [wid]
    # Not compensated: the parcel was handed over; the charge and the stock stand.
    assert Decimal(env.client.query(Account.balance, "acct").result) == Decimal(96)


async def test_a_callback_sent_while_the_parcel_is_booked_wins_at_once(
    env: WorkflowEnvironment,
) -> None:
    wid = await place(env, 4)
    before = env.now()
    await env.signal(shipped, wid, Shipped(tracking="TRK-early"))
    status = await env.result(order_saga, wid)
    assert status.result["delivery"] == "confirmed"
    assert env.now() == before


async def test_without_confirm_delivery_the_order_does_not_wait(env: WorkflowEnvironment) -> None:
    wid = await place(env, 5, confirm=False)
    before = env.now()
    status = await env.result(order_saga, wid)
    assert status.result["delivery"] is None
    assert env.now() == before
    assert steps(env, wid) == []


async def test_confirm_delivery_without_an_address_is_refused(env: WorkflowEnvironment) -> None:
    order = {
        "account_id": "acct",
        "cart_id": "c",
        "lines": [{"sku": "tea", "quantity": 1}],
        "amount": "4.00",
        "confirm_delivery": True,
    }
    with pytest.raises(InvalidWorkflowInputError, match="confirm_delivery needs a ship_to"):
        env.workflows.start(order_saga, order, workflow_id="no-address")
    assert env.host.store.executions(status="running", limit=10) == []
