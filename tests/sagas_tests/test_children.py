"""Child workflows: a parent awaits its children's results, a child's failure compensates
the parent, cancelling the parent cancels its children, fan-out and fan-in, an id that is
someone else's, and a lost notice that the parent asks for again."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import BaseModel

from sagas import Workflow, WorkflowContext, WorkflowNotFoundError
from tests.sagas_tests.conftest import Shop, ShopFactory
from tests.sagas_tests.support import LossyMailbox, Vault
from tests.sagas_tests.test_timers import ManualClock, until

pytestmark = pytest.mark.anyio


class PackInput(BaseModel):
    vault: str
    amount: int = 1
    fail: bool = False
    sleep_hours: float = 0


pack = Workflow("Pack", input=PackInput, output=int)


@pack.run
async def run_pack(ctx: WorkflowContext, p: PackInput) -> int:
    with ctx.compensation(Vault.take, p.vault, key="box", amount=p.amount):
        held = await ctx.call(Vault.put, p.vault, key="box", amount=p.amount)
    if p.sleep_hours:
        await ctx.sleep(timedelta(hours=p.sleep_hours))
    if p.fail:
        await ctx.call(Vault.take, p.vault, key="nothing-here", amount=1)  # refused
    return held


class OrderInput(BaseModel):
    vault: str
    children: int = 1
    fail_child: bool = False
    sleep_hours: float = 0
    child_id: str | None = None


ship = Workflow("ShipAll", input=OrderInput, output=list[int])


@ship.run
async def run_ship(ctx: WorkflowContext, o: OrderInput) -> list[int]:
    with ctx.compensation(Vault.take, o.vault, key="paid", amount=1):
        await ctx.call(Vault.put, o.vault, key="paid", amount=1)
    packs = [
        ctx.child(
            pack,
            PackInput(vault=f"{o.vault}-{i}", fail=o.fail_child, sleep_hours=o.sleep_hours),
            workflow_id=o.child_id,
        )
        for i in range(o.children)
    ]
    results: list[int] = await ctx.gather(*packs)
    return results


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def shop(make_shop: ShopFactory, clock: ManualClock) -> Shop:
    return make_shop(workflows=[ship, pack], clock=clock)


async def test_a_parent_gets_its_childrens_results(shop: Shop) -> None:
    shop.workflows.start(ship, {"vault": "a", "children": 3}, workflow_id="o1")
    status = await shop.workflows.wait(ship, "o1")
    assert (status.status, status.result) == ("completed", [1, 1, 1])
    assert [(c.workflow_id, c.status) for c in status.children] == [
        ("o1-2", "completed"),
        ("o1-3", "completed"),
        ("o1-4", "completed"),
    ]
    child = shop.workflows.status(pack, "o1-3")
    assert (child.parent, child.result) == ("workflow:ShipAll/o1", 1)
    assert [shop.vault(f"a-{i}", "box") for i in range(3)] == [1, 1, 1]


async def test_a_failed_child_compensates_its_parent(shop: Shop) -> None:
    shop.workflows.start(ship, {"vault": "b", "fail_child": True}, workflow_id="o2")
    status = await shop.workflows.wait(ship, "o2")
    assert status.status == "compensated"
    assert status.error is not None
    assert "workflow:Pack/o2-2.start was compensated" in status.error
    assert shop.workflows.status(pack, "o2-2").status == "compensated"
    assert shop.vault("b", "paid") == 0  # the parent's own step was undone
    assert shop.vault("b-0", "box") == 0  # and the child undid its own


async def test_cancelling_the_parent_cancels_its_children(shop: Shop, clock: ManualClock) -> None:
    shop.workflows.start(ship, {"vault": "c", "children": 2, "sleep_hours": 5}, workflow_id="o3")

    def both_asleep() -> bool:
        try:
            return all(shop.workflows.status(pack, f"o3-{n}").timers for n in (2, 3))
        except WorkflowNotFoundError:
            return False

    await until(both_asleep, "both children to sleep")
    await shop.workflows.cancel(ship, "o3", reason="customer changed their mind")
    parent = await shop.workflows.wait(ship, "o3")
    assert parent.status == "compensated"
    for n in (2, 3):
        child = await shop.workflows.wait(pack, f"o3-{n}")
        assert child.status == "compensated"
        assert child.cancelled
    assert [shop.vault(f"c-{i}", "box") for i in range(2)] == [0, 0]
    assert shop.vault("c", "paid") == 0


async def test_a_child_id_someone_else_holds_is_refused(shop: Shop) -> None:
    shop.workflows.start(pack, {"vault": "mine"}, workflow_id="taken")
    await shop.workflows.wait(pack, "taken")
    shop.workflows.start(ship, {"vault": "d", "child_id": "taken"}, workflow_id="o4")
    status = await shop.workflows.wait(ship, "o4")
    assert status.status == "compensated"
    assert status.error is not None and "was not started by this workflow" in status.error
    assert shop.vault("d", "paid") == 0


async def test_a_lost_notice_is_asked_for_again(make_shop: ShopFactory, clock: ManualClock) -> None:
    mailbox = LossyMailbox()
    mailbox.drop(lambda e: e.name == "child_done", times=1)
    shop = make_shop(workflows=[ship, pack], clock=clock, mailbox=mailbox, resend_after=0.2)
    shop.workflows.start(ship, {"vault": "e"}, workflow_id="o5")
    await until(lambda: bool(mailbox.dropped), "the notice to be lost")
    assert shop.workflows.status(ship, "o5").status == "running"
    for _ in range(2):  # the parent's resend interval passes (counted from its first look)
        clock.advance(timedelta(seconds=1))
        await asyncio.sleep(0.2)
    status = await shop.workflows.wait(ship, "o5")
    assert (status.status, status.result) == ("completed", [1])


def test_a_child_input_that_does_not_fit_is_refused_at_the_call() -> None:
    with pytest.raises(Exception, match="vault"):
        pack.encode_input({"amount": 2})
    assert asyncio.iscoroutinefunction(run_ship)
