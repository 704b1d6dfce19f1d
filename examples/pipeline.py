"""A CI/CD pipeline: build, test and deploy as activities, the workflow deciding between.

The stages are where the side effects are (here simulated: a build that takes a while,
test shards, a deployment); each heartbeats its progress, so a worker that dies mid-way
is noticed within ``heartbeat_timeout`` and the retry resumes at the last shard
reported. A failing test is final (``ApplicationError(non_retryable=True)``): retrying
would fail the same way, and the pipeline then stops before deploying.

Run it with ``entityflow worker --domain examples.pipeline`` beside your API, or
in-process as ``tests/sagas_tests/test_pipeline_example.py`` does.
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from sagas import (
    ActivityError,
    ApplicationError,
    Domain,
    RetryPolicy,
    Workflow,
    WorkflowContext,
    WorkflowView,
    activity,
    activity_info,
    heartbeat,
)

STAGE_RETRY = RetryPolicy(attempts=3, initial_interval=1.0)


@activity
def build(commit: str) -> str:
    """Compile the commit; the artifact's name is derived from it (same commit, same name)."""
    for step in ("fetch", "compile", "package"):
        heartbeat(step)
        time.sleep(0.01)
    return f"app-{commit[:7]}.tar.gz"


@activity
def run_tests(artifact: str, shards: int, failing_shard: int | None = None) -> int:
    """Run the test shards in order, resuming after the last one a previous attempt did."""
    done: int = activity_info().heartbeat_details or 0
    for shard in range(done, shards):
        if shard == failing_shard:
            raise ApplicationError(
                f"shard {shard} of {artifact} failed", type="TestsFailed", non_retryable=True
            )
        time.sleep(0.01)
        heartbeat(shard + 1)
    return shards


@activity
def deploy(artifact: str, environment: str) -> str:
    """Roll the artifact out; the idempotency key lets the deployer ignore a repeat."""
    heartbeat("rolling out")
    return f"{artifact} deployed to {environment} ({activity_info().idempotency_key})"


class PipelineInput(BaseModel):
    commit: str = Field(min_length=7, max_length=40, pattern=r"^[0-9a-f]+$")
    environment: str = "staging"
    shards: int = Field(default=4, ge=1, le=64)
    failing_shard: int | None = None


class PipelineResult(BaseModel):
    artifact: str
    outcome: str


pipeline = Workflow("Pipeline", input=PipelineInput, output=PipelineResult)


@pipeline.run
async def run_pipeline(ctx: WorkflowContext, p: PipelineInput) -> PipelineResult:
    artifact = await ctx.execute_activity(build.options(retry=STAGE_RETRY), p.commit)
    ctx.memo["stage"] = "testing"
    testing = run_tests.options(retry=STAGE_RETRY, heartbeat_timeout=30, start_to_close=600)
    try:
        await ctx.execute_activity(testing, artifact, p.shards, p.failing_shard)
    except ActivityError as exc:
        return PipelineResult(artifact=artifact, outcome=f"not deployed: {exc.reason}")
    ctx.memo["stage"] = "deploying"
    outcome = await ctx.execute_activity(deploy.options(retry=STAGE_RETRY), artifact, p.environment)
    return PipelineResult(artifact=artifact, outcome=outcome)


@pipeline.query
def stage(view: WorkflowView) -> str:
    return str(view.memo.get("stage", "building")) if view.status == "running" else view.status


DOMAIN = Domain((), workflows=[pipeline], activities=[build, run_tests, deploy])

__all__ = ["DOMAIN", "PipelineInput", "PipelineResult", "build", "deploy", "pipeline", "run_tests"]
