"""Executions survive: idempotent start, eviction, a restarted host, lost messages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from examples.shop import Account, order_saga
from sagas import Workflow
from tests.sagas_tests.conftest import Shop, ShopFactory
from tests.sagas_tests.support import (
    Approval,
    LossyMailbox,
    Vault,
    approve,
    go,
    is_call,
    is_reply_to,
    move,
    undo,
)

pytestmark = pytest.mark.anyio

ORDER = {
    "account_id": "acct-1",
    "cart_id": "cart-1",
    "lines": [{"sku": "apple", "quantity": 3}],
    "amount": "30.00",
}


async def stock_up(shop: Shop) -> None:
    await shop.open_account("acct-1", "100.00")
    await shop.restock("apple", 10)
    await shop.fill_cart("cart-1", "apple", 3, "10.00")


async def until(shop: Shop, wf: Workflow[Any, Any], wid: str, event: str, count: int = 1) -> None:
    """Wait until the execution's history holds ``count`` events of type ``event``."""
    for _ in range(1000):
        try:
            found = [e for e in shop.workflows.history(wf, wid) if e.event_type == event]
        except LookupError:
            found = []
        if len(found) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{wid} never recorded {count} {event}")


def withdrawals(shop: Shop) -> int:
    return sum(1 for e in shop.client.history(Account, "acct-1") if e.event_type == "Withdrawn")


async def test_same_workflow_id_is_the_same_execution(shop: Shop) -> None:
    await stock_up(shop)
    first = shop.workflows.start(order_saga, ORDER, workflow_id="o-1")
    second = shop.workflows.start(order_saga, {**ORDER, "amount": "99.00"}, workflow_id="o-1")
    assert first == second == "o-1"
    status = await shop.workflows.wait(order_saga, "o-1")
    assert status.status == "completed"
    assert status.input["amount"] == "30.00"
    # even once the runtime forgot the start's outcome, the execution refuses a second start
    shop.host.store.forget_outcomes_before(datetime.now(UTC) + timedelta(hours=1))
    assert shop.client.outcome("workflow:Order/o-1#start") is None
    shop.workflows.start(order_saga, {**ORDER, "amount": "77.00"}, workflow_id="o-1")
    for _ in range(500):
        again = shop.client.outcome("workflow:Order/o-1#start")
        if again is not None:
            break
        await asyncio.sleep(0.01)
    assert again is not None
    assert (again.status, again.result) == (
        "applied",
        {"workflow_id": "o-1", "status": "completed"},
    )
    history = [e.event_type for e in shop.workflows.history(order_saga, "o-1")]
    assert history.count("wf.Started") == 1
    assert shop.balance("acct-1") == Decimal("70.00")
    assert withdrawals(shop) == 1


async def test_evicted_executions_replay_and_finish(make_shop: ShopFactory) -> None:
    # Through the mailbox, each hop is a batch of its own (co-located, a saga's hops share
    # one), so an execution is evicted between its hops.
    shop = make_shop(cache_size=1, local_delivery=False)
    await stock_up(shop)
    status_of = []
    for i in range(3):
        shop.workflows.start(order_saga, {**ORDER, "amount": "10.00"}, workflow_id=f"e-{i}")
    for i in range(3):
        status_of.append((await shop.workflows.wait(order_saga, f"e-{i}")).status)
    assert sorted(status_of) == ["compensated", "compensated", "completed"]
    assert shop.kinds["Order"].stats.replays > 0  # rebuilt from history, not kept in memory
    assert shop.balance("acct-1") == Decimal("90.00")
    assert shop.available("apple") == 7


async def test_lost_call_is_sent_again_when_overdue(make_shop: ShopFactory) -> None:
    mailbox = LossyMailbox()
    mailbox.drop(is_call("Account/acct-1", "withdraw"))
    shop = make_shop(mailbox=mailbox, resend_after=0.2)
    await stock_up(shop)
    shop.workflows.start(order_saga, ORDER, workflow_id="l-1")
    status = await shop.workflows.wait(order_saga, "l-1")
    assert status.status == "completed"
    assert [e.name for e in mailbox.dropped] == ["withdraw"]
    assert shop.kinds["Order"].stats.resends >= 1
    assert shop.balance("acct-1") == Decimal("70.00")
    assert withdrawals(shop) == 1


