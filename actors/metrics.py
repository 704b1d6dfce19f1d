"""Prometheus metrics of one worker: commands, batches, commits, lag, actors, timers.

Each :class:`WorkerMetrics` has its own registry (no process-global state: two workers
in one test process count apart). Layers above add their own metrics to the same
registry (the workflow metrics of ``sagas``) and hear of every commit through the
:class:`CommitObserver` protocol, so this module never imports them.

The hot path stays cheap: label children are looked up once per label set and cached,
outcomes are counted per batch (one increment per actor type and outcome), and gauges
that need a walk (lag, actors in memory, timers) are refreshed on the worker's tick,
about once a second, on the worker's own thread.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from actors.batch import BatchResult
from actors.mailbox.protocol import Delivery
from eventstore import Commit, Outcome

__all__ = [
    "LATENCY_BUCKETS",
    "CommitObserver",
    "MetricsServer",
    "RelaySource",
    "WorkerMetrics",
    "serve_metrics",
]

log = logging.getLogger("entityflow.metrics")
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
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
)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class CommitObserver(Protocol):
    """Something that counts what a committed batch recorded (e.g. workflow metrics)."""

    def committed(self, commit: Commit) -> None:
        """Called on the worker's thread after the commit is durable."""


class RelaySource(Protocol):
    """What the relay metrics read: the relay's position and the store's newest event."""

    def relay_figures(self) -> tuple[bool, int, int, int]:
        """(active, published events, committed position, newest position in the store)."""


class _OneThreadHistogram:
    """A histogram that one thread observes without locks, served at scrape time.

    prometheus-client's histogram takes a lock per observation (about 2 us each), which
    once per message is a cost the hot path notices. Here each label value has a list of
    bucket counts with the sum last; a scrape copies the list (one step under the GIL),
    so the buckets and the count it serves always agree.
    """

    def __init__(self, name: str, documentation: str, label: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.bounds = list(buckets)
        self.children: dict[str, list[float]] = {}

    def child(self, value: str) -> list[float]:
        counts = self.children[value] = [0.0] * (len(self.bounds) + 2)  # ..., +Inf, sum
        return counts

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=[self.label])

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, counts in list(self.children.items()):
            snapshot = list(counts)
            total, buckets = 0.0, []
            for bound, n in zip([*map(repr, self.bounds), "+Inf"], snapshot[:-1], strict=True):
                total += n
                buckets.append((bound, total))
            family.add_metric([value], buckets, sum_value=snapshot[-1])
        yield family


class _RelayCollector:
    """Reads the relay at scrape time (one ``max`` query on the store), not on the hot path."""

    def __init__(self) -> None:
        self.source: RelaySource | None = None

    def describe(self) -> Iterator[Metric]:
        return self._families(False, 0, 0, 0)

    def collect(self) -> Iterator[Metric]:
        source = self.source
        if source is None:
            return self._families(False, 0, 0, 0)
        try:
            return self._families(*source.relay_figures())
        except Exception:  # a store that is down must not break the scrape
            return self._families(False, 0, 0, 0)

    @staticmethod
    def _families(active: bool, published: int, position: int, newest: int) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "entityflow_relay_active",
            "1 while the event stream relay in this process holds the namespace's lease",
            value=1.0 if active else 0.0,
        )
        yield CounterMetricFamily(
            "entityflow_relay_published_events",
            "Events the relay in this process published and Kafka acknowledged",
            value=published,
        )
        yield GaugeMetricFamily(
            "entityflow_relay_lag_events",
            "Committed events not yet published to the event stream (0 on a standby relay)",
            value=max(0, newest - position) if active else 0,
        )


