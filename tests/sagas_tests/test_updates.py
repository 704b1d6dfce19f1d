"""Workflow updates and ctx.wait_condition: an update validates, changes the memo, returns
its result; the code waits on a condition over the memo; a refused update leaves no trace;
the history replays; a condition can time out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel

from sagas import (
    InvalidWorkflowInputError,
    WaitTimedOut,
    Workflow,
    WorkflowClosedError,
    WorkflowContext,
    WorkflowRefusedError,
    WorkflowView,
)
from sagas.replayer import replay
from tests.sagas_tests.conftest import ALL_WORKFLOWS, Shop, ShopFactory
from tests.sagas_tests.support import Vault

pytestmark = pytest.mark.anyio


class BasketInput(BaseModel):
    vault: str
    wait_hours: float = 0


basket = Workflow("Basket", input=BasketInput, output=list[str])


def no_duplicates(view: WorkflowView, item: str) -> None:
    if item in view.memo.get("items", []):
        raise ValueError(f"{item} is already in the basket")


@basket.update(validator=no_duplicates)
def add_item(view: WorkflowView, item: str) -> int:
    """Add an item; returns how many the basket holds."""
    if item == "boom":
        raise RuntimeError("the handler cannot take a boom")
    view.memo.setdefault("items", []).append(item)
    return len(view.memo["items"])


@basket.update
def checkout(view: WorkflowView) -> str:
    view.memo["checked_out"] = True
    return "checking out"


@basket.run
async def run_basket(ctx: WorkflowContext, b: BasketInput) -> list[str]:
    ctx.memo["items"] = []
    try:
        if b.wait_hours:
            await ctx.wait_condition(
                lambda: ctx.memo.get("checked_out", False), timeout=timedelta(hours=b.wait_hours)
            )
        else:
            await ctx.wait_condition(lambda: ctx.memo.get("checked_out", False))
    except WaitTimedOut:
        return ["timed out"]
    items: list[str] = ctx.memo["items"]
    await ctx.call(Vault.put, b.vault, key="items", amount=len(items))
    return items


WORKFLOWS = (*ALL_WORKFLOWS, basket)


@pytest.fixture
def shop(make_shop: ShopFactory) -> Shop:
    return make_shop(workflows=WORKFLOWS)


async def test_updates_change_the_state_return_results_and_wake_the_condition(
    shop: Shop,
) -> None:
    wid = shop.workflows.start(basket, {"vault": "bk-1"}, workflow_id="bk-1")
    assert await shop.workflows.update(basket, wid, "add_item", {"item": "tea"}) == 1
    assert await shop.workflows.update(basket, wid, "add_item", {"item": "jam"}) == 2
    assert await shop.workflows.update(basket, wid, "checkout") == "checking out"
    status = await shop.workflows.wait(basket, wid, timeout=20)
    assert (status.status, status.result) == ("completed", ["tea", "jam"])
    assert shop.vault("bk-1", key="items") == 2
    history = shop.workflows.history(basket, wid)
    types = [e.event_type for e in history]
    assert types.count("wf.UpdateAccepted") == 3 and types.count("wf.UpdateCompleted") == 3
    results = [e.event.result for e in history if e.event_type == "wf.UpdateCompleted"]  # type: ignore[attr-defined]
    assert results == [1, 2, "checking out"]
    assert replay(basket, basket.address(wid), history).record.status == "completed"


async def test_a_refused_update_leaves_no_trace(shop: Shop) -> None:
    wid = shop.workflows.start(basket, {"vault": "bk-2"}, workflow_id="bk-2")
    assert await shop.workflows.update(basket, wid, "add_item", {"item": "tea"}) == 1
    before = len(shop.workflows.history(basket, wid))
    with pytest.raises(WorkflowRefusedError, match="tea is already in the basket"):
        await shop.workflows.update(basket, wid, "add_item", {"item": "tea"})
    with pytest.raises(WorkflowRefusedError, match="cannot take a boom"):
        await shop.workflows.update(basket, wid, "add_item", {"item": "boom"})
    with pytest.raises(InvalidWorkflowInputError, match="item"):
        await shop.workflows.update(basket, wid, "add_item", {"thing": 1})
    assert len(shop.workflows.history(basket, wid)) == before
    # the rehearsal of the refused handler changed nothing: the memo holds one item
    assert await shop.workflows.update(basket, wid, "add_item", {"item": "jam"}) == 2
    await shop.workflows.update(basket, wid, "checkout")
    status = await shop.workflows.wait(basket, wid, timeout=20)
    assert status.result == ["tea", "jam"]
    with pytest.raises(WorkflowClosedError, match="has already finished"):
        await shop.workflows.update(basket, wid, "add_item", {"item": "late"})


async def test_an_update_survives_a_restart_and_the_memo_is_rebuilt(
    make_shop: ShopFactory,
) -> None:
    first = make_shop(workflows=WORKFLOWS)
    wid = first.workflows.start(basket, {"vault": "bk-3"}, workflow_id="bk-3")
    assert await first.workflows.update(basket, wid, "add_item", {"item": "tea"}) == 1
    first.stop()
    second = make_shop(workflows=WORKFLOWS)  # the execution is rebuilt from its history
    assert await second.workflows.update(basket, wid, "add_item", {"item": "jam"}) == 2
    await second.workflows.update(basket, wid, "checkout")
    status = await second.workflows.wait(basket, wid, timeout=20)
    assert status.result == ["tea", "jam"]


async def test_a_condition_times_out_on_a_durable_timer(shop: Shop) -> None:
    wid = shop.workflows.start(basket, {"vault": "bk-4", "wait_hours": 0.0002}, workflow_id="bk-4")
    status = await shop.workflows.wait(basket, wid, timeout=20)
    assert (status.status, status.result) == ("completed", ["timed out"])
    types = [e.event_type for e in shop.workflows.history(basket, wid)]
    assert "wf.TimerFired" in types


def test_an_unknown_update_is_named_with_the_known_ones() -> None:
    with pytest.raises(Exception, match="its updates are: add_item, checkout"):
        basket.update_spec("remove_item")
