"""Two releases of one workflow, ``Drift``, for the non-determinism test with OS processes.

``tests.integration.drift_domains:V1`` is not how a domain is named; the worker CLI takes
a module, so ``drift_v1.py`` and ``drift_v2.py`` each build their domain from here.
Release 2 changes the second step, so executions started under release 1 no longer replay.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel

from actors import ActorKind
from examples.shop import ENTITIES, Account, order_saga
from sagas import Workflow, WorkflowContext, WorkflowKind


class DriftInput(BaseModel):
    account_id: str


def drift(release: str) -> Workflow[DriftInput, str]:
    wf = Workflow("Drift", input=DriftInput, output=str, signals={"go": None})

    @wf.run
    async def run(ctx: WorkflowContext, data: DriftInput) -> str:
        await ctx.call(Account, data.account_id, "deposit", amount=Decimal(1))
        second = "deposit" if release == "v1" else "withdraw"
        await ctx.call(Account, data.account_id, second, amount=Decimal(2))
        await ctx.wait_signal("go")
        return release

    return wf


def kinds(release: str) -> tuple[ActorKind, ...]:
    return (
        WorkflowKind(order_saga, entities=ENTITIES, resend_after=2.0),
        WorkflowKind(drift(release), entities=ENTITIES, resend_after=2.0),
    )
