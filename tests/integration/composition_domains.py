"""Child workflows and a patched change, for the composition tests with OS processes.

``Batch`` starts one ``Leg`` child per account and gathers their results; each leg makes
three deposits. ``Evolve`` has two releases: release 2 changes its second step behind
``ctx.patched("bigger-bonus")``, so an execution that took the old step under release 1
keeps replaying it, while new ones take the new. ``Rollover`` continues as new after every
few signals it counts. The worker CLI takes a module, so
``composition_v1.py`` and ``composition_v2.py`` each build their domain from here.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel

from actors import RetryPolicy
from examples.shop import ACTIVITIES, ENTITIES, Account, order_saga
from sagas import Domain, Workflow, WorkflowContext
from tests.sagas_tests.support import Vault


class LegInput(BaseModel):
    account_id: str


leg = Workflow("Leg", input=LegInput, output=str)


@leg.run
async def run_leg(ctx: WorkflowContext, data: LegInput) -> str:
    for _ in range(3):
        await ctx.call(Account.deposit, data.account_id, amount=Decimal(1))
    return data.account_id


class BatchInput(BaseModel):
    accounts: list[str]


batch = Workflow("Batch", input=BatchInput, output=list[str])


@batch.run
async def run_batch(ctx: WorkflowContext, data: BatchInput) -> list[str]:
    legs = [ctx.child(leg, LegInput(account_id=a)) for a in data.accounts]
    done: list[str] = await ctx.gather(*legs)
    return done


class EvolveInput(BaseModel):
    account_id: str


def evolve(release: str) -> Workflow[EvolveInput, str]:
    wf = Workflow("Evolve", input=EvolveInput, output=str)
    go = wf.signal("go")

    @wf.run
    async def run(ctx: WorkflowContext, data: EvolveInput) -> str:
        await ctx.call(Account.deposit, data.account_id, amount=Decimal(1))
        if release == "v2" and ctx.patched("bigger-bonus"):
            await ctx.call(Account.deposit, data.account_id, amount=Decimal(20))
            path = "new path"
        else:
            await ctx.call(Account.deposit, data.account_id, amount=Decimal(2))
            path = "old path"
        await ctx.wait_signal(go)
        await ctx.call(Account.deposit, data.account_id, amount=Decimal(1))
        return path

    return wf


class RolloverInput(BaseModel):
    account_id: str
    per_run: int
    runs_left: int
    counted: int = 0


rollover = Workflow("Rollover", input=RolloverInput, output=int)
tick = rollover.signal("tick", int)


@rollover.run
async def run_rollover(ctx: WorkflowContext, data: RolloverInput) -> int:
    """Counts ``per_run`` signals, deposits 1 (signals pile up meanwhile), continues as new;
    the last run returns the count."""
    counted = data.counted
    if data.runs_left == 0:
        return counted
    for _ in range(data.per_run):
        counted += await ctx.wait_signal(tick)
    await ctx.call(Account.deposit, data.account_id, amount=Decimal(1))
    return await ctx.continue_as_new(
        data.model_copy(update={"counted": counted, "runs_left": data.runs_left - 1})
    )


mixed = Workflow("Mixed", input=BatchInput, output=list[str])


@mixed.run
async def run_mixed(ctx: WorkflowContext, data: BatchInput) -> list[str]:
    """Children (one on an account never opened: it compensates) and a refused withdrawal,
    gathered with every outcome returned."""
    steps = [ctx.child(leg, LegInput(account_id=a)) for a in data.accounts]
    too_much = ctx.call(Account.withdraw, data.accounts[0], amount=Decimal(1000))
    outcomes = await ctx.gather(*steps, too_much, return_exceptions=True)
    return [type(o).__name__ if isinstance(o, BaseException) else str(o) for o in outcomes]


waiter = Workflow("Waiter", input=LegInput, output=str)
never = waiter.signal("never")


@waiter.run
async def run_waiter(ctx: WorkflowContext, data: LegInput) -> str:
    """Deposits 1 (undone by a withdrawal if it ends early), then waits for ever."""
    ctx.add_compensation(Account.withdraw, data.account_id, amount=Decimal(1))
    await ctx.call(Account.deposit, data.account_id, amount=Decimal(1))
    await ctx.wait_signal(never)
    return data.account_id


fanout = Workflow("Fanout", input=BatchInput, output=list[str])


@fanout.run
async def run_fanout(ctx: WorkflowContext, data: BatchInput) -> list[str]:
    children = [ctx.child(waiter, LegInput(account_id=a)) for a in data.accounts]
    done: list[str] = await ctx.gather(*children)
    return done


class MendInput(BaseModel):
    vault: str


mend = Workflow("Mend", input=MendInput)
mend_go = mend.signal("go")


@mend.run
async def run_mend(ctx: WorkflowContext, data: MendInput) -> None:
    """Takes gold (its undo puts it back, two attempts), then fails: a locked vault makes
    the undo run out of attempts."""
    undo = Vault.put.options(retry=RetryPolicy(attempts=2, initial_interval=0.05))
    ctx.add_compensation(undo, data.vault, key="gold", amount=1)
    await ctx.call(Vault.take, data.vault, key="gold", amount=1)
    await ctx.wait_signal(mend_go)
    await ctx.call(Vault.take, data.vault, key="nothing", amount=1)  # refused: compensate


def domain(release: str) -> Domain:
    workflows = (order_saga, batch, leg, evolve(release), rollover, mixed, waiter, fanout, mend)
    return Domain((*ENTITIES, Vault), workflows, activities=ACTIVITIES, resend_after=2.0)
