"""Rows a batch commits besides events: visibility rows upserted once, newest wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eventstore import Commit, EventRegistry, ExecutionRow, Store


def test_one_execution_touched_twice_in_a_batch_keeps_its_newest_row(store_url: str) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with Store(store_url, EventRegistry()) as store:
        store.commit(
            Commit(
                executions=[
                    ExecutionRow("workflow:W/1", "W", "1", "running", t0, t0, {"step": 1}),
                    ExecutionRow(
                        "workflow:W/1", "W", "1", "completed", t0 + timedelta(seconds=1), t0
                    ),
                    ExecutionRow("workflow:W/2", "W", "2", "running", t0, t0),
                ]
            )
        )
        first = store.execution("workflow:W/1")
        assert first is not None and first.status == "completed" and first.summary == {}
        store.commit(
            Commit(
                executions=[
                    ExecutionRow(
                        "workflow:W/2", "W", "2", "failed", t0 + timedelta(seconds=5), None
                    )
                ]
            )
        )
        second = store.execution("workflow:W/2")
        assert second is not None and second.status == "failed"
        assert second.started_at == t0  # an update keeps when it started
        assert [r.address for r in store.executions(workflow_type="W")] == [
            "workflow:W/1",
            "workflow:W/2",
        ]