async def test_lost_reply_is_recovered_without_applying_twice(make_shop: ShopFactory) -> None:
    mailbox = LossyMailbox()
    mailbox.drop(
        lambda e: (
            is_reply_to("workflow:Order/l-2")(e)
            and e.reply is not None
            and e.reply.address == "Account/acct-1"
        )
    )
    shop = make_shop(mailbox=mailbox, resend_after=0.2)
    await stock_up(shop)
    shop.workflows.start(order_saga, ORDER, workflow_id="l-2")
    status = await shop.workflows.wait(order_saga, "l-2")
    assert status.status == "completed"
    assert len(mailbox.dropped) == 1
    assert shop.kinds["Order"].stats.resends >= 1
    # the entity saw the same command id again and answered with its first outcome
    assert shop.balance("acct-1") == Decimal("70.00")
    assert withdrawals(shop) == 1


async def test_restarted_host_resends_what_was_lost(make_shop: ShopFactory) -> None:
    mailbox = LossyMailbox()
    mailbox.drop(is_call("Account/acct-1", "withdraw"))
    first = make_shop(mailbox=mailbox, resend_after=3600)
    await stock_up(first)
    first.workflows.start(order_saga, ORDER, workflow_id="r-1")
    await until(first, order_saga, "r-1", "wf.CallScheduled", 2)
    await asyncio.sleep(0.1)
    assert first.workflows.status(order_saga, "r-1").status == "running"
    assert len(mailbox.dropped) == 1
    # a new owner of its partition must wake it: a call has no answer
    assert first.kinds["Order"].unfinished(first.host.store) == ["workflow:Order/r-1"]
    first.stop()
    second = make_shop(mailbox=mailbox, resend_after=3600)
    status = await second.workflows.wait(order_saga, "r-1")
    assert status.status == "completed"
    assert second.kinds["Order"].stats.replays == 1
    assert second.balance("acct-1") == Decimal("70.00")
    assert second.available("apple") == 7
    assert withdrawals(second) == 1


async def test_restarted_host_continues_a_waiting_workflow(make_shop: ShopFactory) -> None:
    mailbox = LossyMailbox()
    first = make_shop(mailbox=mailbox)
    await first.client.update(Vault.put, "src", key="gold", amount=10)
    first.workflows.start(move, {"source": "src", "target": "dst"}, workflow_id="w-1")
    await until(first, move, "w-1", "wf.CallCompleted")
    row = first.workflows.execution(move, "w-1")
    assert row is not None and row.summary["in_flight"] == 0  # it only waits for its signal
    first.stop()
    second = make_shop(mailbox=mailbox)
    assert second.workflows.query(move, "w-1", "stage") == "waiting"
    await second.workflows.signal(approve, "w-1", Approval(by="after the restart"))
    status = await second.workflows.wait(move, "w-1")
    assert (status.status, status.result) == ("completed", {"approved_by": "after the restart"})
    assert (second.vault("src"), second.vault("dst")) == (5, 5)


async def test_restart_during_compensation_retries_finishes_it(make_shop: ShopFactory) -> None:
    mailbox = LossyMailbox()
    first = make_shop(mailbox=mailbox)
    await first.client.update(Vault.put, "v", key="gold", amount=10)
    first.workflows.start(undo, {"vault": "v", "attempts": 1000}, workflow_id="u-1")
    await until(first, undo, "u-1", "wf.CallCompleted")
    await first.client.update(Vault.lock, "v")
    await first.workflows.signal(go, "u-1", None)
    await until(first, undo, "u-1", "wf.CallCompleted", 4)
    first.stop()
    second = make_shop(mailbox=mailbox)
    await second.client.update(Vault.unlock, "v")
    status = await second.workflows.wait(undo, "u-1")
    assert status.status == "compensated"
    assert second.vault("v") == 10
