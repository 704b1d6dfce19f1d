"""W1 without HTTP: commands through the real broker to worker processes on PostgreSQL.

Per worker count (1, then 2 OS processes running ``entityflow worker``) on the section's
Apache Kafka (one for every run) and a fresh PostgreSQL schema and topic namespace per
run, with 100 accounts:

- ``signal``: the bench process sends 10,000 deposits fire-and-forget (each acknowledged
  by the broker); the clock stops when the last one is committed (outcome rows counted);
- ``update``: 32 concurrent callers await 10,000 deposits through a reply topic; the
  table shows commands/s and the round-trip p50/p99;
- ``update x1``: one caller, one update in flight: the bare round-trip latency.

Every run starts a fresh schema and workers on the shared broker and checks the balances;
figures are medians of ``--runs`` runs.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg import sql

from actors import Client, EntityCatalog
from actors.mailbox.kafka import KafkaMailbox
from actors.mailbox.reply_datagrams import advertised_host
from api.settings import Settings
from bench.broker import broker_name, section_broker
from bench.options import Options
from bench.stores import store_url
from bench.table import Table
from eventstore import EventRegistry, Store
from eventstore.kafka.io import KafkaSettings
from examples.shop import ENTITIES, Account

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = 100
COMMANDS = 10_000
CALLERS = 32
PARTITIONS = 16


@dataclass(frozen=True)
class Run:
    rate: float
    p50_ms: float | None = None
    p99_ms: float | None = None


def _count_outcomes(url: str) -> int:
    base, _, schema = url.partition("?schema=")
    with psycopg.connect(base) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.entityflow_commands").format(sql.Identifier(schema))
        ).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def _workers(n: int, url: str, bootstrap: str, namespace: str) -> Iterator[None]:
    env = {
        **os.environ,
        "ENTITYFLOW_STORE": url,
        "ENTITYFLOW_NAMESPACE": namespace,
        "ENTITYFLOW_PARTITIONS": str(PARTITIONS),
        "ENTITYFLOW_LOG_LEVEL": "WARNING",
    }
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "worker",
                "--domain",
                "examples.shop",
                "--bootstrap-servers",
                bootstrap,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)


def _client(url: str, mailbox: KafkaMailbox) -> tuple[Client, Store]:
    catalog = EntityCatalog(ENTITIES)
    registry = EventRegistry()
    for spec in catalog:
        registry.merge(spec.registry)
    store = Store(url, registry)
    return Client(mailbox, store, catalog, default_timeout=120), store


async def _open(client: Client) -> None:
    await asyncio.gather(
        *(client.update(Account.open, f"acct-{i}", owner="bench") for i in range(ACCOUNTS))
    )


def _signals(client: Client, mailbox: KafkaMailbox, url: str, sent: Counter[str]) -> Run:
    before = _count_outcomes(url)
    started = time.perf_counter()
    futures = [
        mailbox.send(client.prepare(Account.deposit, f"acct-{n % ACCOUNTS}", amount=Decimal(1)))
        for n in range(COMMANDS)
    ]
    for f in futures:
        f.result(timeout=120)
    for n in range(COMMANDS):
        sent[f"acct-{n % ACCOUNTS}"] += 1
    deadline = time.monotonic() + 300
    while _count_outcomes(url) < before + COMMANDS:
        if time.monotonic() > deadline:
            raise TimeoutError("signals were not all processed in 300 s")
        time.sleep(0.02)
    return Run(COMMANDS / (time.perf_counter() - started))


async def _updates(client: Client, callers: int, total: int, sent: Counter[str]) -> Run:
    latencies: list[float] = []
    work = [f"acct-{n % ACCOUNTS}" for n in range(total)]

    async def caller() -> None:
        while work:
            account = work.pop()
            t = time.perf_counter()
            await client.update(Account.deposit.options(timeout=60), account, amount=1)
            latencies.append(time.perf_counter() - t)
            sent[account] += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Run(len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000)


def _one_run(workers: int, options: Options, bootstrap: str, results: dict[str, list[Run]]) -> None:
    """One run of every mode on a fresh schema, namespace and worker processes."""
    with store_url("postgres", options.pg) as url:
        namespace = f"bench{os.getpid()}w{workers}r{len(results['signal'])}"
        mailbox = KafkaMailbox(
            KafkaSettings(bootstrap),
            namespace=namespace,
            partitions=PARTITIONS,
            # replies by datagram too, as entityflow's own processes get them by default
            # (ENTITYFLOW_REPLY_HOST=off compares without)
            reply_host=advertised_host(Settings().reply_host),
        )
        client, store = _client(url, mailbox)
        try:
            with _workers(workers, url, bootstrap, namespace):
                asyncio.run(_open(client))
                sent: Counter[str] = Counter()
                results["signal"].append(_signals(client, mailbox, url, sent))
                results["update"].append(asyncio.run(_updates(client, CALLERS, COMMANDS, sent)))
                results["update x1"].append(asyncio.run(_updates(client, 1, 1_000, sent)))
                for account, count in sent.items():
                    balance = client.state(Account, account).state.balance
                    if balance != Decimal(count):
                        raise AssertionError(f"{account}: balance {balance} != {count} sent")
        finally:
            client.close()
            mailbox.close()
            store.close()


def _configuration(workers: int, options: Options, bootstrap: str) -> dict[str, list[Run]]:
    results: dict[str, list[Run]] = {"signal": [], "update": [], "update x1": []}
    for _ in range(options.runs):
        _one_run(workers, options, bootstrap, results)
    return results


def run(options: Options) -> Table:
    table = Table(
        f"W1 through Kafka (no HTTP): {ACCOUNTS} accounts, {COMMANDS:,} deposits, "
        f"{broker_name(options)}, PostgreSQL, worker processes (median of {options.runs} "
        "runs on one broker, each on a fresh schema)",
        ["workers", "mode", "commands/s", "p50 ms", "p99 ms"],
    )
    signal_rates: dict[int, float] = {}
    with section_broker(options) as bootstrap:
        configurations = {w: _configuration(w, options, bootstrap) for w in (1, 2)}
    for workers, results in configurations.items():
        for mode, runs in results.items():
            rate = statistics.median(r.rate for r in runs)
            p50 = [r.p50_ms for r in runs if r.p50_ms is not None]
            p99 = [r.p99_ms for r in runs if r.p99_ms is not None]
            table.add(
                workers,
                mode,
                rate,
                statistics.median(p50) if p50 else "",
                statistics.median(p99) if p99 else "",
            )
            if mode == "signal":
                signal_rates[workers] = rate
            if mode == "update x1" and workers == 1:
                p50_single = statistics.median(p50)
                table.target(
                    p50_single <= 10, f"update round trip p50 {p50_single:.1f} ms <= 10 ms"
                )
    table.target(
        signal_rates[1] >= 3_000, f"signals with one worker {signal_rates[1]:,.0f}/s >= 3,000/s"
    )
    table.target(
        signal_rates[2] >= 0.9 * signal_rates[1],
        f"two workers {signal_rates[2]:,.0f}/s no worse than one {signal_rates[1]:,.0f}/s "
        "(within 10% noise)",
    )
    return table
