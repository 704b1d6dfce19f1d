"""Compensations: retried per their policy, LIFO, ``failed`` naming the one that could not
finish; failures of the code itself; gather; a refusal the workflow catches."""

from __future__ import annotations

import asyncio

import pytest

from sagas import ExecutionStatus
from tests.sagas_tests.conftest import Shop
from tests.sagas_tests.support import Vault, catcher, fan, go, undo

pytestmark = pytest.mark.anyio


async def fill(shop: Shop, vault: str, amount: int = 10) -> None:
    await shop.client.update(Vault.put, vault, key="gold", amount=amount)


async def wait_stage(shop: Shop, workflow_id: str, stage: str) -> None:
    for _ in range(500):
        row = shop.workflows.execution(undo, workflow_id)
        if row is not None and row.status == "running":
            history = shop.workflows.history(undo, workflow_id)
            if any(e.event_type == "wf.CallCompleted" for e in history):
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{workflow_id} never reached {stage}")


def attempts_of(status: ExecutionStatus, command: str) -> int:
    return max(s.attempts for s in status.steps if s.command == command)


async def test_compensation_is_retried_until_it_succeeds(shop: Shop) -> None:
    await fill(shop, "v1")
    wid = shop.workflows.start(undo, {"vault": "v1", "attempts": 50}, workflow_id="u-1")
    await wait_stage(shop, wid, "waiting")
    assert shop.vault("v1") == 7
    await shop.client.update(Vault.lock, "v1")
    await shop.workflows.signal(go, wid, None)
    # the refund is refused while the vault is locked, and tried again with backoff
    for _ in range(500):
        status = shop.workflows.status(undo, wid)
        if any(s.command == "put" and s.attempts >= 3 for s in status.steps):
            break
        await asyncio.sleep(0.01)
    assert status.status == "compensating"
    assert status.compensations_pending == ["#1 Vault/v1.put"]
    await shop.client.update(Vault.unlock, "v1")
    status = await shop.workflows.wait(undo, wid)
    assert status.status == "compensated"
    assert attempts_of(status, "put") >= 3
    assert shop.vault("v1") == 10
    refusals = [
        e.event
        for e in shop.workflows.history(undo, wid)
        if e.event_type == "wf.CallCompleted" and e.event.status == "rejected"  # type: ignore[attr-defined]
    ]
    assert len(refusals) == attempts_of(status, "put") - 1 + 1  # put refusals + the failing take
    # retries used new command ids, each recorded before it was sent
    put_ids = [
        e.event.command_id  # type: ignore[attr-defined]
        for e in shop.workflows.history(undo, wid)
        if e.event_type == "wf.CallScheduled" and e.event.command == "put"  # type: ignore[attr-defined]
    ]
    assert put_ids[0] == "workflow:Undo/u-1#3"
    assert put_ids[1:] == [f"workflow:Undo/u-1#3.{n}" for n in range(2, len(put_ids) + 1)]


async def test_compensation_out_of_budget_fails_naming_it(shop: Shop) -> None:
    await fill(shop, "v2")
    wid = shop.workflows.start(undo, {"vault": "v2", "attempts": 3}, workflow_id="u-2")
    await wait_stage(shop, wid, "waiting")
    await shop.client.update(Vault.lock, "v2")
    await shop.workflows.signal(go, wid, None)
    status = await shop.workflows.wait(undo, wid)
    assert status.status == "failed"
    assert status.failed_compensation == "Vault/v2.put"
    assert status.error is not None
    assert status.error.startswith(
        "compensation #1 Vault/v2.put could not finish after 3 attempt(s): rejected: "
        "the vault is locked"
    )
    assert "the saga failed with: step 2 Vault/v2.take was rejected" in status.error
    assert status.compensations_pending == ["#1 Vault/v2.put"]
    assert [c.status for c in status.compensations] == ["failed"]
    assert attempts_of(status, "put") == 3
    row = shop.workflows.execution(undo, wid)
    assert row is not None
    assert (row.status, row.summary["failed_compensation"]) == ("failed", "Vault/v2.put")
    assert shop.vault("v2") == 7  # nothing silently "undone"


