"""Compensation repair: a saga that failed because a compensation ran out of attempts is
retried or skipped by a person, goes on undoing the older compensations, and ends with
an honest status; a repair that does not fit is refused and leaves no trace."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from sagas import Workflow, WorkflowContext, WorkflowRefusedError
from sagas.replayer import replay
from sagas.timeline import build_timeline
from tests.sagas_tests.conftest import ALL_WORKFLOWS, Shop, ShopFactory
from tests.sagas_tests.support import FAST_RETRY, Vault

pytestmark = pytest.mark.anyio


class MendInput(BaseModel):
    first: str
    second: str


mend = Workflow("Mend", input=MendInput)
go = mend.signal("go")


@mend.run
async def run_mend(ctx: WorkflowContext, m: MendInput) -> None:
    policy = FAST_RETRY.model_copy(update={"attempts": 2})
    ctx.add_compensation(Vault.put.options(retry=policy), m.first, key="gold", amount=1)
    await ctx.call(Vault.take, m.first, key="gold", amount=1)
    ctx.add_compensation(Vault.put.options(retry=policy), m.second, key="gold", amount=2)
    await ctx.call(Vault.take, m.second, key="gold", amount=2)
    await ctx.wait_signal(go)
    await ctx.call(Vault.take, m.second, key="nothing", amount=1)  # refused: compensate


WORKFLOWS = (*ALL_WORKFLOWS, mend)


async def _failed(shop: Shop, name: str) -> tuple[str, int, int]:
    """A Mend whose newer compensation (#1, on a locked vault) ran out of attempts."""
    first, second = f"{name}-a", f"{name}-b"
    for vault in (first, second):
        await shop.client.update(Vault.put, vault, key="gold", amount=10)
    wid = shop.workflows.start(mend, {"first": first, "second": second}, workflow_id=name)
    for _ in range(1000):
        if shop.vault(second) == 8:
            break
        await asyncio.sleep(0.01)
    # the second vault locks before the saga compensates: its put is refused every time
    await shop.client.update(Vault.lock, second)
    await shop.workflows.signal(go, wid, None)
    status = await shop.workflows.wait(mend, wid, timeout=20)
    assert status.status == "failed", status
    assert status.failed_compensation == f"Vault/{second}.put"
    assert [c.status for c in status.compensations] == ["registered", "failed"]
    older, newer = (c.index for c in status.compensations)
    return wid, older, newer


@pytest.fixture
def shop(make_shop: ShopFactory) -> Shop:
    return make_shop(workflows=WORKFLOWS)


async def test_a_retried_compensation_finishes_and_the_older_ones_run(shop: Shop) -> None:
    wid, _, failed = await _failed(shop, "mend-retry")
    await shop.client.update(Vault.unlock, "mend-retry-b")  # the cause, fixed
    await shop.workflows.repair(mend, wid, failed, "retry")
    status = await shop.workflows.wait(mend, wid, timeout=20)
    assert status.status == "compensated"
    assert status.error is not None and "Vault/mend-retry-b.take was rejected" in status.error
    assert status.failed_compensation is None and status.repairs == 1
    assert [c.status for c in status.compensations] == ["done", "done"]
    assert (shop.vault("mend-retry-a"), shop.vault("mend-retry-b")) == (10, 10)
    history = shop.workflows.history(mend, wid)
    repaired = [e.event for e in history if e.event_type == "wf.CompensationRepaired"]
    assert [(r.index, r.action) for r in repaired] == [(failed, "retry")]  # type: ignore[attr-defined]
    # the repaired history replays with the code, and reads the same from the store
    engine = replay(mend, mend.address(wid), history)
    assert engine.record.status == "compensated"
    timeline = build_timeline(history)
    (entry,) = [e for e in timeline.entries if e.id.startswith("repair-")]
    assert (entry.status, entry.name) == (
        "retried",
        f"compensation #{failed} retried by an operator",
    )
    assert timeline.status == "compensated" and timeline.ended_at is not None
    # retrying the compensation that has now succeeded is refused, and records nothing
    with pytest.raises(WorkflowRefusedError, match="is compensated: only a failed execution"):
        await shop.workflows.repair(mend, wid, failed, "retry")
    assert len(shop.workflows.history(mend, wid)) == len(history)


async def test_a_skipped_compensation_is_recorded_with_its_reason(shop: Shop) -> None:
    wid, _, failed = await _failed(shop, "mend-skip")
    await shop.workflows.repair(mend, wid, failed, "skip", "refunded by hand, ticket 42")
    status = await shop.workflows.wait(mend, wid, timeout=20)
    assert status.status == "compensated"
    comps = status.compensations
    assert [c.status for c in comps] == ["done", "skipped"]
    assert comps[1].error == "skipped by an operator: refunded by hand, ticket 42"
    assert (shop.vault("mend-skip-a"), shop.vault("mend-skip-b")) == (10, 8)


async def test_a_repair_that_does_not_fit_is_refused_and_leaves_no_trace(shop: Shop) -> None:
    wid, older, failed = await _failed(shop, "mend-no")
    before = len(shop.workflows.history(mend, wid))
    with pytest.raises(WorkflowRefusedError, match=f"did not fail; the failed one is #{failed}"):
        await shop.workflows.repair(mend, wid, older, "retry")
    with pytest.raises(WorkflowRefusedError, match="no compensation #999"):
        await shop.workflows.repair(mend, wid, 999, "retry")
    with pytest.raises(WorkflowRefusedError, match="a skip needs a reason"):
        await shop.workflows.repair(mend, wid, failed, "skip", "  ")
    assert len(shop.workflows.history(mend, wid)) == before
    # once compensated there is nothing left to repair
    await shop.workflows.repair(mend, wid, failed, "skip", "undone elsewhere")
    await shop.workflows.wait(mend, wid, timeout=20)
    with pytest.raises(WorkflowRefusedError, match="is compensated: only a failed execution"):
        await shop.workflows.repair(mend, wid, failed, "retry")


async def test_a_failed_execution_is_repaired_after_a_restart(
    make_shop: ShopFactory,
) -> None:
    first = make_shop(workflows=WORKFLOWS)
    wid, _, failed = await _failed(first, "mend-restart")
    first.stop()
    second = make_shop(workflows=WORKFLOWS)  # a fresh worker: the execution is rebuilt
    await second.client.update(Vault.unlock, "mend-restart-b")
    await second.workflows.repair(mend, wid, failed, "retry")
    status = await second.workflows.wait(mend, wid, timeout=20)
    assert status.status == "compensated"
    assert (second.vault("mend-restart-a"), second.vault("mend-restart-b")) == (10, 10)
