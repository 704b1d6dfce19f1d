"""Determinism: ctx.now/random/uuid come from the history, and a replay that diverges from
the code parks the execution (named step, expected and actual), touching nothing else."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from examples.shop import order_saga
from sagas import NonDeterminismError, Workflow, WorkflowContext, WorkflowParkedError, replay
from tests.sagas_tests.conftest import ShopFactory
from tests.sagas_tests.support import LossyMailbox, Vault, clock, tick

pytestmark = pytest.mark.anyio


class DriftInput(BaseModel):
    pass


def drift(version: str) -> Workflow[DriftInput, str]:
    """The same workflow type in three releases; only v1 and v1-again agree."""
    wf: Workflow[DriftInput, str] = Workflow("Drift", input=DriftInput, output=str)
    go = wf.signal("go")

    @wf.run
    async def run(ctx: WorkflowContext, _: DriftInput) -> str:
        await ctx.call(Vault.take, "a", key="gold", amount=1)
        if version == "v3":
            return "v3 stops early"
        second = "a" if version == "v1" else "b"
        await ctx.call(Vault.take, second, key="gold", amount=2)
        await ctx.wait_signal(go)
        return version

    return wf


async def history_count(shop: Any, wf: Workflow[Any, Any], wid: str, event: str) -> int:
    try:
        return sum(1 for e in shop.workflows.history(wf, wid) if e.event_type == event)
    except LookupError:
        return 0


async def until(shop: Any, wf: Workflow[Any, Any], wid: str, event: str, count: int) -> None:
    for _ in range(1000):
        if await history_count(shop, wf, wid, event) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{wid} never recorded {count} {event}")


async def test_now_random_and_uuid_replay_identically(make_shop: ShopFactory) -> None:
    mailbox = LossyMailbox()
    first = make_shop(mailbox=mailbox)
    first.workflows.start(clock, {"vault": "cv"}, workflow_id="c-1")
    first.workflows.start(clock, {"vault": "cv"}, workflow_id="c-2")
    await until(first, clock, "c-1", "wf.CallCompleted", 1)
    await until(first, clock, "c-2", "wf.CallCompleted", 1)
    before = first.workflows.query(clock, "c-1", "values")
    assert first.workflows.query(clock, "c-1", "values") == before  # every replay agrees
    history = first.workflows.history(clock, "c-1")
    started, replied = history[0], next(e for e in history if e.event_type == "wf.CallCompleted")
    assert datetime.fromisoformat(before["first"]["now"]) == started.event.at  # type: ignore[attr-defined]
    assert datetime.fromisoformat(before["second"]["now"]) == replied.event.at  # type: ignore[attr-defined]
    assert before["first"]["random"] != before["second"]["random"]
    other = first.workflows.query(clock, "c-2", "values")
    assert other["first"]["uuid"] != before["first"]["uuid"]  # seeded per execution
    # a new host rebuilds the execution by replay; the values it carries on with are the same
    first.stop()
    second = make_shop(mailbox=mailbox)
    await second.workflows.signal(tick, "c-1", None)
    status = await second.workflows.wait(clock, "c-1")
    assert status.status == "completed"
    assert (status.result["first"], status.result["second"]) == (before["first"], before["second"])
    assert status.result["third"]["now"] > before["second"]["now"]
    assert second.kinds["Clock"].stats.replays >= 1
    # replaying the stored history directly gives the same memo again
    engine = replay(clock, "workflow:Clock/c-1", second.workflows.history(clock, "c-1"))
    assert engine.memo == status.result
    assert engine.final


async def test_diverging_replay_parks_the_execution_only(make_shop: ShopFactory) -> None:
    mailbox = LossyMailbox()
    v1, v2 = drift("v1"), drift("v2")
    old = make_shop(mailbox=mailbox, workflows=[v1, order_saga])
    await old.client.update(Vault.put, "a", key="gold", amount=10)
    await old.client.update(Vault.put, "b", key="gold", amount=10)
    old.workflows.start(v1, {}, workflow_id="d-1")
    await until(old, v1, "d-1", "wf.CallCompleted", 2)
    recorded = [e.event for e in old.workflows.history(v1, "d-1")]
    old.stop()

    new = make_shop(mailbox=mailbox, workflows=[v2, order_saga])
    status = await new.workflows.wait(v2, "d-1", until={"parked"})
    assert status.parked is not None
    assert status.parked.step == "step 2"
    assert status.parked.expected == "call #2 Vault/a.take(key='gold', amount=2)"
    assert status.parked.actual == "call #2 Vault/b.take(key='gold', amount=2)"
    assert "non-deterministic workflow code" in status.parked.error
    row = new.workflows.execution(v2, "d-1")
    assert row is not None and row.status == "parked"
    assert "step 2" in row.summary["parked"]
    # the history is untouched but for the note that it is parked
    after = [e.event for e in new.workflows.history(v2, "d-1")]
    assert after[:-1] == recorded
    assert after[-1].event_type == "wf.Parked"
    # a parked execution takes no signals, and sends nothing
    with pytest.raises(WorkflowParkedError, match="is parked"):
        await new.workflows.signal(v2.signal_named("go"), "d-1", None)
    assert new.vault("b") == 10

    # other executions keep running, of the same type and of others
    new.workflows.start(v2, {}, workflow_id="d-2")
    await until(new, v2, "d-2", "wf.CallCompleted", 2)
    await new.workflows.signal(v2.signal_named("go"), "d-2", None)
    assert (await new.workflows.wait(v2, "d-2")).result == "v2"
    await new.open_account("acct-1", "50.00")
    await new.restock("apple", 5)
    await new.fill_cart("cart-1", "apple", 1, "5.00")
    new.workflows.start(
        order_saga,
        {
            "account_id": "acct-1",
            "cart_id": "cart-1",
            "lines": [{"sku": "apple", "quantity": 1}],
            "amount": "5.00",
        },
        workflow_id="o-1",
    )
    assert (await new.workflows.wait(order_saga, "o-1")).status == "completed"
    assert new.workflows.status(v2, "d-1").status == "parked"
    new.stop()

    # deploying code that agrees with the history resumes the parked execution
    fixed = make_shop(mailbox=mailbox, workflows=[drift("v1"), order_saga])
    await fixed.workflows.wait(v1, "d-1", until={"running"})
    await fixed.workflows.signal(v1.signal_named("go"), "d-1", None)
    status = await fixed.workflows.wait(v1, "d-1")
    assert (status.status, status.result, status.parked) == ("completed", "v1", None)
    kinds = [e.event_type for e in fixed.workflows.history(v1, "d-1")]
    assert kinds.count("wf.Parked") == 1 and kinds.count("wf.Resumed") == 1


async def test_replay_names_the_step_where_code_and_history_part(
    make_shop: ShopFactory,
) -> None:
    shop = make_shop(workflows=[drift("v1")])
    await shop.client.update(Vault.put, "a", key="gold", amount=10)
    v1 = shop.workflows.definition("Drift")
    shop.workflows.start(v1, {}, workflow_id="d-9")
    await until(shop, v1, "d-9", "wf.CallCompleted", 2)
    history = shop.workflows.history(v1, "d-9")
    assert replay(drift("v1"), "workflow:Drift/d-9", history).phase == "running"
    with pytest.raises(NonDeterminismError) as diverged:
        replay(drift("v3"), "workflow:Drift/d-9", history)
    err = diverged.value
    assert err.step == "step 2"
    assert err.expected == "call #2 Vault/a.take(key='gold', amount=2)"
    assert err.actual == "completion"
    assert err.position == 4
    assert str(err).startswith(
        "workflow:Drift/d-9: non-deterministic workflow code: replay diverged at history "
        "event #4, step 2"
    )


class StricterInput(BaseModel):
    extra: int


async def test_history_the_code_cannot_read_parks_too(make_shop: ShopFactory) -> None:
    mailbox = LossyMailbox()
    old = make_shop(mailbox=mailbox, workflows=[drift("v1")])
    await old.client.update(Vault.put, "a", key="gold", amount=10)
    v1 = old.workflows.definition("Drift")
    old.workflows.start(v1, {}, workflow_id="d-5")
    await until(old, v1, "d-5", "wf.CallCompleted", 2)
    old.stop()
    stricter = Workflow("Drift", input=StricterInput)
    go = stricter.signal("go")

    @stricter.run
    async def run(ctx: WorkflowContext, data: StricterInput) -> None:
        await ctx.wait_signal(go)

    new = make_shop(mailbox=mailbox, workflows=[stricter])
    status = await new.workflows.wait(stricter, "d-5", until={"parked"})
    assert status.parked is not None
    assert status.parked.error.startswith(
        "workflow:Drift/d-5: replaying history event #1 (wf.Started) failed: invalid input "
        "for workflow Drift: extra: Field required"
    )
    assert status.parked.step is None
