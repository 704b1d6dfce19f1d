"""W1 held for minutes: does entityflow on Apache Kafka stay as fast as it started?

One stack (Apache Kafka, ``entityflow worker`` and ``entityflow serve`` on PostgreSQL)
takes W1 updates (``POST /entities/Account/{id}/updates/deposit`` over 100 accounts) from
32 keep-alive connections for ``--seconds`` (default 300). The table shows each 30 s
window's completed updates/s, p50 and p99: the last window must be within 10% of the
first, and every balance must equal what was deposited.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx

from bench.broker import broker_name, section_broker
from bench.http_stack import Stack, load, request, running_stack, spread
from bench.options import Options
from bench.stores import store_url
from bench.table import Table

ACCOUNTS = 100
CLIENTS = 32
WINDOW = 30.0
TARGET_DRIFT = 0.10


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def _client(
    stack: Stack,
    client: int,
    until: float,
    done: list[tuple[float, float]],
    sent: list[int],
    errors: list[str],
) -> None:
    reader, writer = await asyncio.open_connection(stack.host, stack.port)
    body = json.dumps({"amount": "1"}).encode()
    n = client
    try:
        while time.perf_counter() < until:
            raw = request("POST", f"/entities/Account/s-{n % ACCOUNTS}/updates/deposit", body)
            start = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            answer = await reader.readexactly(length)
            end = time.perf_counter()
            if head[9:12] != b"200":
                errors.append(f"{head[9:12].decode()} {answer[:200]!r}")
                continue
            done.append((end, end - start))
            sent[n % ACCOUNTS] += 1
            n += CLIENTS
    finally:
        writer.close()
        await writer.wait_closed()


async def _drive(
    stack: Stack, seconds: float
) -> tuple[float, list[tuple[float, float]], list[int], list[str]]:
    done: list[tuple[float, float]] = []
    sent = [0] * ACCOUNTS
    errors: list[str] = []
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(_client(stack, c, until, done, sent, errors) for c in range(CLIENTS)))
    return start, done, sent, errors


def _check_balances(stack: Stack, sent: list[int]) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        for a in range(ACCOUNTS):
            state = http.get(f"/entities/Account/s-{a}").json()["state"]
            if Decimal(state["balance"]) != sent[a]:
                raise AssertionError(f"s-{a}: balance {state['balance']}, {sent[a]} deposited")


def run(options: Options) -> Table:
    seconds = options.seconds
    with (
        section_broker(options) as bootstrap,
        store_url("postgres", options.pg) as url,
        tempfile.TemporaryDirectory(prefix="entityflow-sustained-") as logs,
        running_stack(url, Path(logs), bootstrap) as stack,
    ):
        opened = load(
            stack,
            spread(
                [
                    request("POST", f"/entities/Account/s-{a}/updates/open", b'{"owner":"s"}')
                    for a in range(ACCOUNTS)
                ],
                CLIENTS,
            ),
        )
        if set(opened.statuses) != {200}:
            raise AssertionError(f"open: unexpected statuses {opened.statuses}")
        start, done, sent, errors = asyncio.run(_drive(stack, seconds))
        _check_balances(stack, sent)
    table = Table(
        f"Sustained W1: updates over HTTP for {seconds:.0f} s, {CLIENTS} keep-alive "
        f"connections, {broker_name(options)}, PostgreSQL, 1 worker + 1 API process",
        ["window (s)", "updates/s", "p50 ms", "p99 ms"],
    )
    windows = int(seconds // WINDOW)
    rates: list[float] = []
    for w in range(windows):
        lo, hi = start + w * WINDOW, start + (w + 1) * WINDOW
        latencies = [lat for end, lat in done if lo <= end < hi]
        rates.append(len(latencies) / WINDOW)
        table.add(
            f"{w * WINDOW:.0f}-{(w + 1) * WINDOW:.0f}",
            rates[-1],
            _percentile(latencies, 50) if latencies else "",
            _percentile(latencies, 99) if latencies else "",
        )
    total = len(done)
    table.notes.append(
        f"{total:,} updates in all ({total / seconds:,.0f}/s), {len(errors)} errors"
        + (f", e.g. {errors[0]}" if errors else "")
        + "; every balance checked against the deposits."
    )
    drift = abs(rates[-1] - rates[0]) / rates[0] if rates and rates[0] else 1.0
    table.target(
        drift <= TARGET_DRIFT,
        f"last window {rates[-1]:,.0f}/s within {TARGET_DRIFT:.0%} of the first "
        f"{rates[0]:,.0f}/s ({drift:.1%})",
    )
    table.target(not errors, f"no request failed ({len(errors)} did)")
    return table
