"""In-process command throughput: 100 accounts, 10,000 deposits through the in-process client.

One ``Host`` per run: a real store (SQLite file or PostgreSQL schema), the in-memory
mailbox, one worker thread doing group commit (one transaction per polled batch). The
clock runs from the first deposit sent to the last one committed, and every run checks
that each balance is exactly what was sent.

- ``signal``: the client sends all 10,000 deposits fire-and-forget, as fast as it can;
- ``update``: 100 callers (one per account) each await 100 deposits in turn, so about
  100 updates are in flight at any time and every one waits for its reply.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from actors import Host
from bench.options import Options
from bench.stores import store_url
from bench.table import Table
from examples.shop import ENTITIES, Account

ACCOUNTS = 100
COMMANDS = 10_000
AMOUNT = Decimal("1.25")
TARGET_SQLITE = 5_000


@dataclass(frozen=True)
class Run:
    rate: float
    batches: int


async def _one_run(url: str, mode: str) -> Run:
    ids = [f"acct-{i}" for i in range(ACCOUNTS)]
    async with Host(url, ENTITIES) as host:
        client = host.client
        await asyncio.gather(*(client.update(Account.open, i, owner="bench") for i in ids))
        stats = host.worker.stats
        messages, batches = stats.messages, stats.batches
        started = time.perf_counter()
        if mode == "signal":
            done = threading.Event()
            target = messages + COMMANDS
            host.worker.on_batch = lambda _: done.set() if stats.messages >= target else None
            for n in range(COMMANDS):
                client.signal(Account.deposit, ids[n % ACCOUNTS], amount=AMOUNT)
            if not await asyncio.to_thread(done.wait, 120):
                raise TimeoutError(f"only {stats.messages - messages} deposits processed")
        else:

            async def caller(entity_id: str) -> None:
                for _ in range(COMMANDS // ACCOUNTS):
                    await client.update(
                        Account.deposit.options(timeout=60), entity_id, amount=AMOUNT
                    )

            await asyncio.gather(*(caller(i) for i in ids))
        elapsed = time.perf_counter() - started
        expected = AMOUNT * (COMMANDS // ACCOUNTS)
        for entity_id in ids:
            balance = client.state(Account, entity_id).state.balance
            if balance != expected:
                raise AssertionError(f"{entity_id}: balance {balance}, expected {expected}")
        return Run(COMMANDS / elapsed, stats.batches - batches)


def measure(kind: str, mode: str, options: Options) -> list[Run]:
    runs = []
    for _ in range(options.runs):
        with store_url(kind, options.pg) as url:
            runs.append(asyncio.run(_one_run(url, mode)))
    return runs


def run(options: Options) -> Table:
    table = Table(
        f"In-process throughput: {ACCOUNTS} accounts, {COMMANDS:,} deposits, in-memory "
        f"mailbox, one worker (median of {options.runs} runs)",
        ["store", "mode", "commands/s", "min", "max", "batches/run"],
    )
    for kind in options.stores:
        for mode in ("signal", "update"):
            runs = measure(kind, mode, options)
            rates = [r.rate for r in runs]
            median = statistics.median(rates)
            batches = statistics.median(r.batches for r in runs)
            table.add(kind, mode, median, min(rates), max(rates), round(batches))
            if kind == "sqlite" and mode == "signal":
                table.target(
                    median >= TARGET_SQLITE,
                    f"SQLite signal throughput {median:,.0f}/s >= {TARGET_SQLITE:,}/s",
                )
    return table
