"""What tracing costs: in-process W1 updates with tracing off and on, runs interleaved.

The workload is the in-process ``update`` mode of :mod:`bench.inprocess` (100 accounts,
10,000 deposits awaited through the in-process client, SQLite). "on" traces every
command through the SDK's batch processor into an exporter that counts and discards, so
the figure is the cost of making and ending the spans in the worker, not of a network
hop to a collector; "sampled 10%" is the same with ``OTEL_TRACES_SAMPLER=
parentbased_traceidratio`` at 0.1 (what a busy deployment runs). Runs alternate off, on,
sampled, off, ... so that drift of a noisy machine hits all three alike. Target: tracing
costs at most 10%.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

from bench.inprocess import COMMANDS, _one_run
from bench.options import Options
from bench.stores import store_url
from bench.table import Table
from eventstore import tracing


class CountingExporter(SpanExporter):
    """Takes every span and keeps only the count."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


TARGET = 0.90
"""Throughput with tracing on, as a share of throughput without (at most 10% cost)."""


def _traced_run(url: str, sampler: Sampler | None = None) -> tuple[float, int]:
    exporter = CountingExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        rate = asyncio.run(_one_run(url, "update")).rate
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()
    return rate, exporter.spans


def run(options: Options) -> Table:
    rates: dict[str, list[float]] = {"off": [], "on": [], "sampled 10%": []}
    spans: dict[str, list[int]] = {"on": [], "sampled 10%": []}
    ratio = ParentBased(TraceIdRatioBased(0.1))
    for _ in range(options.runs):
        with store_url("sqlite", options.pg) as url:
            rates["off"].append(asyncio.run(_one_run(url, "update")).rate)
        for mode, sampler in (("on", None), ("sampled 10%", ratio)):
            with store_url("sqlite", options.pg) as url:
                rate, count = _traced_run(url, sampler)
            rates[mode].append(rate)
            spans[mode].append(count)
    table = Table(
        f"Tracing's cost: in-process W1 updates, {COMMANDS:,} deposits, SQLite, runs "
        f"interleaved (median of {options.runs})",
        ["tracing", "updates/s", "min", "max", "spans/command", "vs off"],
    )
    base = statistics.median(rates["off"])
    for mode, found in rates.items():
        median = statistics.median(found)
        per_command = statistics.median(spans[mode]) / COMMANDS if mode in spans else 0.0
        table.add(mode, median, min(found), max(found), per_command, f"{median / base:.2f}")
        if mode in spans:
            table.target(
                median / base >= TARGET,
                f"tracing {mode} costs at most 10% ({1 - median / base:.0%})",
            )
    every = statistics.median(spans["on"]) / COMMANDS
    table.target(every >= 1.0, f"every command traced when on ({every:.2f} spans/command)")
    return table
