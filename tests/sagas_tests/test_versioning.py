"""Versioning with ``ctx.patched``: executions started before a code change keep the old
branch, new ones take the new, both finish side by side; without the patch the same
change parks the old execution (the check that makes ``patched`` necessary)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel

from sagas import Workflow, WorkflowContext, WorkflowNotFoundError
from tests.sagas_tests.conftest import Shop, ShopFactory
from tests.sagas_tests.support import Vault
from tests.sagas_tests.test_timers import ManualClock, until

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


class ShipInput(BaseModel):
    vault: str


def ship_v1() -> Workflow[ShipInput, str]:
    wf = Workflow("Ship", input=ShipInput, output=str)

    @wf.run
    async def run(ctx: WorkflowContext, s: ShipInput) -> str:
        await ctx.call(Vault.put, s.vault, key="box", amount=1)
        await ctx.sleep(timedelta(hours=1))
        await ctx.call(Vault.put, s.vault, key="label", amount=1)
        return "v1"

    return wf


def ship_v2(*, with_patch: bool) -> Workflow[ShipInput, str]:
    """v2 insures the parcel before the sleep: a new step where v1 had none."""
    wf = Workflow("Ship", input=ShipInput, output=str)

    @wf.run
    async def run(ctx: WorkflowContext, s: ShipInput) -> str:
        await ctx.call(Vault.put, s.vault, key="box", amount=1)
        insured = ctx.patched("insure-before-sleep") if with_patch else True
        if insured:
            await ctx.call(Vault.put, s.vault, key="insurance", amount=1)
        await ctx.sleep(timedelta(hours=1))
        await ctx.call(Vault.put, s.vault, key="label", amount=1)
        return "v2 insured" if insured else "v2 on the old path"

    return wf


async def started_sleeping(shop: Shop, wf: Workflow[ShipInput, str], wid: str) -> None:
    def sleeping() -> bool:
        try:
            return any(t.status == "pending" for t in shop.workflows.status(wf, wid).timers)
        except WorkflowNotFoundError:
            return False

    await until(sleeping, f"{wid} to sleep")


async def deploy(
    make_shop: ShopFactory, clock: ManualClock, wf: Workflow[ShipInput, str]
) -> tuple[Shop, Shop]:
    """An execution started on v1, then v1's worker stopped and ``wf`` deployed."""
    old = make_shop(workflows=[ship_v1()], clock=clock)
    old.workflows.start(old.workflows.definition("Ship"), {"vault": "old"}, workflow_id="s-old")
    await started_sleeping(old, old.workflows.definition("Ship"), "s-old")
    old.stop()
    new = make_shop(workflows=[wf], clock=clock, mailbox=old.host.mailbox)
    return old, new


async def test_old_and_new_executions_finish_side_by_side_with_patched(
    make_shop: ShopFactory, clock: ManualClock
) -> None:
    v2 = ship_v2(with_patch=True)
    _, shop = await deploy(make_shop, clock, v2)
    shop.workflows.start(v2, {"vault": "new"}, workflow_id="s-new")
    await started_sleeping(shop, v2, "s-new")
    clock.advance(timedelta(hours=1))
    old = await shop.workflows.wait(v2, "s-old")
    new = await shop.workflows.wait(v2, "s-new")
    assert (old.status, old.result) == ("completed", "v2 on the old path")
    assert (new.status, new.result) == ("completed", "v2 insured")
    assert (shop.vault("old", "insurance"), shop.vault("new", "insurance")) == (0, 1)
    assert (shop.vault("old", "label"), shop.vault("new", "label")) == (1, 1)
    patches = [e.event_type for e in shop.workflows.history(v2, "s-new")]
    assert "wf.Patched" in patches
    assert "wf.Patched" not in [e.event_type for e in shop.workflows.history(v2, "s-old")]


async def test_the_same_change_without_patched_parks_the_old_execution(
    make_shop: ShopFactory, clock: ManualClock
) -> None:
    v2 = ship_v2(with_patch=False)
    _, shop = await deploy(make_shop, clock, v2)
    clock.advance(timedelta(hours=1))  # the timer loads it: its replay diverges
    await until(lambda: shop.workflows.status(v2, "s-old").status == "parked", "the park")
    parked = shop.workflows.status(v2, "s-old").parked
    assert parked is not None
    assert parked.expected == "timer #2 (sleep) due 2026-01-01T01:00:00+00:00"
    assert parked.actual == "call #2 Vault/old.put(key='insurance', amount=1)"


async def test_a_deprecated_patch_still_replays_histories_that_took_it(
    make_shop: ShopFactory, clock: ManualClock
) -> None:
    v2 = ship_v2(with_patch=True)
    first = make_shop(workflows=[v2], clock=clock)
    first.workflows.start(v2, {"vault": "dep"}, workflow_id="s-dep")
    await started_sleeping(first, v2, "s-dep")
    first.stop()

    v3 = Workflow("Ship", input=ShipInput, output=str)

    @v3.run
    async def run(ctx: WorkflowContext, s: ShipInput) -> str:
        await ctx.call(Vault.put, s.vault, key="box", amount=1)
        ctx.deprecate_patch("insure-before-sleep")
        await ctx.call(Vault.put, s.vault, key="insurance", amount=1)
        await ctx.sleep(timedelta(hours=1))
        await ctx.call(Vault.put, s.vault, key="label", amount=1)
        return "v3"

    shop = make_shop(workflows=[v3], clock=clock, mailbox=first.host.mailbox)
    clock.advance(timedelta(hours=1))
    status = await shop.workflows.wait(v3, "s-dep")
    assert (status.status, status.result) == ("completed", "v3")
