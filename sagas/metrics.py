"""Prometheus metrics of workflows, counted from what a worker committed.

:class:`WorkflowMetrics` adds its metrics to the worker's registry (see
``actors.metrics``) and hears of each commit as a
:class:`~actors.metrics.CommitObserver`. Counting committed history events, not the
engine's decisions as they are made, keeps the counts exact: a batch that fails and is
handled again is counted once, when it commits, and a replay (which commits nothing)
is not counted at all. A commit without visibility rows wrote no workflow history, so
entity-only batches cost one check.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from actors import ACTIVITY_ROUTE
from eventstore import Commit, ExecutionRow
from sagas.activity_worker import ActivityWorker
from sagas.definition import WORKFLOW_PREFIX, split_address
from sagas.history import (
    CallScheduled,
    Compensated,
    Completed,
    Failed,
    LocalActivityRan,
    Parked,
    Started,
    WorkflowEvent,
)

__all__ = ["DURATION_BUCKETS", "WorkflowMetrics"]

DURATION_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    6 * 3600.0,
    24 * 3600.0,
    7 * 24 * 3600.0,
)
_ENDED = {Completed: "completed", Compensated: "compensated", Failed: "failed"}


class _ActivityCollector:
    """The activity worker's figures, read at scrape time."""

    def __init__(self) -> None:
        self.worker: ActivityWorker | None = None

    def describe(self) -> Iterator[Metric]:
        return self._families(0, 0, 0, 0)

    def collect(self) -> Iterator[Metric]:
        w = self.worker
        if w is None:
            return self._families(0, 0, 0, 0)
        return self._families(w.in_flight, w.stats.started, w.stats.succeeded, w.stats.failed)

    @staticmethod
    def _families(in_flight: int, started: int, succeeded: int, failed: int) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "entityflow_activities_in_flight",
            "Activity attempts running in this process now",
            value=in_flight,
        )
        attempts = CounterMetricFamily(
            "entityflow_activity_attempts",
            "Activity attempts this process ran, by result (started, succeeded, failed)",
            labels=["result"],
        )
        attempts.add_metric(["started"], started)
        attempts.add_metric(["succeeded"], succeeded)
        attempts.add_metric(["failed"], failed)
        yield attempts


class WorkflowMetrics:
    """Workflow counters and histograms, in the registry of the worker that runs them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.started = Counter(
            "entityflow_workflows_started",
            "Workflow executions started, by workflow type",
            ["workflow_type"],
            registry=registry,
        )
        self.ended = Counter(
            "entityflow_workflows_ended",
            "Workflow executions ended, by workflow type and status (completed, "
            "compensated, failed); a failure rate is failed over all",
            ["workflow_type", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "entityflow_workflow_duration_seconds",
            "Time from a workflow's start to its end, by workflow type and status",
            ["workflow_type", "status"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "entityflow_workflow_retries",
            "Retries a workflow scheduled, by workflow type and what is retried (entity: "
            "an entity call; child: a child workflow; activity; local_activity)",
            ["workflow_type", "kind"],
            registry=registry,
        )
        self.parked = Counter(
            "entityflow_workflows_parked",
            "Executions parked because their history no longer replays, by workflow type",
            ["workflow_type"],
            registry=registry,
        )
        self._activities = _ActivityCollector()
        registry.register(self._activities)
        self._children: dict[tuple[Any, ...], Any] = {}

    def watch_activities(self, worker: ActivityWorker) -> None:
        """Report the attempts of the activity worker running in this process."""
        self._activities.worker = worker

    def committed(self, commit: Commit) -> None:
        if not commit.executions:
            return  # no workflow wrote history in this batch
        rows: dict[str, ExecutionRow] | None = None
        for rec in commit.events:
            event = rec.event
            if not isinstance(event, WorkflowEvent):
                continue
            if isinstance(event, Started) and event.run == 1:  # later runs: same execution
                self._child(self.started, split_address(rec.originator_id)[0]).inc()
            elif isinstance(event, CallScheduled):
                if event.attempt > 1:
                    kind = _call_kind(event)
                    self._child(self.retries, split_address(rec.originator_id)[0], kind).inc()
            elif isinstance(event, LocalActivityRan):
                if event.retry_at is not None:
                    wf_type = split_address(rec.originator_id)[0]
                    self._child(self.retries, wf_type, "local_activity").inc()
            elif type(event) in _ENDED:
                status = _ENDED[type(event)]
                wf_type = split_address(rec.originator_id)[0]
                self._child(self.ended, wf_type, status).inc()
                if rows is None:
                    rows = {row.address: row for row in commit.executions}
                row = rows.get(rec.originator_id)
                if row is not None and row.started_at is not None:
                    seconds = (rec.timestamp - row.started_at).total_seconds()
                    self._child(self.duration, wf_type, status).observe(max(0.0, seconds))
            elif isinstance(event, Parked):
                self._child(self.parked, split_address(rec.originator_id)[0]).inc()

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


def _call_kind(event: CallScheduled) -> str:
    if event.address.startswith(ACTIVITY_ROUTE):
        return "activity"
    return "child" if event.address.startswith(WORKFLOW_PREFIX) else "entity"
