"""Activities through Apache Kafka: throughput and the latency one activity adds.

One ``entityflow worker`` process (PostgreSQL, the section's broker, a fresh schema and
namespace per run) runs ``bench.activity_domain``:

- ``throughput``: 32 workflows at once, each running 10 no-op activities in sequence;
  activities/s = 320 / the time until the last workflow completed, over ``ROUNDS`` such
  rounds one after the other; beside it the same shape with 10 entity calls
  (``Account.deposit``) instead, what the coordinator does without activities. Both
  are timed only after an untimed round of each has run: the worker process's start
  (imports, joining its two consumer groups, first reads of its partitions) is not
  throughput;
- ``one activity``: one workflow at a time running one no-op activity, start to
  completed (polled every 2 ms), beside ``one entity call``: the same workflow shape
  calling ``Account.deposit`` instead. The difference is what an activity's extra hop
  (its task topic and its worker thread) costs.

Figures are medians of ``--runs`` runs, after one discarded warm-up run.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from actors.mailbox.kafka import KafkaMailbox
from bench.activity_domain import DOMAIN, calls, one_call, sequence
from bench.broker import broker_name, section_broker
from bench.options import Options
from bench.stores import store_url
from bench.table import Table
from eventstore.kafka.io import KafkaSettings
from examples.shop import Account
from sagas import Host

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = 32
STEPS = 10
SINGLES = 50
ROUNDS = 3
PARTITIONS = 16


@contextmanager
def _worker(url: str, bootstrap: str, namespace: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "ENTITYFLOW_STORE": url,
        "ENTITYFLOW_NAMESPACE": namespace,
        "ENTITYFLOW_PARTITIONS": str(PARTITIONS),
        "ENTITYFLOW_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "api.cli", "worker", "--domain", "bench.activity_domain"]
    proc = subprocess.Popen(
        [*command, "--bootstrap-servers", bootstrap],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(60)


async def _throughput(node: Host, run: str, activities: bool = True, rounds: int = 1) -> float:
    """Steps/s of ``rounds`` rounds of WORKFLOWS workflows x STEPS steps, one after the other."""
    wf = sequence if activities else calls
    took = 0.0
    for r in range(rounds):
        ids = [f"{'seq' if activities else 'calls'}-{run}-{r}-{n}" for n in range(WORKFLOWS)]
        if not activities:
            for wid in ids:
                await node.client.update(Account.open, f"bench-{wid}", owner="bench")
        started = time.perf_counter()
        for wid in ids:
            node.workflows.start(wf, {"count": STEPS}, workflow_id=wid)
        for wid in ids:
            status = await node.workflows.wait(wf, wid, timeout=300, poll=0.01)
            if status.result != sum(range(STEPS)):
                raise AssertionError(f"{wid}: {status.status} {status.result}")
        took += time.perf_counter() - started
    return rounds * WORKFLOWS * STEPS / took


async def _latency(node: Host, run: int, activity: bool) -> float:
    """Median ms from start to completed of one workflow at a time."""
    took: list[float] = []
    for n in range(SINGLES):
        t = time.perf_counter()
        if activity:
            wid = node.workflows.start(sequence, {"count": 1}, workflow_id=f"one-{run}-{n}")
            await node.workflows.wait(sequence, wid, timeout=60, poll=0.002)
        else:
            wid = node.workflows.start(one_call, {"account": "bench"}, workflow_id=f"c-{run}-{n}")
            await node.workflows.wait(one_call, wid, timeout=60, poll=0.002)
        took.append((time.perf_counter() - t) * 1000)
    return statistics.median(took[5:])  # the first few warm the worker's caches


def _one_run(options: Options, bootstrap: str, run: int) -> tuple[float, float, float, float]:
    with store_url("postgres", options.pg) as url:
        namespace = f"benchact{os.getpid()}r{run}"
        mailbox = KafkaMailbox(KafkaSettings(bootstrap), namespace=namespace, partitions=PARTITIONS)
        node = DOMAIN.host(url, mailbox=mailbox, run_worker=False, run_activities=False)
        try:
            with _worker(url, bootstrap, namespace):
                asyncio.run(node.client.update(Account.open, "bench", owner="bench"))
                asyncio.run(_throughput(node, f"{run}warm"))
                asyncio.run(_throughput(node, f"{run}warm", activities=False))
                rate = asyncio.run(_throughput(node, str(run), rounds=ROUNDS))
                call_rate = asyncio.run(
                    _throughput(node, str(run), activities=False, rounds=ROUNDS)
                )
                one = asyncio.run(_latency(node, run, activity=True))
                call = asyncio.run(_latency(node, run, activity=False))
                return rate, call_rate, one, call
        finally:
            node.stop()
            mailbox.close()


def run(options: Options) -> Table:
    table = Table(
        f"Activities through Kafka: {WORKFLOWS} workflows x {STEPS} no-op activities in "
        f"sequence, and one at a time; {broker_name(options)}, PostgreSQL, one worker "
        f"process (median of {options.runs} runs)",
        ["measure", "value"],
    )
    with section_broker(options) as bootstrap:
        # One discarded warm-up run: a fresh JVM broker pays its JIT in the first seconds.
        runs = [_one_run(options, bootstrap, n) for n in range(options.runs + 1)][1:]
    rate = statistics.median(r[0] for r in runs)
    call_rate = statistics.median(r[1] for r in runs)
    one = statistics.median(r[2] for r in runs)
    call = statistics.median(r[3] for r in runs)
    table.add(f"activities/s (32 workflows x 10 in sequence, {ROUNDS} rounds)", rate)
    table.add(
        f"entity calls/s, the same shape (32 workflows x 10 deposits, {ROUNDS} rounds)", call_rate
    )
    table.add("workflow with one activity, start to completed, p50 ms", one)
    table.add("workflow with one entity call, start to completed, p50 ms", call)
    table.add("added by the activity's hop, ms", one - call)
    table.target(rate >= 500, f"activities {rate:,.0f}/s >= 500/s")
    return table
