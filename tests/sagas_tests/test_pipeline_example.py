"""The CI/CD pipeline example runs in-process: stages as activities, a failing shard stops it."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.pipeline import DOMAIN, PipelineResult, pipeline, run_tests
from sagas import ActivityEnvironment

pytestmark = pytest.mark.anyio


async def test_the_pipeline_builds_tests_and_deploys(tmp_path: Path) -> None:
    with DOMAIN.host(f"sqlite:///{tmp_path / 'ci.db'}", tick_interval=0.02) as node:
        wid = node.workflows.start(pipeline, {"commit": "4f4550bd9e", "shards": 3})
        status = await node.workflows.wait(pipeline, wid, timeout=20)
        assert status.status == "completed", status
        result = PipelineResult.model_validate(status.result)
        assert result.artifact == "app-4f4550b.tar.gz"
        assert result.outcome.startswith("app-4f4550b.tar.gz deployed to staging")
        assert [s.command for s in status.steps] == ["build", "run_tests", "deploy"]


async def test_a_failing_shard_stops_the_pipeline_before_deploying(tmp_path: Path) -> None:
    with DOMAIN.host(f"sqlite:///{tmp_path / 'ci.db'}", tick_interval=0.02) as node:
        wid = node.workflows.start(
            pipeline, {"commit": "8f7e5cd0", "shards": 4, "failing_shard": 2}
        )
        status = await node.workflows.wait(pipeline, wid, timeout=20)
        result = PipelineResult.model_validate(status.result)
        assert result.outcome == "not deployed: TestsFailed: shard 2 of app-8f7e5cd.tar.gz failed"
        assert [s.command for s in status.steps] == ["build", "run_tests"]
        assert status.steps[1].attempts == 1  # final: not retried


def test_the_test_stage_resumes_after_the_last_shard_reported() -> None:
    env = ActivityEnvironment(attempt=2, heartbeat_details=2)
    assert env.run(run_tests, "app-1.tar.gz", 4) == 4
    assert env.heartbeats == [3, 4]  # shards 0 and 1 were done by the attempt before
