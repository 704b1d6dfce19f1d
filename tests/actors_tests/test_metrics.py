"""The worker's own metrics, stepped by hand: lag per partition as a backlog drains,
revoked partitions leave the lag gauge, each worker counts into its own registry, and a
batch whose commit failed is counted once, when it commits (its handlers ran twice)."""

from __future__ import annotations

import pytest

from actors import Host, InMemoryMailbox
from actors.metrics import WorkerMetrics
from eventstore import Commit, StoreUnavailableError
from tests.actors_tests.conftest import ALL_ENTITIES
from tests.actors_tests.support import Counter

LAG = "entityflow_worker_mailbox_lag_messages"


def test_lag_is_what_the_partition_holds_beyond_the_read_position(sqlite_url: str) -> None:
    mailbox = InMemoryMailbox(partitions=1)
    host = Host(
        sqlite_url, ALL_ENTITIES, mailbox=mailbox, run_worker=False, max_batch=4, tick_interval=0
    )
    try:
        for _ in range(10):
            host.client.signal(Counter.add, "c", by=1)
        seen = []
        for _ in range(4):
            host.worker.step()  # the tick reports before the batch it polled is handled
            seen.append(host.metrics.registry.get_sample_value(LAG, {"partition": "0"}))
        assert seen == [10, 6, 2, 0]
        applied = host.metrics.registry.get_sample_value(
            "entityflow_worker_commands_total", {"actor_type": "Counter", "outcome": "applied"}
        )
        assert applied == 10
        assert host.metrics.registry.get_sample_value("entityflow_worker_partitions_owned") == 1
    finally:
        host.stop()


def test_revoked_partitions_leave_the_lag_gauge_and_workers_count_apart() -> None:
    one, two = WorkerMetrics(), WorkerMetrics()
    one.partitions({0: 5, 1: 2})
    one.partitions({1: 0})
    assert one.registry.get_sample_value(LAG, {"partition": "0"}) is None
    assert one.registry.get_sample_value(LAG, {"partition": "1"}) == 0
    assert one.registry.get_sample_value("entityflow_worker_partitions_owned") == 1
    assert two.registry.get_sample_value(LAG, {"partition": "1"}) is None
    one.commit_failed("conflict")
    assert (
        one.registry.get_sample_value(
            "entityflow_worker_commit_failures_total", {"reason": "conflict"}
        )
        == 1
    )
    assert (
        two.registry.get_sample_value(
            "entityflow_worker_commit_failures_total", {"reason": "conflict"}
        )
        == 0
    )


def test_a_batch_that_failed_to_commit_is_counted_once(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = Host(sqlite_url, ALL_ENTITIES, mailbox=InMemoryMailbox(partitions=1), run_worker=False)
    real_commit = host.store.commit
    failures = [StoreUnavailableError("the store went away")]

    def flaky(commit: Commit) -> list[int]:
        if failures:
            raise failures.pop()
        return real_commit(commit)

    monkeypatch.setattr(host.store, "commit", flaky)
    try:
        for _ in range(5):
            host.client.signal(Counter.add, "c", by=1)
        assert host.worker.step() == 0  # handled, not committed
        assert host.worker.step() == 5  # handled again, committed
        sample = host.metrics.registry.get_sample_value
        assert (
            sample(
                "entityflow_worker_commands_total", {"actor_type": "Counter", "outcome": "applied"}
            )
            == 5
        )
        assert (
            sample("entityflow_worker_commit_failures_total", {"reason": "store_unavailable"}) == 1
        )
        assert sample("entityflow_worker_batch_size_messages_count") == 1
        assert sample("entityflow_worker_handler_seconds_count", {"actor_type": "Counter"}) == 10
    finally:
        host.stop()
