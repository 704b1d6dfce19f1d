"""Activities on Apache Kafka and PostgreSQL, run by worker processes, one killed with -9.

A workflow's activity is interrupted by the SIGKILL of the worker running it; the
replacement takes the task again (its offset was never committed) or the heartbeat
timeout schedules the next attempt, and every workflow completes. The provider saw
each idempotency key charged once, though some keys were attempted twice.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sagas import Host
from tests.integration.activity_domain import (
    DOMAIN,
    charge_order,
    create_provider_tables,
    queued_charge,
)
from tests.integration.processes import WorkerProcess, client_host, count_rows, outputs, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

PARTITIONS = 4
ORDERS = 12
DOMAIN_MODULE = "tests.integration.activity_domain"


@pytest.fixture
def client(pg_url: str, kafka_bootstrap: str, namespace: str) -> Iterator[Host]:
    with client_host(DOMAIN, pg_url, kafka_bootstrap, namespace, PARTITIONS) as host:
        yield host


def _worker(
    workers: list[WorkerProcess],
    pg_url: str,
    bootstrap: str,
    namespace: str,
    extra_env: dict[str, str] | None = None,
) -> WorkerProcess:
    w = WorkerProcess(
        pg_url,
        bootstrap,
        namespace,
        domain=DOMAIN_MODULE,
        partitions=PARTITIONS,
        extra_env=extra_env,
    )
    workers.append(w)
    return w


def test_activities_survive_the_kill_of_the_worker_running_them(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess], client: Host
) -> None:
    base, _, schema = pg_url.partition("?schema=")
    create_provider_tables(base, schema)
    first = _worker(workers, pg_url, kafka_bootstrap, namespace)
    first.wait_assigned()
    assert "activities slow_charge (16 at once)" in first.output
    ids = [
        client.workflows.start(charge_order, {"order": f"o-{n}", "seconds": 3.0})
        for n in range(ORDERS)
    ]
    wait_until(
        lambda: count_rows(pg_url, "attempts") >= ORDERS // 2,
        60,
        "activities to start",
        context=outputs(first),
    )
    first.kill9()
    charged = count_rows(pg_url, "charges")
    # Started on the killed worker and not finished: these must run again. (Orders whose
    # task it had not taken yet run once, on the survivor.)
    cut_off = count_rows(pg_url, "attempts") - charged
    assert cut_off > 0, "no activity was running when its worker was killed"
    second = _worker(workers, pg_url, kafka_bootstrap, namespace)

    def completed() -> bool:
        rows = client.workflows.executions(charge_order, status="completed", limit=100)
        return len(rows) == ORDERS

    wait_until(completed, 120, "every workflow to complete", context=outputs(first, second))
    pids = [client.workflows.result(charge_order, wid) for wid in ids]
    assert pids.count(second.process.pid) >= ORDERS - charged  # the survivor ran the rest
    assert set(pids) <= {first.process.pid, second.process.pid}
    assert count_rows(pg_url, "charges") == ORDERS  # once per key
    attempted = count_rows(pg_url, "attempts")
    assert attempted >= ORDERS + cut_off, attempted  # the killed ones ran again
    assert second.terminate() == 0, second.output


def test_with_no_activity_worker_an_attempt_times_out_on_its_schedule_to_start(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess], client: Host
) -> None:
    """An entity-only worker (activity concurrency 0): the tasks wait on the broker, no
    worker takes them, and each attempt fails after its schedule-to-start of 1 s."""
    base, _, schema = pg_url.partition("?schema=")
    create_provider_tables(base, schema)
    only = _worker(
        workers, pg_url, kafka_bootstrap, namespace, {"ENTITYFLOW_ACTIVITY_CONCURRENCY": "0"}
    )
    only.wait_assigned()
    wid = client.workflows.start(queued_charge, {"order": "q-1", "seconds": 1.0})

    def ended() -> bool:
        return len(client.workflows.executions(queued_charge, status="completed")) == 1

    wait_until(ended, 60, "the workflow to complete", context=outputs(only))
    assert client.workflows.result(queued_charge, wid) == "schedule_to_start after 2 attempts"
    step = client.workflows.status(queued_charge, wid).steps[0]
    assert step.code == "timed_out:schedule_to_start"
    assert count_rows(pg_url, "attempts") == 0
    assert only.terminate() == 0, only.output


def test_an_activities_only_worker_runs_the_activities_and_owns_no_entity(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess], client: Host
) -> None:
    """Activities scale apart from entities: one worker owns every entity partition and
    runs no activity, the other joins no entity partition and runs every activity."""
    base, _, schema = pg_url.partition("?schema=")
    create_provider_tables(base, schema)
    entities = _worker(
        workers, pg_url, kafka_bootstrap, namespace, {"ENTITYFLOW_ACTIVITY_CONCURRENCY": "0"}
    )
    activities = _worker(
        workers, pg_url, kafka_bootstrap, namespace, {"ENTITYFLOW_ACTIVITIES_ONLY": "true"}
    )
    entities.wait_assigned()
    wait_until(
        lambda: "no entity partitions (activities only)" in activities.output,
        60,
        "the activities-only worker to start",
        context=outputs(activities),
    )
    ids = [
        client.workflows.start(charge_order, {"order": f"a-{n}", "seconds": 0.1}) for n in range(4)
    ]

    def completed() -> bool:
        return len(client.workflows.executions(charge_order, status="completed")) == len(ids)

    wait_until(completed, 60, "every workflow to complete", context=outputs(entities, activities))
    pids = {client.workflows.result(charge_order, wid) for wid in ids}
    assert pids == {activities.process.pid}
    assert count_rows(pg_url, "charges") == len(ids)
    assert "assigned partitions [" not in activities.output
    assert entities.terminate() == 0, entities.output
    assert activities.terminate() == 0, activities.output
