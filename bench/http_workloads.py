"""W1 and W2 over HTTP: the API process in front of a worker process, broker and store.

One Apache Kafka for the section and one stack per store kind (``--stores``):
``entityflow worker`` and ``entityflow serve`` as OS processes; every run goes to the same
stack, one after the other, as a user's load would. Each run opens 100 accounts of its
own; then, from 32 keep-alive connections at once:

- ``W1 update``: 10,000 ``POST /entities/Account/{id}/updates/deposit`` (each waits for
  the result): requests/s and latency p50/p99;
- ``W1 signal``: 10,000 ``POST .../signals/deposit`` (202 once the broker has them);
  ``applied`` is 10,000 over the time until every one of them shows in the balances;
- ``W2 query``: 10,000 ``GET /entities/Account/{id}/queries/balance``.

Every run checks that all responses were 200/202 and that every balance is exactly what
was deposited. Targets (issue 11): updates >= 1,500/s with p99 <= 50 ms; (issue 4)
queries >= 2,000/s.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx

from bench.broker import broker_name, section_broker
from bench.http_stack import LoadResult, Stack, load, request, running_stack, spread
from bench.options import Options
from bench.stores import store_url
from bench.table import Table

ACCOUNTS = 100
REQUESTS = 10_000
CLIENTS = 32
AMOUNT = "1.25"
TARGET_UPDATES = 1_500.0
TARGET_UPDATE_P99_MS = 50.0
TARGET_QUERIES = 2_000.0


def _accounts(run: int) -> list[str]:
    return [f"w1-{run}-{i}" for i in range(ACCOUNTS)]


def _check(result: LoadResult, expected: int, what: str) -> None:
    if set(result.statuses) != {expected}:
        raise AssertionError(f"{what}: unexpected statuses {result.statuses}")


def _deposits(accounts: list[str], mode: str) -> list[bytes]:
    body = json.dumps({"amount": AMOUNT}).encode()
    return [
        request("POST", f"/entities/Account/{accounts[i % ACCOUNTS]}/{mode}/deposit", body)
        for i in range(REQUESTS)
    ]


def _wait_balances(stack: Stack, accounts: list[str], deposits: int, timeout: float) -> None:
    per_account = Decimal(AMOUNT) * (deposits // ACCOUNTS)
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        for account in accounts:
            while True:
                balance = Decimal(
                    http.get(f"/entities/Account/{account}").json()["state"]["balance"]
                )
                if balance == per_account:
                    break
                if balance > per_account or time.monotonic() > deadline:
                    raise AssertionError(f"{account}: balance {balance}, expected {per_account}")
                time.sleep(0.05)


def _one_run(stack: Stack, run: int) -> dict[str, LoadResult]:
    accounts = _accounts(run)
    opened = load(
        stack,
        spread(
            [
                request("POST", f"/entities/Account/{a}/updates/open", b'{"owner":"bench"}')
                for a in accounts
            ],
            CLIENTS,
        ),
    )
    _check(opened, 200, "open")
    results = {"W1 update": load(stack, spread(_deposits(accounts, "updates"), CLIENTS))}
    _check(results["W1 update"], 200, "W1 update")
    _wait_balances(stack, accounts, REQUESTS, 60)
    started = time.perf_counter()
    signals = results["W1 signal"] = load(stack, spread(_deposits(accounts, "signals"), CLIENTS))
    _check(signals, 202, "W1 signal")
    _wait_balances(stack, accounts, 2 * REQUESTS, 120)
    # Applied: from the first signal sent until every deposit shows in the balances (read
    # over HTTP every few milliseconds, so slightly pessimistic).
    results["W1 signal applied"] = LoadResult(
        time.perf_counter() - started, signals.latencies, signals.statuses
    )
    queries = [
        request("GET", f"/entities/Account/{accounts[i % ACCOUNTS]}/queries/balance")
        for i in range(REQUESTS)
    ]
    results["W2 query"] = load(stack, spread(queries, CLIENTS))
    _check(results["W2 query"], 200, "W2 query")
    return results


def _runs(kind: str, options: Options, bootstrap: str) -> list[dict[str, LoadResult]]:
    """Every run of one store kind, one after the other on one stack and broker."""
    with (
        store_url(kind, options.pg) as url,
        tempfile.TemporaryDirectory(prefix="entityflow-http-") as logs,
        running_stack(url, Path(logs), bootstrap) as stack,
    ):
        _one_run(stack, -1)  # warm-up, discarded: caches, connections, the broker's JIT
        return [_one_run(stack, i) for i in range(options.runs)]


def run(options: Options) -> Table:
    table = Table(
        "HTTP: W1 (updates, signals) and W2 (queries) through API + worker processes on "
        f"{broker_name(options)}",
        [
            "store",
            "workload",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "CPU ms/request (API, worker)",
            "runs (requests/s)",
        ],
    )
    with section_broker(options) as bootstrap:
        by_kind = {kind: _runs(kind, options, bootstrap) for kind in options.stores}
    for kind, runs in by_kind.items():
        for workload in ("W1 update", "W1 signal", "W1 signal applied", "W2 query"):
            results = [r[workload] for r in runs]
            rate = statistics.median(r.rate for r in results)
            p50 = statistics.median(r.percentile(50) for r in results) * 1000
            p99 = statistics.median(r.percentile(99) for r in results) * 1000
            each = ", ".join(f"{r.rate:,.0f}" for r in results)
            if workload == "W1 signal applied":  # a rate only: its latency is the signal's
                table.add(kind, workload, rate, "", "", "", each)
                continue
            api_cpu, worker_cpu = (
                statistics.median(r.cpu_ms_per_request(role) for r in results)
                for role in ("api", "worker")
            )
            # Signals are still being applied after their load ends: no per-request figure.
            cpu = "" if workload == "W1 signal" else f"{api_cpu:.2f}, {worker_cpu:.2f}"
            table.add(kind, workload, rate, p50, p99, cpu, each)
            if workload == "W1 update":
                table.target(
                    rate >= TARGET_UPDATES and p99 <= TARGET_UPDATE_P99_MS,
                    f"{kind}: updates {rate:,.0f}/s (>= {TARGET_UPDATES:,.0f}), "
                    f"p99 {p99:.1f} ms (<= {TARGET_UPDATE_P99_MS:.0f})",
                )
            if workload == "W2 query":
                table.target(
                    rate >= TARGET_QUERIES,
                    f"{kind}: queries {rate:,.0f}/s (>= {TARGET_QUERIES:,.0f})",
                )
    table.notes.append(
        f"{REQUESTS:,} requests per workload over {ACCOUNTS} accounts from {CLIENTS} keep-alive "
        "connections; broker, worker process, API process, load generator and database "
        "share this machine's 2 cores; medians of --runs runs, one after the other on one "
        "stack and broker after one discarded warm-up run; balances checked after each. "
        "CPU ms/request: user + system CPU time of the API and worker processes while the "
        "load ran, per request (medians): the figure a loaded machine disturbs least."
    )
    return table
