"""``GET /approvals``: the open human approvals, who is asked, since when, what is next.

Each running execution that waits on :func:`sagas.request_approval` carries its open
approvals in its visibility row (written with its history), so listing them reads the
rows of running executions and never replays anything. Decisions go through the
workflow's own signal route (``POST /workflows/{type}/{id}/signals/{approval}``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import pydantic_core
from fastapi import FastAPI, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from api.context import ApiContext
from api.errors import JSON, ErrorBody
from eventstore import ExecutionRow

PAGE = 500


class OpenApproval(BaseModel):
    """One approval an execution waits for."""

    workflow_type: str
    workflow_id: str
    approval: str = Field(description="the approval's name: its signal's name")
    approvers: list[str] = Field(description="who may decide now")
    since: datetime = Field(description="when it was requested")
    next_escalation: datetime | None = Field(
        description="when the next rung of its ladder (remind, escalate, give up) is due"
    )
    decide: str = Field(description="the route that takes the decision")


class ApprovalList(BaseModel):
    approvals: list[OpenApproval]


def open_approvals(rows: list[ExecutionRow], approver: str | None) -> list[OpenApproval]:
    found: list[OpenApproval] = []
    for row in rows:
        asked: Any = row.summary.get("approvals") or []
        for item in asked:
            if approver is not None and approver not in item["approvers"]:
                continue
            found.append(
                OpenApproval(
                    workflow_type=row.workflow_type,
                    workflow_id=row.workflow_id,
                    approval=item["name"],
                    approvers=item["approvers"],
                    since=item["since"],
                    next_escalation=item.get("next_at"),
                    decide=f"/workflows/{row.workflow_type}/{row.workflow_id}/signals/{item['name']}",
                )
            )
    return sorted(found, key=lambda a: (a.since, a.workflow_type, a.workflow_id))


def install(app: FastAPI, ctx: ApiContext) -> None:
    async def list_approvals(
        approver: Annotated[
            str | None,
            Query(min_length=1, max_length=200, description="only those this person may decide"),
        ] = None,
    ) -> Response:
        def rows() -> list[ExecutionRow]:
            running: list[ExecutionRow] = []
            after: str | None = None
            while True:
                page = ctx.store.executions(status="running", limit=PAGE, after=after)
                running += [r for r in page if "approvals" in r.summary]
                if len(page) < PAGE:
                    return running
                after = page[-1].address

        found = open_approvals(await ctx.run(rows), approver)
        body = ApprovalList(approvals=found).model_dump(mode="json")
        return Response(pydantic_core.to_json(body), media_type=JSON)

    app.add_api_route(
        "/approvals",
        list_approvals,
        methods=["GET"],
        tags=["workflows"],
        response_class=Response,
        summary="List the open human approvals (who is asked, since when, next escalation)",
        operation_id="list_approvals",
        responses={
            200: {"model": ApprovalList, "description": "the open approvals, oldest first"},
            422: {"model": ErrorBody, "description": "invalid parameters"},
            503: {"model": ErrorBody, "description": "the event store is unavailable"},
        },
    )
