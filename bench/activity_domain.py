"""The bench's activity domain: a no-op activity, run ten at a time in sequence or once.

Worker processes import it (``--domain bench.activity_domain``); the bench section starts
the workflows and times them.
"""

from __future__ import annotations

from pydantic import BaseModel

from examples.shop import Account
from sagas import Domain, Workflow, WorkflowContext, activity


@activity
def noop(n: int) -> int:
    return n


class Steps(BaseModel):
    count: int


sequence = Workflow("BenchSequence", input=Steps, output=int)


@sequence.run
async def run_sequence(ctx: WorkflowContext, s: Steps) -> int:
    total = 0
    for n in range(s.count):
        total += await ctx.execute_activity(noop, n)
    return total


calls = Workflow("BenchCalls", input=Steps, output=int)


@calls.run
async def run_calls(ctx: WorkflowContext, s: Steps) -> int:
    """The same shape with entity calls instead: what the coordinator does without activities."""
    for n in range(s.count):
        await ctx.call(Account.deposit, f"bench-{ctx.workflow_id}", amount=n + 1)
    return sum(range(s.count))


class Deposit(BaseModel):
    account: str


one_call = Workflow("BenchOneCall", input=Deposit, output=str)


@one_call.run
async def run_one_call(ctx: WorkflowContext, d: Deposit) -> str:
    await ctx.call(Account.deposit, d.account, amount=1)
    return "ok"


DOMAIN = Domain((Account,), workflows=[sequence, calls, one_call], activities=[noop])
