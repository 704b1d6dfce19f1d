"""Every metric a process registers is in docs/metrics.md's table, and the table lists
nothing that is not registered."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from actors.metrics import WorkerMetrics
from api.metrics import Metrics
from sagas.metrics import WorkflowMetrics

TABLE = (Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text()
ROW = re.compile(r"^\| `(entityflow_[a-z_]+)` \| (counter|gauge|histogram) \|", re.MULTILINE)


def _registered(registry: CollectorRegistry) -> dict[str, str]:
    """Exposed family name (counters with their ``_total``) -> type."""
    return {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in registry.collect()
    }


class _Counts:
    def count_executions(self) -> dict[tuple[str, str], int]:
        return {("Order", "running"): 2}

    def count_timers(self) -> int:
        return 1


def test_the_table_lists_every_registered_metric_and_no_other() -> None:
    worker = WorkerMetrics()
    WorkflowMetrics(worker.registry)  # what a sagas Host adds to its worker's registry
    api = Metrics()
    api.watch_store(_Counts())  # what an API's context adds: the store's counts
    registered = {**_registered(api.registry), **_registered(worker.registry)}
    documented = dict(ROW.findall(TABLE))
    assert len(registered) >= 20, registered  # both processes' metrics were found
    assert sorted(set(registered) - set(documented)) == [], "registered, not in docs/metrics.md"
    assert sorted(set(documented) - set(registered)) == [], "in docs/metrics.md, not registered"
    assert documented == registered  # and each with its type
