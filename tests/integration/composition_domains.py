"""Child workflows and a patched change, for the composition tests with OS processes.

``Batch`` starts one ``Leg`` child per account and gathers their results; each leg makes
three deposits. ``Evolve`` has two releases: release 2 changes its second step behind
``ctx.patched("bigger-bonus")``, so an execution that took the old step under release 1
keeps replaying it, while new ones take the new. The worker CLI takes a module, so
``composition_v1.py`` and ``composition_v2.py`` each build their domain from here.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel

from examples.shop import ACTIVITIES, ENTITIES, Account, order_saga
from sagas import Domain, Workflow, WorkflowContext


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


def domain(release: str) -> Domain:
    return Domain(
        ENTITIES,
        (order_saga, batch, leg, evolve(release)),
        activities=ACTIVITIES,
        resend_after=2.0,
    )
