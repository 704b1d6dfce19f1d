"""What tracing costs: in-process W1 updates with tracing off and on, runs interleaved.

The workload is the in-process ``update`` mode of :mod:`bench.inprocess` (100 accounts,
10,000 deposits awaited through the in-process client, SQLite). "on" traces through the
SDK's batch processor into an exporter that counts and discards, so the figure is the
cost of making and ending the spans in the worker, not of a network hop to a collector.
Runs alternate off, on, off, on, ... so that drift of a noisy machine hits both alike.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

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


def _traced_run(url: str) -> tuple[float, int]:
    exporter = CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        rate = asyncio.run(_one_run(url, "update")).rate
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()
    return rate, exporter.spans


def run(options: Options) -> Table:
    off: list[float] = []
    on: list[float] = []
    spans: list[int] = []
    for _ in range(options.runs):
        with store_url("sqlite", options.pg) as url:
            off.append(asyncio.run(_one_run(url, "update")).rate)
        with store_url("sqlite", options.pg) as url:
            rate, count = _traced_run(url)
            on.append(rate)
            spans.append(count)
    table = Table(
        f"Tracing's cost: in-process W1 updates, {COMMANDS:,} deposits, SQLite, runs "
        f"interleaved (median of {options.runs})",
        ["tracing", "updates/s", "min", "max", "spans/command", "vs off"],
    )
    base = statistics.median(off)
    table.add("off", base, min(off), max(off), 0.0, "1.00")
    median = statistics.median(on)
    per_command = statistics.median(spans) / COMMANDS
    table.add("on", median, min(on), max(on), per_command, f"{median / base:.2f}")
    table.target(per_command >= 1.0, f"every command traced ({per_command:.2f} spans/command)")
    return table
