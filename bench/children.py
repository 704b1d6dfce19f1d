"""Fan-out to child workflows: one parent starts 1,000 children of 10 entity steps each.

The scaling rule of issue 15 is many small executions, not one huge one: a parent
gathers its children's results while each child keeps a short history of its own. One
in-process node per run (a real store, the in-memory mailbox, one worker thread): the
clock runs from the parent's start to its completion, and every run checks that each
child's account got exactly its ten deposits. The figure is child steps per second and
the parent's wall time; the parent's history grows by three events per child (the start
sent, its answer, the child's result) while each child's stays at about 25.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from decimal import Decimal

from pydantic import BaseModel

from bench.options import Options
from bench.stores import store_url
from bench.table import Table
from examples.shop import ENTITIES, Account
from sagas import Domain, Workflow, WorkflowContext

CHILDREN = 1_000
STEPS = 10


class LegInput(BaseModel):
    account_id: str


class FanInput(BaseModel):
    children: int


leg = Workflow("BenchLeg", input=LegInput, output=int)
fan = Workflow("BenchFan", input=FanInput, output=int)


@leg.run
async def run_leg(ctx: WorkflowContext, data: LegInput) -> int:
    for _ in range(STEPS):
        await ctx.call(Account.deposit, data.account_id, amount=Decimal(1))
    return STEPS


@fan.run
async def run_fan(ctx: WorkflowContext, data: FanInput) -> int:
    legs = [ctx.child(leg, LegInput(account_id=f"acct-{i}")) for i in range(data.children)]
    done: list[int] = await ctx.gather(*legs)
    return sum(done)


DOMAIN = Domain(ENTITIES, (fan, leg))


async def _one_run(url: str, children: int) -> tuple[float, int]:
    """(seconds from the parent's start to its completion, the parent's history length)."""
    async with DOMAIN.host(url) as host:
        await asyncio.gather(
            *(host.client.update(Account.open, f"acct-{i}", owner="b") for i in range(children))
        )
        started = time.perf_counter()
        wid = host.workflows.start(fan, {"children": children})
        status = await host.workflows.wait(fan, wid, timeout=1800)
        elapsed = time.perf_counter() - started
        if (status.status, status.result) != ("completed", children * STEPS):
            raise AssertionError(f"the parent ended {status.status}: {status.error}")
        for i in range(children):
            balance = host.client.state(Account, f"acct-{i}").state.balance
            if balance != STEPS:
                raise AssertionError(f"acct-{i}: {balance} deposits, expected {STEPS}")
        return elapsed, len(host.workflows.history(fan, wid, limit=1_000_000))


def run(options: Options) -> Table:
    table = Table(
        f"Fan-out: one parent, {CHILDREN:,} children of {STEPS} entity steps each, in-process "
        f"(median of {options.runs})",
        ["store", "parent done in (s)", "child steps/s", "children/s", "parent history"],
    )
    for kind in options.stores:
        runs = []
        for _ in range(options.runs):
            with store_url(kind, options.pg) as url:
                runs.append(asyncio.run(_one_run(url, CHILDREN)))
        seconds = statistics.median(r[0] for r in runs)
        table.add(kind, seconds, CHILDREN * STEPS / seconds, CHILDREN / seconds, runs[0][1])
    return table
