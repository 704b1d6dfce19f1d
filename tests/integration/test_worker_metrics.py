"""A worker OS process on Apache Kafka and PostgreSQL serves /metrics, and its counts are
exactly what was sent: commands applied, refused and dead-lettered, sagas completed and
compensated with their retries, the relay caught up with every event."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from actors.mailbox.kafka import KafkaMailbox
from eventstore.kafka.io import KafkaSettings
from sagas import Host
from tests.integration.metrics_domain import DOMAIN
from tests.integration.metrics_scenario import (
    ACCOUNT_APPLIED,
    EXPECTED,
    mismatches,
    run,
    scrape,
)
from tests.integration.processes import WorkerProcess, outputs, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

PARTITIONS = 4
SERVED = re.compile(r"metrics (http://127\.0\.0\.1:\d+/metrics)")


@pytest.fixture
def client(pg_url: str, kafka_bootstrap: str, namespace: str) -> Iterator[Host]:
    mailbox = KafkaMailbox(
        KafkaSettings(kafka_bootstrap), namespace=namespace, partitions=PARTITIONS
    )
    host = DOMAIN.host(pg_url, mailbox=mailbox, run_worker=False)
    try:
        yield host
    finally:
        host.stop()
        mailbox.close()


def test_a_worker_process_serves_exact_counts(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess], client: Host
) -> None:
    worker = WorkerProcess(
        pg_url,
        kafka_bootstrap,
        namespace,
        domain="tests.integration.metrics_domain",
        partitions=PARTITIONS,
        extra_env={"ENTITYFLOW_WORKER_METRICS_PORT": "0"},  # any free port, printed
    )
    workers.append(worker)
    worker.wait_assigned()
    found = SERVED.search(worker.output)
    assert found is not None, worker.output
    url = found.group(1)
    wait_until(
        lambda: scrape(url)[("entityflow_worker_partitions_owned", ())] == PARTITIONS,
        10,
        "the gauges' first tick",
    )
    assert mismatches(scrape(url)) == {  # nothing counted yet: every sample is absent
        k: (v, None) for k, v in EXPECTED.items() if "actors_in_memory" not in k[0]
    } | {k: (v, 0.0) for k, v in EXPECTED.items() if "actors_in_memory" in k[0]}

    run(client)

    wait_until(
        lambda: not mismatches(scrape(url)),
        30,
        "the counts",
        context=lambda: str(mismatches(scrape(url))),
    )

    def relay_done() -> bool:
        s = scrape(url)
        return (
            s[("entityflow_relay_active", ())] == 1
            and s[("entityflow_relay_published_events_total", ())] == ACCOUNT_APPLIED
            and s[("entityflow_relay_lag_events", ())] == 0
        )

    wait_until(relay_done, 60, "the relay to publish every event", context=outputs(worker))
    samples = scrape(url)
    assert mismatches(samples) == {}  # still exact: nothing counted twice since
    for p in range(PARTITIONS):
        assert samples[("entityflow_worker_mailbox_lag_messages", (("partition", str(p)),))] == 0
    batches = samples[("entityflow_worker_batch_size_messages_count", ())]
    assert batches == samples[("entityflow_worker_commit_seconds_count", ())]
    assert samples[("entityflow_worker_batch_size_messages_sum", ())] >= 31  # every message
    assert samples[("entityflow_worker_commit_failures_total", (("reason", "conflict"),))] == 0
    assert worker.terminate() == 0, worker.output