class WorkerMetrics:
    """The counters, histograms and gauges of one worker, in a registry of its own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.commands = Counter(
            "entityflow_worker_commands",
            "Commands a worker committed an outcome for, by actor type (entity type or "
            "workflow:Type) and outcome (applied, rejected, invalid, dead_lettered)",
            ["actor_type", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "entityflow_worker_dead_letters",
            "Messages parked on the dead-letter topic, by actor type ((undecodable) when "
            "the message could not be read)",
            ["actor_type"],
            registry=r,
        )
        self.handler_seconds = _OneThreadHistogram(
            "entityflow_worker_handler_seconds",
            "Time one message spends in its actor's handler, by actor type",
            "actor_type",
            LATENCY_BUCKETS,
        )
        r.register(self.handler_seconds)
        self.batch_size = Histogram(
            "entityflow_worker_batch_size_messages",
            "Messages per committed batch (one transaction)",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "entityflow_worker_commit_seconds",
            "Time the store takes to commit one batch (events, outcomes, positions)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_failures = Counter(
            "entityflow_worker_commit_failures",
            "Batches that did not commit, by reason (conflict: another worker owns a "
            "partition; store_unavailable: retried after a backoff)",
            ["reason"],
            registry=r,
        )
        self.timers_fired = Counter(
            "entityflow_worker_timers_fired",
            "Durable timers this worker took from its index to deliver",
            registry=r,
        )
        self.lag = Gauge(
            "entityflow_worker_mailbox_lag_messages",
            "Messages in a partition this worker owns that it has not read yet "
            "(log end as last fetched minus next offset to read)",
            ["partition"],
            registry=r,
        )
        self.partitions_owned = Gauge(
            "entityflow_worker_partitions_owned",
            "Mailbox partitions this worker owns",
            registry=r,
        )
        self.actors_in_memory = Gauge(
            "entityflow_worker_actors_in_memory",
            "Live actors in this worker's cache, by actor type",
            ["actor_type"],
            registry=r,
        )
        self.timers_pending = Gauge(
            "entityflow_worker_timers_pending",
            "Timers of this worker's partitions due within its index's horizon (a minute)",
            registry=r,
        )
        self.timers_due = Gauge(
            "entityflow_worker_timers_due",
            "Timers of this worker's partitions that are due and not yet delivered",
            registry=r,
        )
        self._failures = {
            reason: self.commit_failures.labels(reason)
            for reason in ("conflict", "store_unavailable")  # served as 0 before the first
        }
        self._relay = _RelayCollector()
        r.register(self._relay)
        self._observers: list[CommitObserver] = []
        self._command_children: dict[tuple[str, str], Any] = {}
        self._dead_letter_children: dict[str, Any] = {}
        self._lag_children: dict[int, Any] = {}
        self._actor_children: dict[str, Any] = {}

    # -- wiring ----------------------------------------------------------------------------

    def observe(self, observer: CommitObserver) -> None:
        """Tell ``observer`` of every commit from now on."""
        self._observers.append(observer)

    def watch_relay(self, source: RelaySource) -> None:
        """Report the lag of the relay running beside this worker."""
        self._relay.source = source

    # -- the hot path ----------------------------------------------------------------------

    def handled(self, actor_type: str, seconds: float) -> None:
        """Once per message, on the worker's thread: a dict lookup, a bisect, two adds."""
        histogram = self.handler_seconds
        counts = histogram.children.get(actor_type)
        if counts is None:
            counts = histogram.child(actor_type)
        counts[bisect_left(histogram.bounds, seconds)] += 1
        counts[-1] += seconds

    def committed(self, batch: BatchResult, messages: int, commit_seconds: float) -> None:
        """A batch of ``messages`` is durable: count its outcomes, time its commit."""
        self.batch_size.observe(messages)
        self.commit_seconds.observe(commit_seconds)
        self._count_outcomes(batch.commit.outcomes)
        if batch.dead_letters:
            self._dead_lettered(batch.dead_letters)
        for observer in self._observers:
            try:
                observer.committed(batch.commit)
            except Exception:  # a counting bug must never stop a worker after its commit
                log.exception("metrics observer %r failed", observer)

    def _count_outcomes(self, outcomes: Iterable[Outcome[Any]]) -> None:
        counts: dict[tuple[str, str], int] = {}
        for outcome in outcomes:
            address = outcome.address
            key: tuple[str, str] = (address[: address.find("/")], outcome.status)
            counts[key] = counts.get(key, 0) + 1
        children = self._command_children
        for key, n in counts.items():
            child = children.get(key)
            if child is None:
                child = children[key] = self.commands.labels(*key)
            child.inc(n)

    def _dead_lettered(self, parked: Iterable[tuple[Delivery, str]]) -> None:
        for delivery, _ in parked:
            env = delivery.envelope
            actor_type = env.actor_type if env is not None else "(undecodable)"
            child = self._dead_letter_children.get(actor_type)
            if child is None:
                child = self._dead_letter_children[actor_type] = self.dead_letters.labels(
                    actor_type
                )
            child.inc()

    def commit_failed(self, reason: str) -> None:
        self._failures[reason].inc()

    # -- the tick --------------------------------------------------------------------------

    def partitions(self, lag: Mapping[int, int]) -> None:
        """The owned partitions and the lag of each; revoked ones disappear."""
        for partition in [p for p in self._lag_children if p not in lag]:
            del self._lag_children[partition]
            self.lag.remove(str(partition))
        for partition, behind in lag.items():
            child = self._lag_children.get(partition)
            if child is None:
                child = self._lag_children[partition] = self.lag.labels(str(partition))
            child.set(behind)
        self.partitions_owned.set(len(lag))

    def actors(self, by_type: Mapping[str, int]) -> None:
        for actor_type, child in self._actor_children.items():
            if actor_type not in by_type:
                child.set(0)
        for actor_type, n in by_type.items():
            child = self._actor_children.get(actor_type)
            if child is None:
                child = self._actor_children[actor_type] = self.actors_in_memory.labels(actor_type)
            child.set(n)

    def timers(self, pending: int, due: int) -> None:
        self.timers_pending.set(pending)
        self.timers_due.set(due)

    # -- exposition ------------------------------------------------------------------------

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint (prometheus-client's own server, in a thread)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def url(self, host: str) -> str:
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        return f"http://{shown}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve ``registry`` at ``http://host:port/metrics`` (port 0: any free port)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)
