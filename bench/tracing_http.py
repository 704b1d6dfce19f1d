"""What tracing costs over HTTP: W1 updates through API and worker processes, off and on.

The in-process section (:mod:`bench.tracing`) prices a span against a command that costs
a few hundred microseconds; a user pays for tracing on W1 as the shared workloads define
it: ``POST /entities/Account/{id}/updates/deposit`` over HTTP, through the broker, to a
worker on PostgreSQL. This section runs three stacks of ``entityflow serve`` and
``entityflow worker`` on one Apache Kafka, configured only by the standard variables:

- ``off``: no ``OTEL_*`` variables (entityflow's default);
- ``on``: ``OTEL_TRACES_EXPORTER=otlp`` to a collector on loopback (a receiver in this
  process that decodes every export and counts its spans), every request traced;
- ``sampled 10%``: the same with ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` at 0.1.

Each run opens 100 fresh accounts and sends 10,000 updates from 32 keep-alive
connections; the runs go off, on, sampled, off, ... so that the drift of a noisy machine
hits all three alike, after one discarded warm-up run per stack. Target: tracing costs at
most 10%, both of the updates/s and of the CPU the API and worker spend per update (the
steadier figure on a shared machine).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bench.broker import broker_name, section_broker
from bench.http_stack import LoadResult, Stack, load, request, running_stack, spread
from bench.options import Options
from bench.stores import store_url
from bench.table import Table

ACCOUNTS = 100
REQUESTS = 10_000
CLIENTS = 32
TARGET = 0.90
"""Updates/s with tracing on, as a share of updates/s without (at most 10% cost)."""


class Collector:
    """An OTLP/HTTP trace receiver on loopback that keeps only the number of spans."""

    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()
        collector = self
        reply = ExportTraceServiceResponse().SerializeToString()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                count = sum(
                    len(scope.spans)
                    for resource in request.resource_spans
                    for scope in resource.scope_spans
                )
                with collector._lock:
                    collector.spans += count
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: one line per export would flood the bench's output."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def running_collector() -> Iterator[Collector]:
    collector = Collector()
    try:
        yield collector
    finally:
        collector.close()


def _mode_env(mode: str, collector: Collector) -> dict[str, str]:
    if mode == "off":
        return {}
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": f"bench-{mode.split(maxsplit=1)[0]}",
    }
    if mode == "sampled 10%":
        env |= {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    return env


def _check(result: LoadResult, expected: int, what: str) -> None:
    if set(result.statuses) != {expected}:
        raise AssertionError(f"{what}: unexpected statuses {result.statuses}")


def _one_run(stack: Stack, tag: str) -> LoadResult:
    accounts = [f"trace-{tag}-{i}" for i in range(ACCOUNTS)]
    opens = [
        request("POST", f"/entities/Account/{a}/updates/open", b'{"owner":"bench"}')
        for a in accounts
    ]
    _check(load(stack, spread(opens, CLIENTS)), 200, "open")
    deposits = [
        request(
            "POST", f"/entities/Account/{accounts[i % ACCOUNTS]}/updates/deposit", b'{"amount":"1"}'
        )
        for i in range(REQUESTS)
    ]
    result = load(stack, spread(deposits, CLIENTS))
    _check(result, 200, "W1 update")
    return result


MODES = ("off", "on", "sampled 10%")


def _cpu_ms(result: LoadResult) -> float:
    """CPU the API and worker processes spent per update: steadier than the rate on a
    machine whose neighbours come and go."""
    return result.cpu_ms_per_request("api") + result.cpu_ms_per_request("worker")


def run(options: Options) -> Table:
    results: dict[str, list[LoadResult]] = {mode: [] for mode in MODES}
    spans: dict[str, int] = {}
    with ExitStack() as stacks:
        bootstrap = stacks.enter_context(section_broker(options))
        collectors = {mode: stacks.enter_context(running_collector()) for mode in MODES}
        running: dict[str, Stack] = {}
        for mode in MODES:
            url = stacks.enter_context(store_url("postgres", options.pg))
            logs = Path(stacks.enter_context(tempfile.TemporaryDirectory(prefix="ef-trace-")))
            env = _mode_env(mode, collectors[mode])
            running[mode] = stacks.enter_context(running_stack(url, logs, bootstrap, env=env))
            _one_run(running[mode], f"{mode[:3]}-warm")  # discarded: JIT, caches, pools
        time.sleep(6)  # the warm-up's spans leave the batch processors (5 s schedule delay)
        before = {mode: collectors[mode].spans for mode in MODES}
        for n in range(options.runs):
            for mode in MODES:
                results[mode].append(_one_run(running[mode], f"{mode[:3]}-{n}"))
        # Spans of the measured runs still in the processes' batch buffers arrive later.
        stacks.close()
        spans = {mode: collectors[mode].spans - before[mode] for mode in MODES}
    table = Table(
        f"Tracing's cost over HTTP: W1 updates through API + worker processes on "
        f"{broker_name(options)}, PostgreSQL, runs interleaved (median of {options.runs})",
        [
            "tracing",
            "updates/s",
            "p50 ms",
            "p99 ms",
            "runs (updates/s)",
            "CPU ms/update",
            "spans/update",
            "vs off (rate)",
            "vs off (CPU)",
        ],
    )
    base = statistics.median(r.rate for r in results["off"])
    base_cpu = statistics.median(_cpu_ms(r) for r in results["off"])
    for mode in MODES:
        found = results[mode]
        rate = statistics.median(r.rate for r in found)
        p50 = statistics.median(r.percentile(50) for r in found) * 1000
        p99 = statistics.median(r.percentile(99) for r in found) * 1000
        cpu = statistics.median(_cpu_ms(r) for r in found)
        updates = (REQUESTS + ACCOUNTS) * options.runs
        table.add(
            mode,
            rate,
            p50,
            p99,
            ", ".join(f"{r.rate:,.0f}" for r in found),
            cpu,
            spans[mode] / updates,
            f"{rate / base:.2f}",
            f"{cpu / base_cpu:.2f}",
        )
        if mode != "off":
            table.target(
                rate / base >= TARGET,
                f"tracing {mode} costs at most 10% of the updates/s ({1 - rate / base:.0%})",
            )
            table.target(
                base_cpu / cpu >= TARGET,
                f"tracing {mode} costs at most 10% more CPU per update ({cpu / base_cpu - 1:.0%})",
            )
    every = spans["on"] / ((REQUESTS + ACCOUNTS) * options.runs)
    table.target(every >= 2.0, f"every update traced in API and worker ({every:.2f} spans/update)")
    table.notes.append(
        f"{REQUESTS:,} updates per run over {ACCOUNTS} fresh accounts from {CLIENTS} keep-alive "
        "connections; three stacks (API + worker process each) share the broker, PostgreSQL "
        "and this machine's 2 cores with the load generator and the collector; spans are "
        "counted by the collector after the stacks stopped (their batch processors flush at "
        "exit), warm-up runs excluded."
    )
    return table