async def test_compensations_run_newest_first(shop: Shop) -> None:
    for v in ("f1", "f2", "f3"):
        await fill(shop, v)
    wid = shop.workflows.start(fan, {"vaults": ["f1", "f2", "f3"], "fail_with": "error"})
    status = await shop.workflows.wait(fan, wid)
    assert status.status == "compensated"
    assert status.error == "ValueError: the code gave up"
    undone = [s.address for s in status.steps if s.compensation is not None]
    assert undone == ["Vault/f3", "Vault/f2", "Vault/f1"]
    assert [shop.vault(v) for v in ("f1", "f2", "f3")] == [10, 10, 10]


async def test_gather_returns_results_in_order(shop: Shop) -> None:
    await fill(shop, "g1", 5)
    await fill(shop, "g2", 8)
    wid = shop.workflows.start(fan, {"vaults": ["g1", "g2"], "amount": 2})
    status = await shop.workflows.wait(fan, wid)
    assert (status.status, status.result) == ("completed", [3, 6])


async def test_gather_waits_for_every_call_before_failing(shop: Shop) -> None:
    await fill(shop, "h1", 5)
    # h2 is empty: its take is refused, h1's succeeds; only h1's compensation runs
    wid = shop.workflows.start(fan, {"vaults": ["h1", "h2"], "amount": 2})
    status = await shop.workflows.wait(fan, wid)
    assert status.status == "compensated"
    assert status.error is not None and "Vault/h2.take was rejected" in status.error
    # add_compensation is unconditional: both puts run (h2 gets 2 it never lost)
    assert [s.address for s in status.steps if s.compensation is not None] == [
        "Vault/h2",
        "Vault/h1",
    ]
    assert (shop.vault("h1"), shop.vault("h2")) == (5, 2)


async def test_crashing_handler_fails_the_step(shop: Shop) -> None:
    await fill(shop, "c1")
    wid = shop.workflows.start(fan, {"vaults": ["c1"], "fail_with": "crash"})
    status = await shop.workflows.wait(fan, wid)
    assert status.status == "compensated"
    assert status.error is not None
    assert "Vault/c1.explode was dead_lettered" in status.error
    assert "RuntimeError: the vault exploded" in status.error
    assert shop.vault("c1") == 10


async def test_forward_step_retries_per_its_policy(shop: Shop) -> None:
    await fill(shop, "r1")
    wid = shop.workflows.start(fan, {"vaults": ["r1"], "fail_with": "retry"})
    status = await shop.workflows.wait(fan, wid)
    assert status.status == "compensated"
    assert status.error is not None and "after 4 attempts" in status.error
    assert attempts_of(status, "take") == 4
    assert shop.vault("r1") == 10


async def test_a_refusal_is_an_answer_not_retried_unless_the_policy_says_so(shop: Shop) -> None:
    await fill(shop, "r2")
    wid = shop.workflows.start(fan, {"vaults": ["r2"], "fail_with": "refused"})
    status = await shop.workflows.wait(fan, wid)
    assert status.status == "compensated"
    assert attempts_of(status, "take") == 1  # the same policy as above, without retry_rejected
    assert shop.vault("r2") == 10


async def test_awaiting_asyncio_in_workflow_code_fails_clearly(shop: Shop) -> None:
    await fill(shop, "a1")
    wid = shop.workflows.start(fan, {"vaults": ["a1"], "fail_with": "asyncio"})
    status = await shop.workflows.wait(fan, wid)
    assert status.status == "compensated"
    assert status.error is not None
    assert "only workflow steps (ctx.call, ctx.wait_signal, ctx.sleep" in status.error
    assert shop.vault("a1") == 10


async def test_workflow_can_catch_a_refusal(shop: Shop) -> None:
    wid = shop.workflows.start(catcher, {"vault": "empty"})
    status = await shop.workflows.wait(catcher, wid)
    assert status.status == "completed"
    assert status.result == "caught: only 0 gold in the vault, 1000000 asked"
