"""Two releases of one workflow, ``Drift``, for the non-determinism test with OS processes.

The worker CLI takes a module, so ``drift_v1.py`` and ``drift_v2.py`` each build their
domain from here. Release 2 changes the second step, so executions started under release
1 no longer replay.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel

from examples.shop import ACTIVITIES, ENTITIES, Account, order_saga
from sagas import Domain, Workflow, WorkflowContext


class DriftInput(BaseModel):
    account_id: str


def drift(release: str) -> Workflow[DriftInput, str]:
    wf = Workflow("Drift", input=DriftInput, output=str)
    go = wf.signal("go")

    @wf.run
    async def run(ctx: WorkflowContext, data: DriftInput) -> str:
        await ctx.call(Account.deposit, data.account_id, amount=Decimal(1))
        second = Account.deposit if release == "v1" else Account.withdraw
        await ctx.call(second, data.account_id, amount=Decimal(2))
        await ctx.wait_signal(go)
        return release

    return wf


def domain(release: str) -> Domain:
    return Domain(ENTITIES, (order_saga, drift(release)), activities=ACTIVITIES, resend_after=2.0)
