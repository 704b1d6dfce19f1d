"""Workflow and worker metrics in-process: the scenario's exact counts, read over HTTP
from the host's own registry (in-memory mailbox, SQLite and PostgreSQL stores)."""

from __future__ import annotations

import time

from actors import InMemoryMailbox
from actors.metrics import serve_metrics
from tests.integration.metrics_domain import DOMAIN
from tests.integration.metrics_scenario import mismatches, run, scrape


def test_a_host_counts_what_it_committed_exactly(store_url: str) -> None:
    host = DOMAIN.host(store_url, mailbox=InMemoryMailbox(partitions=4), tick_interval=0.05)
    server = serve_metrics(host.metrics.registry, "127.0.0.1", 0)
    try:
        with host:
            run(host)
            url = server.url("127.0.0.1")
            deadline = time.monotonic() + 10
            while mismatches(scrape(url)) and time.monotonic() < deadline:
                time.sleep(0.05)  # the gauges follow on the worker's next tick
            samples = scrape(url)
    finally:
        server.close()
    assert mismatches(samples) == {}
    assert samples[("entityflow_worker_partitions_owned", ())] == 4
    for p in range(4):
        assert samples[("entityflow_worker_mailbox_lag_messages", (("partition", str(p)),))] == 0
    assert samples[("entityflow_worker_batch_size_messages_count", ())] >= 1
    assert (
        samples[("entityflow_worker_commit_seconds_count", ())]
        == (samples[("entityflow_worker_batch_size_messages_count", ())])
    )
    assert samples[("entityflow_relay_active", ())] == 0  # no relay runs in this host
