"""Command routes: ``/signals/{command}``, ``/updates/{command}`` and ``/commands/{id}``.

One route per (entity type, command, mode) is generated from the registered entity
classes, so each command's body is typed in OpenAPI by its own schema. Both modes accept
every command: a signal fires and forgets (202), an update waits for the result (200).
Catch-all routes, hidden from the schema, turn unknown types and commands into a 404
that lists what exists.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Request
from starlette.responses import Response

from actors import CommandSpec, EntitySpec
from api.context import ApiContext
from api.errors import ERROR_RESPONSES, ErrorBody, UnknownCommandIdError
from api.gateways.commands import Mode
from api.gateways.idempotency import HEADER, KEY_PATTERN
from api.openapi.schemas import (
    CommandAccepted,
    CommandStatus,
    example_value,
    responses,
    tags,
    update_response_model,
)

ENTITY_ID_PATTERN = r"^[^\s/\x00-\x1f\x7f]{1,200}$"
EntityId = Annotated[
    str,
    Path(
        description="the entity's id: 1 to 200 characters, no '/', spaces or control characters",
        min_length=1,
        max_length=200,
        pattern=ENTITY_ID_PATTERN,
        examples=["acct-7"],
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        description="makes retries safe: the same key and body return the original response",
        pattern=KEY_PATTERN,
    ),
]
Timeout = Annotated[
    float | None,
    Query(gt=0, le=3600, description="seconds to wait for the result (default from settings)"),
]


def _body_doc(handler: CommandSpec, components: dict[str, Any]) -> dict[str, Any]:
    name = handler.args_model.__name__
    schema = components.get(name, {})
    required = bool(schema.get("required"))
    return {
        "requestBody": {
            "required": required,
            "description": f"the arguments of {handler.entity_type}.{handler.name}",
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{name}"},
                    "example": example_value(schema, components),
                }
            },
        }
    }


def _summary(handler: CommandSpec, mode: Mode) -> str:
    first = handler.doc.splitlines()[0] if handler.doc else f"{handler.kind} {handler.name}"
    how = "fire and forget" if mode == "signal" else "wait for the result"
    return f"{handler.entity_type}.{handler.name} ({how}): {first}"


def _signal_route(ctx: ApiContext, handler: CommandSpec) -> Any:
    gateway = ctx.gateway

    async def signal(
        request: Request, entity_id: EntityId, idempotency_key: IdempotencyKey = None
    ) -> Response:
        body = await request.body()
        return await gateway.submit(
            handler, "signal", entity_id, body, path=request.scope["path"], key=idempotency_key
        )

    return signal


def _update_route(ctx: ApiContext, handler: CommandSpec) -> Any:
    gateway = ctx.gateway

    async def update(
        request: Request,
        entity_id: EntityId,
        idempotency_key: IdempotencyKey = None,
        timeout: Timeout = None,
    ) -> Response:
        body = await request.body()
        return await gateway.submit(
            handler,
            "update",
            entity_id,
            body,
            path=request.scope["path"],
            key=idempotency_key,
            timeout=timeout,
        )

    return update


def _add_command_routes(
    app: FastAPI, ctx: ApiContext, spec: EntitySpec, components: dict[str, Any]
) -> None:
    base = f"/entities/{spec.type_name}/{{entity_id}}"
    for handler in spec.commands():
        doc = _body_doc(handler, components)
        description = (handler.doc or "") + (
            f"\n\nSend `{handler.name}` to one {spec.type_name}. Both `/signals/` and "
            "`/updates/` accept every command."
        )
        app.add_api_route(
            f"{base}/signals/{handler.name}",
            _signal_route(ctx, handler),
            methods=["POST"],
            status_code=202,
            summary=_summary(handler, "signal"),
            description=description,
            operation_id=f"signal_{spec.type_name}_{handler.name}".replace(".", "_"),
            tags=tags(spec),
            response_class=Response,
            responses=responses(
                {202: {"model": CommandAccepted, "description": "durably queued"}},
                ERROR_RESPONSES,
            ),
            openapi_extra=doc,
        )
        app.add_api_route(
            f"{base}/updates/{handler.name}",
            _update_route(ctx, handler),
            methods=["POST"],
            status_code=200,
            summary=_summary(handler, "update"),
            description=description,
            operation_id=f"update_{spec.type_name}_{handler.name}".replace(".", "_"),
            tags=tags(spec),
            response_class=Response,
            responses=responses(
                {
                    200: {"model": update_response_model(handler), "description": "applied"},
                    500: {"model": ErrorBody, "description": "the handler crashed"},
                    504: {"model": ErrorBody, "description": "no result in time: command_id"},
                },
                ERROR_RESPONSES,
            ),
            openapi_extra=doc,
        )


def _add_fallbacks(app: FastAPI, ctx: ApiContext) -> None:
    async def unknown_command(type_name: str, entity_id: str, command: str) -> Response:
        ctx.catalog.spec(type_name).command(command)  # raises the 404 that lists commands
        raise AssertionError("a registered command always has a route")  # pragma: no cover

    for mode in ("signals", "updates"):
        app.add_api_route(
            f"/entities/{{type_name}}/{{entity_id}}/{mode}/{{command}}",
            unknown_command,
            methods=["POST"],
            include_in_schema=False,
        )


def install(app: FastAPI, ctx: ApiContext, components: dict[str, Any]) -> None:
    for spec in ctx.catalog:
        _add_command_routes(app, ctx, spec, components)
    _add_fallbacks(app, ctx)

    async def command_status(
        command_id: Annotated[str, Path(min_length=1, max_length=200)],
    ) -> CommandStatus:
        outcome = await ctx.run(ctx.store.outcome, command_id)
        if outcome is not None:
            return CommandStatus(
                command_id=command_id,
                status=outcome.status,
                address=outcome.address,
                command=outcome.command,
                result=outcome.result,
                version=outcome.version,
                error=outcome.error,
            )
        accepted = await ctx.run(ctx.ledger.accepted, command_id)
        if accepted is None:
            raise UnknownCommandIdError(command_id)
        return CommandStatus(
            command_id=command_id,
            status="pending",
            address=accepted.address,
            command=accepted.command,
        )

    app.add_api_route(
        "/commands/{command_id}",
        command_status,
        methods=["GET"],
        summary="The outcome of a command: pending, applied, rejected, invalid, dead-lettered",
        tags=["commands"],
        response_model=CommandStatus,
        responses={404: ERROR_RESPONSES[404], 503: ERROR_RESPONSES[503]},
    )
