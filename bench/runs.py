"""Continue-as-new keeps loading flat: the cold load of an execution in its 101st run
against one in its first.

A subscription (``examples.subscription``) bills one month per run, so it continues as
new every month. Two executions are driven on the virtual clock of
:class:`~sagas.testing.WorkflowEnvironment` (timers skip, everything else is the real
runtime and store): one is in its first run, one has continued as new 100 times; both
then sleep toward their next month, at the same point of their run. A cold load is what
a worker does for an execution it does not hold: ``Store.load`` from the run snapshot
and a replay of the current run (``WorkflowKind.load``). The same load without the
snapshot (the whole stream read, earlier runs skipped) shows what the snapshot saves.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import timedelta

from bench.options import Options
from bench.stores import store_url
from bench.table import Table
from eventstore import Store
from examples.subscription import DOMAIN, subscription
from sagas import WorkflowKind
from sagas.testing import WorkflowEnvironment

RUNS = 100
TARGET_RATIO = 1.5


async def _drive(url: str) -> None:
    """``first`` in its first run; ``long`` after RUNS runs (one month each)."""
    async with WorkflowEnvironment(DOMAIN, store=url) as env:
        sub = {"customer": "long", "price": 100, "months_per_run": 1}
        await env.start(subscription, sub, workflow_id="long")
        await env.sleep(timedelta(days=30 * RUNS, hours=1))
        status = env.status(subscription, "long")
        if status.run != RUNS + 1:
            raise AssertionError(f"the subscription is in run {status.run}, not {RUNS + 1}")
        await env.start(subscription, {**sub, "customer": "first"}, workflow_id="first")


def _time_load(store: Store, kind: WorkflowKind, address: str, snapshot: bool) -> tuple[float, int]:
    """Median seconds of a cold load, and how many events it read."""

    def load() -> int:
        stream = store.load(address, snapshot_type=kind.snapshot_type if snapshot else None)
        actor = kind.load(address, stream)
        if actor.engine is None or actor.divergence is not None:
            raise AssertionError(f"{address} did not load: {actor.divergence}")
        return len(stream.events)

    read = load()  # warm-up
    times = []
    for _ in range(50):
        started = time.perf_counter()
        load()
        times.append(time.perf_counter() - started)
    return statistics.median(times), read


def run(options: Options) -> Table:
    table = Table(
        f"Continue-as-new: cold load of a subscription in its first run and after {RUNS} "
        "runs (Store.load + replay of the current run, median of 50)",
        ["store", "execution", "run", "events stored", "events read", "load ms"],
    )
    kind = WorkflowKind(subscription)
    for store_kind in options.stores:
        with store_url(store_kind, options.pg) as url:
            asyncio.run(_drive(url))
            with Store(url, DOMAIN.registry()) as store:
                timed: dict[str, float] = {}
                for wid, snapshot in (("first", True), ("long", True), ("long", False)):
                    address = subscription.address(wid)
                    seconds, read = _time_load(store, kind, address, snapshot)
                    label = wid if snapshot else f"{wid}, without the run snapshot"
                    timed[label] = seconds
                    run_no = 1 if wid == "first" else RUNS + 1
                    stored = store.last_version(address)
                    table.add(store_kind, label, run_no, stored, read, seconds * 1000)
            ratio = timed["long"] / timed["first"]
            table.target(
                ratio <= TARGET_RATIO,
                f"{store_kind}: after {RUNS} runs the load takes {timed['long'] * 1000:.2f} ms "
                f"= {ratio:.2f}x the first run's ({timed['first'] * 1000:.2f} ms); "
                f"target <= {TARGET_RATIO:g}x",
            )
    return table
