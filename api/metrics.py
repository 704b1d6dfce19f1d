"""Prometheus metrics of one app: requests, latencies, command outcomes.

Each app has its own registry (no process-global state, so two apps in one test process
do not share counters). Requests are labelled by route template, never by raw path, so
the label set stays bounded whatever ids clients send.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventstore import EventStoreError

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Metrics:
    """The counters and histograms of one app, and their exposition."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "entityflow_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "entityflow_http_request_seconds",
            "HTTP request latency, by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.outcomes = Counter(
            "entityflow_command_outcomes",
            "Commands by entity type, command and outcome (accepted, applied, rejected, "
            "invalid, dead_lettered, timeout, unavailable)",
            ["entity_type", "command", "outcome"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        self._outcome_children: dict[tuple[str, str, str], Any] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(method, route, status)
        counter.inc()
        lkey = (method, route)
        hist = self._latency_children.get(lkey)
        if hist is None:
            hist = self._latency_children[lkey] = self.latency.labels(method, route)
        hist.observe(seconds)

    def command(self, entity_type: str, command: str, outcome: str) -> None:
        key = (entity_type, command, outcome)
        counter = self._outcome_children.get(key)
        if counter is None:
            counter = self._outcome_children[key] = self.outcomes.labels(*key)
        counter.inc()

    def watch_store(self, store: CountingStore) -> None:
        """Report the store's counts (executions by status, pending timers) when scraped."""
        self.registry.register(StoreCounts(store))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class StoreCounts(Collector):
    """What only the store knows, read when scraped: executions by workflow type and
    status (running, compensating, parked, ... across every worker, which a worker's own
    cache cannot tell) and the timers pending. One grouped query and one count per scrape;
    a store that does not answer leaves these out of that scrape instead of failing it."""

    def __init__(self, store: CountingStore) -> None:
        self.store = store

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only: registering must not query the store

    def collect(self) -> list[Metric]:
        executions = GaugeMetricFamily(
            "entityflow_workflow_executions",
            "Workflow executions by type and status, as the store holds them",
            labels=["workflow_type", "status"],
        )
        timers = GaugeMetricFamily(
            "entityflow_timers_pending", "Durable timers set and not yet fired, all actors"
        )
        try:
            counts = self.store.count_executions()
            pending = self.store.count_timers()
        except EventStoreError:
            return []
        for (workflow_type, status), n in sorted(counts.items()):
            executions.add_metric([workflow_type, status], n)
        timers.add_metric([], pending)
        return [executions, timers]


class CountingStore(Protocol):
    def count_executions(self) -> dict[tuple[str, str], int]: ...

    def count_timers(self) -> int: ...


class MetricsMiddleware:
    """Times every HTTP request and counts it under its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            self.metrics.observe_request(
                scope["method"], template, status, time.perf_counter() - start
            )
