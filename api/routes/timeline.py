"""``GET /workflows/{type}/{id}/timeline``: one execution's saga timeline, for the console.

The timeline is computed here, in Python, from the history of the current run
(:func:`sagas.timeline.build_timeline`): the console only draws it. The execution's
``memo`` comes from a replay of its code, like a query's view; an execution whose code no
longer replays (parked) still gets its timeline, with ``memo`` None. One route per
registered workflow type, so the document names the types; a catch-all turns an
unknown type into the 404 that lists the known ones.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.responses import Response

from api.context import ApiContext
from api.errors import JSON, ErrorBody
from api.routes.workflow_params import WorkflowId
from sagas import ReplayError, UnknownWorkflowError, WorkflowNotFoundError, replay
from sagas.definition import AnyWorkflow
from sagas.runs import RUN_SNAPSHOT, current_run
from sagas.timeline import build_timeline
from sagas.timeline_models import Timeline

__all__ = ["install", "timeline_of"]

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown workflow type, or no such execution"},
    422: {"model": ErrorBody, "description": "invalid workflow id"},
    503: {"model": ErrorBody, "description": "the event store is unavailable"},
}


def timeline_of(ctx: ApiContext, wf: AnyWorkflow, workflow_id: str) -> Timeline:
    """Read the execution's history and lay it out (blocking: run it in the executor)."""
    address = wf.address(workflow_id)
    everything = ctx.store.load(address, snapshot_type=RUN_SNAPSHOT)
    events = current_run(everything.events)[1]
    if not events:
        raise WorkflowNotFoundError(
            f"{address} has not started (or its start message is not processed yet)"
        )
    memo: dict[str, Any] | None
    try:
        memo = replay(wf, address, events).memo
    except ReplayError:
        memo = None  # parked: the timeline is read from the history alone
    return build_timeline(events, memo=memo)


def _route(ctx: ApiContext, wf: AnyWorkflow) -> Any:
    async def timeline(workflow_id: WorkflowId) -> Response:
        found = await ctx.run(timeline_of, ctx, wf, workflow_id)
        return Response(found.model_dump_json(), media_type=JSON)

    return timeline


def install(app: FastAPI, ctx: ApiContext) -> None:
    by_name = {wf.name: wf for wf in ctx.domain.workflows}
    for wf in by_name.values():
        app.add_api_route(
            f"/workflows/{wf.name}/{{workflow_id}}/timeline",
            _route(ctx, wf),
            methods=["GET"],
            tags=[f"workflow:{wf.name}"],
            response_class=Response,
            summary=f"The timeline of one {wf.name}: steps, activities, timers, signals and "
            "compensations on a time axis, with attempts, errors and durations",
            operation_id=f"workflow_timeline_{wf.name}".replace(".", "_"),
            responses={200: {"model": Timeline, "description": "the timeline"}, **ERRORS},
        )

    async def unknown_type(type_name: str, workflow_id: str) -> Response:
        known = ", ".join(sorted(by_name)) or "(none)"
        raise UnknownWorkflowError(f"no workflow type {type_name!r}; registered: {known}")

    app.add_api_route(
        "/workflows/{type_name}/{workflow_id}/timeline",
        unknown_type,
        methods=["GET"],
        include_in_schema=False,
    )
