"""Workflow routes: start, status (with a long poll), signals, queries, cancel, history, list.

Routes are generated per registered workflow definition, so each start body, signal
payload, query and status is typed in OpenAPI by that workflow's own models. Catch-all
routes, hidden from the schema, turn unknown workflow types, signals and queries into a
404 that lists what exists. Messages go through :class:`~api.gateways.workflows.WorkflowGateway`;
statuses come from :class:`~api.readers.workflows.WorkflowReader` (never via the mailbox);
queries and histories read the store.

``GET /workflows/{type}/{id}?wait=S`` is a long poll: it answers as soon as the execution
is finished (completed, compensated, failed) or parked, or after S seconds with the
status as it is then. A start that was accepted but not processed yet is waited for.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic_core
from fastapi import Body, FastAPI, Path, Query, Request
from starlette.responses import Response

from api.context import ApiContext
from api.errors import JSON
from api.gateways.workflows import WorkflowGateway
from api.openapi.schemas import EventPage
from api.openapi.workflows import (
    CancelRequest,
    ExecutionPage,
    RepairRequest,
    StatusName,
    WorkflowCommandAccepted,
    WorkflowStarted,
    accepts_none,
    list_fields,
    query_model,
    query_parameters,
    signal_example,
    start_example,
    start_model,
    status_model,
    update_model,
)
from api.readers.workflows import WorkflowReader
from api.routes.commands import IdempotencyKey, Timeout
from api.routes.entities import After, Limit, event_page
from api.routes.workflow_params import (
    MESSAGE_ERRORS,
    READ_ERRORS,
    START_ERRORS,
    WAIT_UNTIL,
    AnyWorkflow,
    Run,
    Wait,
    WorkflowId,
    error_responses,
    with_body,
)
from eventstore import ExecutionRow
from sagas import WorkflowClient
from sagas.repairs import RepairAction


def _row_json(row: ExecutionRow) -> dict[str, Any]:
    return {
        "workflow_type": row.workflow_type,
        "workflow_id": row.workflow_id,
        "status": row.status,
        "started_at": row.started_at,
        "updated_at": row.updated_at,
        "summary": row.summary,
    }


class WorkflowRoutes:
    """The routes of every registered workflow, sharing one client, reader and gateway."""

    def __init__(self, app: FastAPI, ctx: ApiContext) -> None:
        self.app = app
        self.ctx = ctx
        self.client = WorkflowClient(
            ctx.mailbox,
            ctx.store,
            ctx.domain.workflows,
            timeout=ctx.settings.update_timeout,
            sender=ctx.sender,
        )

        async def accepted(command_id: str) -> bool:
            if self.gateway.started_here(command_id):
                return True
            return await ctx.run(ctx.ledger.accepted, command_id) is not None

        self.reader = WorkflowReader(
            ctx.reader.tails, accepted, capacity=ctx.settings.actor_cache_size
        )
        self.gateway: WorkflowGateway = WorkflowGateway(ctx.gateway, self.client)

    def install(self) -> None:
        for wf in self.client.workflows.values():
            self._start(wf)
            self._status(wf)
            for name in wf.signals:
                self._signal(wf, name)
            for spec in wf.queries.values():
                self._query(wf, spec.name)
            for name in wf.updates:
                self._update(wf, name)
            self._cancel(wf)
            self._repair(wf)
            self._history(wf)
        self._list()
        self._fallbacks()

    # -- one workflow ---------------------------------------------------------------------

    def _route(self, wf: AnyWorkflow, path: str, endpoint: Any, **options: Any) -> None:
        self.app.add_api_route(
            f"/workflows/{wf.name}{path}",
            endpoint,
            tags=[f"workflow:{wf.name}"],
            response_class=Response,
            **options,
        )

    def _start(self, wf: AnyWorkflow) -> None:
        gateway, model = self.gateway, start_model(wf)

        async def start(
            request: Request, body: Any, idempotency_key: IdempotencyKey = None
        ) -> Response:
            return await gateway.start(
                wf,
                body.workflow_id,
                wf.encode_input(body.input),
                path=request.scope["path"],
                key=idempotency_key,
            )

        example = {"start": {"summary": f"start {wf.name}", "value": start_example(wf)}}
        body = Annotated[model, Body(openapi_examples=example)]  # type: ignore[valid-type]
        self._route(
            wf,
            "",
            with_body(start, body),
            methods=["POST"],
            status_code=202,
            summary=f"Start a {wf.name} (the same workflow_id again is the same execution)",
            description=wf.description or None,
            operation_id=f"start_workflow_{wf.name}".replace(".", "_"),
            responses={202: {"model": WorkflowStarted, "description": "queued"}, **START_ERRORS},
        )

    def _status(self, wf: AnyWorkflow) -> None:
        reader = self.reader

        async def status(workflow_id: WorkflowId, wait: Wait = None) -> Response:
            if wait is None:
                record = await reader.status(wf, workflow_id)
            else:
                record = await reader.wait(wf, workflow_id, WAIT_UNTIL, wait)
            return Response(record.view().model_dump_json(), media_type=JSON)

        self._route(
            wf,
            "/{workflow_id}",
            status,
            methods=["GET"],
            summary=f"The status of one {wf.name}: result or error, steps, compensations",
            operation_id=f"workflow_status_{wf.name}".replace(".", "_"),
            responses={200: {"model": status_model(wf), "description": "status"}, **READ_ERRORS},
        )

    def _signal(self, wf: AnyWorkflow, name: str) -> None:
        gateway = self.gateway

        async def signal(
            request: Request,
            workflow_id: WorkflowId,
            body: Any = None,
            idempotency_key: IdempotencyKey = None,
            timeout: Timeout = None,
        ) -> Response:
            return await gateway.signal(
                wf,
                workflow_id,
                name,
                body,
                path=request.scope["path"],
                key=idempotency_key,
                timeout=timeout,
            )

        payload_type = wf.signals[name].payload_type
        annotation = None
        if payload_type is not None:
            value = signal_example(wf, name)
            title = f"{wf.name}.{name} payload"
            annotation = Annotated[payload_type, Body(examples=[value], title=title)]
        self._route(
            wf,
            f"/{{workflow_id}}/signals/{name}",
            with_body(signal, annotation, optional=accepts_none(wf, name)),
            methods=["POST"],
            status_code=202,
            summary=f"Deliver the signal {name} to one {wf.name}",
            description="Waits until the execution recorded it (or refused it).",
            operation_id=f"signal_workflow_{wf.name}_{name}".replace(".", "_"),
            responses={
                202: {"model": WorkflowCommandAccepted, "description": "recorded"},
                **MESSAGE_ERRORS,
            },
        )

    def _update(self, wf: AnyWorkflow, name: str) -> None:
        gateway, spec = self.gateway, wf.update_spec(name)

        async def update(
            request: Request,
            workflow_id: WorkflowId,
            body: Any,
            idempotency_key: IdempotencyKey = None,
            timeout: Timeout = None,
        ) -> Response:
            return await gateway.update(
                wf,
                workflow_id,
                name,
                body.model_dump(mode="json"),
                path=request.scope["path"],
                key=idempotency_key,
                timeout=timeout,
            )

        doc = spec.doc.splitlines()[0] if spec.doc else f"update {name}"
        self._route(
            wf,
            f"/{{workflow_id}}/updates/{name}",
            with_body(update, Annotated[spec.args_model, Body()]),
            methods=["POST"],
            summary=f"{wf.name}.{name}: {doc}",
            description=(
                (spec.doc + "\n\n" if spec.doc else "")
                + "Waits for the result. A refused update (its validator or handler raised) "
                "is a 409 and leaves no trace in the history."
            ),
            operation_id=f"update_workflow_{wf.name}_{name}".replace(".", "_"),
            responses={
                200: {"model": update_model(wf, spec), "description": "the result"},
                **MESSAGE_ERRORS,
            },
        )

    def _query(self, wf: AnyWorkflow, name: str) -> None:
        client, ctx = self.client, self.ctx
        spec = wf.query_spec(name)
        lists = list_fields(spec)

        async def run_query(request: Request, workflow_id: WorkflowId) -> Response:
            raw: dict[str, Any] = {}
            for key, value in request.query_params.multi_items():
                if key in lists:
                    raw.setdefault(key, []).append(value)
                else:
                    raw[key] = value
            spec.parse(raw)  # invalid arguments are a 422 before the store is read
            result = await ctx.run(client.query, wf, workflow_id, name, raw)
            return Response(pydantic_core.to_json({"result": result}), media_type=JSON)

        doc = spec.doc.splitlines()[0] if spec.doc else f"query {name}"
        self._route(
            wf,
            f"/{{workflow_id}}/queries/{name}",
            run_query,
            methods=["GET"],
            summary=f"{wf.name}.{name}: {doc}",
            description=spec.doc or None,
            operation_id=f"query_workflow_{wf.name}_{name}".replace(".", "_"),
            responses={
                200: {"model": query_model(wf, spec), "description": "the result"},
                **READ_ERRORS,
                **error_responses(_409="the execution is parked (its code no longer replays)"),
            },
            openapi_extra={"parameters": query_parameters(spec)},
        )

    def _cancel(self, wf: AnyWorkflow) -> None:
        gateway = self.gateway

        async def cancel(
            request: Request,
            workflow_id: WorkflowId,
            body: Annotated[CancelRequest | None, Body()] = None,
            idempotency_key: IdempotencyKey = None,
            timeout: Timeout = None,
        ) -> Response:
            return await gateway.cancel(
                wf,
                workflow_id,
                body.reason if body is not None else "",
                path=request.scope["path"],
                key=idempotency_key,
                timeout=timeout,
            )

        self._route(
            wf,
            "/{workflow_id}/cancel",
            cancel,
            methods=["POST"],
            status_code=202,
            summary=f"Cancel one {wf.name}: it stops and runs its compensations",
            description="Waits until the execution recorded the cancellation (or refused it).",
            operation_id=f"cancel_workflow_{wf.name}".replace(".", "_"),
            responses={
                202: {"model": WorkflowCommandAccepted, "description": "recorded"},
                **MESSAGE_ERRORS,
            },
        )

    def _repair(self, wf: AnyWorkflow) -> None:
        gateway = self.gateway

        async def repair(
            request: Request,
            workflow_id: WorkflowId,
            index: Annotated[int, Path(ge=0, le=1_000_000, description="the compensation's index")],
            action: Annotated[RepairAction, Path(description="retry it, or skip it")],
            body: Annotated[RepairRequest | None, Body()] = None,
            idempotency_key: IdempotencyKey = None,
            timeout: Timeout = None,
        ) -> Response:
            return await gateway.repair(
                wf,
                workflow_id,
                index,
                action,
                body.reason if body is not None else "",
                path=request.scope["path"],
                key=idempotency_key,
                timeout=timeout,
            )

        self._route(
            wf,
            "/{workflow_id}/compensations/{index}/{action}",
            repair,
            methods=["POST"],
            status_code=202,
            summary=f"Repair a failed {wf.name}: retry or skip the compensation that failed",
            description=(
                "Only the compensation that ran out of attempts can be repaired; the saga then "
                "goes on undoing the older ones. A skip needs a reason. Recorded in the history "
                "(wf.CompensationRepaired); a refused repair records nothing (409)."
            ),
            operation_id=f"repair_workflow_{wf.name}".replace(".", "_"),
            responses={
                202: {"model": WorkflowCommandAccepted, "description": "recorded"},
                **MESSAGE_ERRORS,
            },
        )

    def _history(self, wf: AnyWorkflow) -> None:
        client, ctx = self.client, self.ctx

        async def history(
            workflow_id: WorkflowId, after: After = 0, limit: Limit = 100, run: Run = None
        ) -> Response:
            wf.address(workflow_id)
            events = await ctx.run(
                lambda: client.history(wf, workflow_id, after=after, limit=limit, run=run)
            )
            return event_page(events, limit)

        self._route(
            wf,
            "/{workflow_id}/history",
            history,
            methods=["GET"],
            summary=f"The history of one {wf.name}, oldest first, paged: every run, or one "
            "(?run=N; the status lists the runs of an execution that continued as new)",
            operation_id=f"workflow_history_{wf.name}".replace(".", "_"),
            responses={200: {"model": EventPage, "description": "a page of events"}, **READ_ERRORS},
        )

    # -- every workflow -----------------------------------------------------------------

    def _list(self) -> None:
        client, ctx = self.client, self.ctx

        async def list_executions(
            workflow_type: Annotated[
                str | None, Query(alias="type", max_length=64, description="a workflow type")
            ] = None,
            status: Annotated[StatusName | None, Query(description="only this status")] = None,
            after: Annotated[
                str | None,
                Query(max_length=300, description="the next_after of the previous page"),
            ] = None,
            limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 100,
        ) -> Response:
            name = client.definition(workflow_type).name if workflow_type is not None else None

            def rows() -> list[ExecutionRow]:
                return ctx.store.executions(
                    workflow_type=name, status=status, limit=limit, after=after
                )

            found = await ctx.run(rows)
            next_after = found[-1].address if len(found) == limit else None
            body = {"executions": [_row_json(r) for r in found], "next_after": next_after}
            return Response(pydantic_core.to_json(body), media_type=JSON)

        self.app.add_api_route(
            "/workflows",
            list_executions,
            methods=["GET"],
            tags=["workflows"],
            response_class=Response,
            summary="List workflow executions by type and status (visibility), paged",
            operation_id="list_workflows",
            responses={
                200: {"model": ExecutionPage, "description": "a page of executions"},
                **error_responses(
                    _404="unknown workflow type",
                    _422="invalid parameters",
                    _503="the event store is unavailable",
                ),
            },
        )

    def _fallbacks(self) -> None:
        client = self.client

        async def unknown_type(type_name: str) -> Response:
            client.definition(type_name)  # raises the 404 that lists the workflow types
            raise AssertionError("a registered workflow always has routes")  # pragma: no cover

        async def unknown_execution(type_name: str, workflow_id: str) -> Response:
            return await unknown_type(type_name)

        async def unknown_signal(type_name: str, workflow_id: str, signal: str) -> Response:
            client.definition(type_name).signal_adapter(signal)
            raise AssertionError("a registered signal always has a route")  # pragma: no cover

        async def unknown_query(type_name: str, workflow_id: str, query: str) -> Response:
            client.definition(type_name).query_spec(query)
            raise AssertionError("a registered query always has a route")  # pragma: no cover

        base = "/workflows/{type_name}"
        for path, endpoint, method in (
            (base, unknown_type, "POST"),
            (f"{base}/{{workflow_id}}", unknown_execution, "GET"),
            (f"{base}/{{workflow_id}}/history", unknown_execution, "GET"),
            (f"{base}/{{workflow_id}}/cancel", unknown_execution, "POST"),
            (f"{base}/{{workflow_id}}/signals/{{signal}}", unknown_signal, "POST"),
            (f"{base}/{{workflow_id}}/queries/{{query}}", unknown_query, "GET"),
        ):
            self.app.add_api_route(path, endpoint, methods=[method], include_in_schema=False)


def install(app: FastAPI, ctx: ApiContext) -> None:
    WorkflowRoutes(app, ctx).install()
