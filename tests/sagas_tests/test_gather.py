"""ctx.gather's three ways with a failure: wait for all then raise (the default), fail
fast (the rest abandoned: timers cancelled, signal waits withdrawn), or collect every
outcome (partial failures returned)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from sagas import StepRejected, Workflow, WorkflowContext
from tests.sagas_tests.conftest import ALL_WORKFLOWS, ShopFactory
from tests.sagas_tests.support import Vault

pytestmark = pytest.mark.anyio


class GatherInput(BaseModel):
    full: str
    empty: str
    mode: str


gatherer = Workflow("Gatherer", input=GatherInput, output=list[str])
never = gatherer.signal("never")


@gatherer.run
async def run_gatherer(ctx: WorkflowContext, g: GatherInput) -> list[str]:
    took = ctx.call(Vault.take, g.full, key="gold", amount=2)
    refused = ctx.call(Vault.take, g.empty, key="gold", amount=2)
    if g.mode == "collect":
        outcomes = await ctx.gather(took, refused, return_exceptions=True)
        return [f"{type(o).__name__}:{o}" for o in outcomes]
    if g.mode == "both":
        await ctx.gather(took, refused, fail_fast=True, return_exceptions=True)
    # fail fast: a signal that never comes and an hour's timer would hold the default up
    try:
        await ctx.gather(
            took, refused, ctx.wait_signal(never), ctx.sleep(timedelta(hours=1)), fail_fast=True
        )
    except StepRejected as exc:
        return ["failed fast", exc.reason, str(await took)]
    return ["not failed"]


WORKFLOWS = (*ALL_WORKFLOWS, gatherer)


async def _fill(shop: Any, vault: str, amount: int) -> None:
    await shop.client.update(Vault.put, vault, key="gold", amount=amount)


async def test_fail_fast_raises_at_once_and_abandons_the_timer_and_the_signal_wait(
    make_shop: ShopFactory,
) -> None:
    shop = make_shop(workflows=WORKFLOWS)
    await _fill(shop, "ff-full", 5)
    wid = shop.workflows.start(gatherer, {"full": "ff-full", "empty": "ff-empty", "mode": "fast"})
    status = await shop.workflows.wait(gatherer, wid, timeout=20)
    assert status.status == "completed", status.error
    assert status.result[0] == "failed fast"
    assert status.result[1] == "only 0 gold in the vault, 2 asked"
    assert status.result[2] == "3"  # the other call was not cancelled: it ran, and is kept
    types = [e.event_type for e in shop.workflows.history(gatherer, wid)]
    assert "wf.TimerStarted" in types and "wf.TimerCancelled" in types
    assert "wf.TimerFired" not in types
    assert shop.vault("ff-full") == 3


async def test_return_exceptions_collects_every_outcome(make_shop: ShopFactory) -> None:
    shop = make_shop(workflows=WORKFLOWS)
    await _fill(shop, "rc-full", 5)
    wid = shop.workflows.start(
        gatherer, {"full": "rc-full", "empty": "rc-empty", "mode": "collect"}
    )
    status = await shop.workflows.wait(gatherer, wid, timeout=20)
    assert status.status == "completed", status.error
    ok, failed = status.result
    assert ok == "int:3"
    assert failed.startswith("StepRejected:") and "Vault/rc-empty.take" in failed


async def test_fail_fast_and_return_exceptions_together_is_a_clear_error(
    make_shop: ShopFactory,
) -> None:
    shop = make_shop(workflows=WORKFLOWS)
    await _fill(shop, "both-full", 5)
    wid = shop.workflows.start(
        gatherer, {"full": "both-full", "empty": "both-empty", "mode": "both"}
    )
    status = await shop.workflows.wait(gatherer, wid, timeout=20)
    assert status.status in ("compensated", "failed")
    assert status.error is not None and "choose one" in status.error
