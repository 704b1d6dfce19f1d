"""W3 over HTTP: order sagas started and awaited through the API, API + worker processes.

One Apache Kafka for the section and one stack per store kind (``--stores``):
``entityflow worker`` and ``entityflow serve`` as OS processes (see ``http_stack.py``),
the shop domain with its order saga; the runs go one after the other to the same stack.
Before each run, 100 accounts, 10 SKUs and one cart per saga are set up over HTTP. Then
32 keep-alive clients share 1,000 sagas; each client, for each of its sagas:

1. ``POST /workflows/Order`` ``{workflow_id, input}`` (202 once the broker has it);
2. ``GET /workflows/Order/{id}?wait=30``: the long poll answers once the saga is final.

The latency of a saga is from sending (1) to the final status of (2); sagas/s is 1,000
over the wall time of the run. Every 10th cart is left empty, so every 10th saga is
refused at checkout and compensated (refund, then release). Every order has a shipping
address: the others are then shipped by the fulfilment activity (a task through the
activity topic to the worker's activity threads), whose fake carrier fails the first
attempt of one order in five (retried after 50 ms). Each run checks every final status,
every shipped order's tracking number, every balance and every stock level against the
plan. Targets (issue 11): >= 300
sagas/s and p99 <= 300 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx

from bench.broker import broker_name, section_broker
from bench.http_stack import Stack, load, request, running_stack, spread
from bench.options import Options
from bench.stores import store_url
from bench.table import Table

SAGAS = 1_000
CLIENTS = 32
ACCOUNTS = 100
SKUS = 10
FUNDS = Decimal(1_000)
STOCK = 1_000
PRICE = Decimal("2.50")
TARGET_RATE = 300.0
TARGET_P99_MS = 300.0


@dataclass(frozen=True)
class Plan:
    """Saga ``i`` of run ``run``: its ids, quantity, amount, and whether its cart is empty."""

    run: int
    i: int

    @property
    def workflow_id(self) -> str:
        return f"w3-{self.run}-{self.i}"

    @property
    def account(self) -> str:
        return f"w3-{self.run}-acct-{self.i % ACCOUNTS}"

    @property
    def sku(self) -> str:
        return f"w3-{self.run}-sku-{self.i % SKUS}"

    @property
    def cart(self) -> str:
        return f"w3-{self.run}-cart-{self.i}"

    @property
    def quantity(self) -> int:
        return 1 + self.i % 3

    @property
    def amount(self) -> Decimal:
        return PRICE * self.quantity

    @property
    def refused(self) -> bool:
        return self.i % 10 == 9

    def input(self) -> dict[str, object]:
        return {
            "account_id": self.account,
            "cart_id": self.cart,
            "lines": [{"sku": self.sku, "quantity": self.quantity}],
            "amount": str(self.amount),
            "ship_to": f"{self.i} Bench Street",
        }


@dataclass
class RunResult:
    seconds: float
    latencies: list[float]
    statuses: dict[str, str]
    load_before: float
    load_after: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _setup(stack: Stack, plans: list[Plan]) -> None:
    """Accounts with funds, SKUs in stock, and a filled cart for every saga not refused."""
    run = plans[0].run
    accounts = [f"w3-{run}-acct-{a}" for a in range(ACCOUNTS)]
    skus = [f"w3-{run}-sku-{s}" for s in range(SKUS)]
    steps = [
        [
            request("POST", f"/entities/Account/{a}/updates/open", b'{"owner":"bench"}')
            for a in accounts
        ]
        + [
            request(
                "POST", f"/entities/InventoryItem/{s}/updates/restock", b'{"quantity":%d}' % STOCK
            )
            for s in skus
        ],
        [
            request("POST", f"/entities/Account/{a}/updates/deposit", b'{"amount":"%d"}' % FUNDS)
            for a in accounts
        ]
        + [
            request(
                "POST",
                f"/entities/Cart/{p.cart}/updates/add_item",
                json.dumps(
                    {"sku": p.sku, "quantity": p.quantity, "unit_price": str(PRICE)}
                ).encode(),
            )
            for p in plans
            if not p.refused
        ],
    ]
    for step in steps:
        result = load(stack, spread(step, CLIENTS))
        if set(result.statuses) != {200}:
            raise AssertionError(f"setup: unexpected statuses {result.statuses}")


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return int(head[9:12]), await reader.readexactly(length)


async def _client(
    stack: Stack, plans: list[Plan], latencies: list[float], statuses: dict[str, str]
) -> None:
    reader, writer = await asyncio.open_connection(stack.host, stack.port)
    try:
        for plan in plans:
            body = json.dumps({"workflow_id": plan.workflow_id, "input": plan.input()}).encode()
            start = time.perf_counter()
            code, answer = await _exchange(
                reader, writer, request("POST", "/workflows/Order", body)
            )
            if code != 202:
                raise AssertionError(f"start {plan.workflow_id}: {code} {answer[:300]!r}")
            wait = request("GET", f"/workflows/Order/{plan.workflow_id}?wait=30")
            while True:
                code, answer = await _exchange(reader, writer, wait)
                if code != 200:
                    raise AssertionError(f"status {plan.workflow_id}: {code} {answer[:300]!r}")
                final = json.loads(answer)
                status = final["status"]
                if status not in ("running", "compensating"):
                    break
            if status == "completed" and not final["result"].get("tracking"):
                raise AssertionError(f"{plan.workflow_id} completed but was not shipped")
            latencies.append(time.perf_counter() - start)
            statuses[plan.workflow_id] = status
    finally:
        writer.close()
        await writer.wait_closed()


async def _drive(
    stack: Stack, per_client: list[list[Plan]]
) -> tuple[float, list[float], dict[str, str]]:
    latencies: list[float] = []
    statuses: dict[str, str] = {}
    start = time.perf_counter()
    await asyncio.gather(*(_client(stack, plans, latencies, statuses) for plans in per_client))
    return time.perf_counter() - start, latencies, statuses


def _reconcile(stack: Stack, plans: list[Plan], statuses: dict[str, str]) -> None:
    """Every saga ended as planned, and balances and stock follow exactly from that."""
    wrong = {
        p.workflow_id: statuses.get(p.workflow_id)
        for p in plans
        if statuses.get(p.workflow_id) != ("compensated" if p.refused else "completed")
    }
    if wrong:
        raise AssertionError(
            f"{len(wrong)} sagas ended unexpectedly, e.g. {list(wrong.items())[:5]}"
        )
    spent: dict[str, Decimal] = {}
    held: dict[str, int] = {}
    for p in plans:
        spent.setdefault(p.account, Decimal(0))
        held.setdefault(p.sku, 0)
        if not p.refused:
            spent[p.account] += p.amount
            held[p.sku] += p.quantity
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        for account, amount in spent.items():
            balance = Decimal(http.get(f"/entities/Account/{account}").json()["state"]["balance"])
            if balance != FUNDS - amount:
                raise AssertionError(f"{account}: balance {balance}, expected {FUNDS - amount}")
        for sku, quantity in held.items():
            r = http.get(f"/entities/InventoryItem/{sku}/queries/available")
            if r.json()["result"] != STOCK - quantity:
                raise AssertionError(
                    f"{sku}: {r.json()['result']} available, not {STOCK - quantity}"
                )


def _one_run(stack: Stack, run: int) -> RunResult:
    plans = [Plan(run, i) for i in range(SAGAS)]
    _setup(stack, plans)
    per_client = [plans[c::CLIENTS] for c in range(CLIENTS)]
    before = os.getloadavg()[0]
    seconds, latencies, statuses = asyncio.run(_drive(stack, per_client))
    after = os.getloadavg()[0]
    _reconcile(stack, plans, statuses)
    return RunResult(seconds, latencies, statuses, before, after)


def _runs(kind: str, options: Options, bootstrap: str) -> list[RunResult]:
    with (
        store_url(kind, options.pg) as url,
        tempfile.TemporaryDirectory(prefix="entityflow-sagas-") as logs,
        running_stack(url, Path(logs), bootstrap) as stack,
    ):
        _one_run(stack, -1)  # warm-up, discarded: caches, connections, the broker's JIT
        return [_one_run(stack, i) for i in range(options.runs)]


def run(options: Options) -> Table:
    table = Table(
        "HTTP: W3 order sagas (start + long poll to the final status), API + worker processes "
        f"on {broker_name(options)}",
        ["store", "sagas/s", "p50 ms", "p99 ms", "runs (sagas/s)", "load avg"],
    )
    with section_broker(options) as bootstrap:
        by_kind = {kind: _runs(kind, options, bootstrap) for kind in options.stores}
    for kind, runs in by_kind.items():
        rate = statistics.median(r.rate for r in runs)
        p50 = statistics.median(r.percentile(50) for r in runs) * 1000
        p99 = statistics.median(r.percentile(99) for r in runs) * 1000
        each = ", ".join(f"{r.rate:,.0f}" for r in runs)
        loads = ", ".join(f"{r.load_before:.1f}->{r.load_after:.1f}" for r in runs)
        table.add(kind, rate, p50, p99, each, loads)
        table.target(
            rate >= TARGET_RATE and p99 <= TARGET_P99_MS,
            f"{kind}: {rate:,.0f} sagas/s (>= {TARGET_RATE:,.0f}), p99 {p99:.0f} ms "
            f"(<= {TARGET_P99_MS:.0f})",
        )
    table.notes.append(
        f"{SAGAS:,} order sagas per run (reserve, charge, check out; every 10th cart empty, so "
        f"compensated) from {CLIENTS} keep-alive connections, each starting a saga and long "
        "polling GET /workflows/Order/{id}?wait=30 until it is final; medians of --runs runs, "
        "one after the other on one stack and broker after one discarded warm-up run; final "
        "statuses, balances and stock "
        "checked after each run. Broker, worker process, "
        "API process, load generator and database share this machine's 2 cores (load "
        "average: 1-minute, before -> after each run)."
    )
    return table
