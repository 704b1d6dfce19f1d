"""A domain for the metrics tests: the shop's accounts, a counter that can crash, and a
transfer saga whose deposit is retried (refusals included) before it compensates."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel

from examples.shop import Account
from sagas import Domain, RetryPolicy, Workflow, WorkflowContext
from tests.actors_tests.support import Counter

RETRIED = RetryPolicy(attempts=3, initial_interval=0.05, max_interval=0.05, retry_rejected=True)
"""Three attempts at the deposit: two retries when the target refuses every time."""


class TransferInput(BaseModel):
    source: str
    target: str
    amount: Decimal


transfer = Workflow("Transfer", input=TransferInput, output=str)


@transfer.run
async def run_transfer(ctx: WorkflowContext, t: TransferInput) -> str:
    with ctx.compensation(Account.deposit, t.source, amount=t.amount):
        await ctx.call(Account.withdraw, t.source, amount=t.amount)
    await ctx.call(Account.deposit.options(retry=RETRIED), t.target, amount=t.amount)
    return "done"


DOMAIN = Domain((Account, Counter), (transfer,))

__all__ = ["DOMAIN", "RETRIED", "TransferInput", "transfer"]
