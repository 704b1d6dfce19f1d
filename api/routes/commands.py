"""Command routes: ``/signals/{command}``, ``/updates/{command}`` and ``/commands/{id}``.

One route per (entity type, command, mode) is generated from the registered entity
classes, so each command's body is typed in OpenAPI by its own schema. Both modes accept
every command: a signal fires and forgets (202), an update waits for the result (200).
Catch-all routes, hidden from the schema, turn unknown types and commands into a 404
that lists what exists.

:func:`command_table` is the one table of these routes: FastAPI's routes are generated
from it, and so is the command fast path (``gateways/fast_path.py``), which serves the
plain shape of these requests without FastAPI's per-request machinery; both check the
``?timeout=`` bound through :data:`TIMEOUT_BOUNDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Request
from starlette.responses import Response

from actors import CommandSpec, EntityCatalog
from api.context import ApiContext
from api.errors import ERROR_RESPONSES, ErrorBody, UnknownCommandIdError
from api.gateways.commands import Mode
from api.gateways.idempotency import HEADER, KEY_PATTERN
from api.openapi.schemas import (
    CommandAccepted,
    Responses,
    example_value,
    responses,
    tags,
    update_response_model,
)
from eventstore import Outcome

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
TIMEOUT_BOUNDS = (0.0, 3600.0)
"""``?timeout=`` must be above the first and at most the second (seconds)."""
Timeout = Annotated[
    float | None,
    Query(
        gt=TIMEOUT_BOUNDS[0],
        le=TIMEOUT_BOUNDS[1],
        description="seconds to wait for the result (default from settings)",
    ),
]
SEGMENTS: dict[str, Mode] = {"signals": "signal", "updates": "update"}


@dataclass(frozen=True)
class CommandRoute:
    """One generated command route: its path template, mode and handler."""

    path: str
    mode: Mode
    handler: CommandSpec


def command_table(catalog: EntityCatalog) -> dict[tuple[str, str, str], CommandRoute]:
    """Every command route, keyed by (entity type, ``signals``/``updates``, command)."""
    table: dict[tuple[str, str, str], CommandRoute] = {}
    for spec in catalog:
        for handler in spec.commands():
            for segment, mode in SEGMENTS.items():
                path = f"/entities/{spec.type_name}/{{entity_id}}/{segment}/{handler.name}"
                table[(spec.type_name, segment, handler.name)] = CommandRoute(path, mode, handler)
    return table


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


def _add_command_route(
    app: FastAPI, ctx: ApiContext, route: CommandRoute, components: dict[str, Any]
) -> None:
    handler = route.handler
    spec = ctx.catalog.spec(handler.entity_type)
    description = (handler.doc or "") + (
        f"\n\nSend `{handler.name}` to one {spec.type_name}. Both `/signals/` and "
        "`/updates/` accept every command."
    )
    if route.mode == "signal":
        endpoint = _signal_route(ctx, handler)
        status_code = 202
        documented: Responses = {202: {"model": CommandAccepted, "description": "durably queued"}}
    else:
        endpoint = _update_route(ctx, handler)
        status_code = 200
        documented = {
            200: {"model": update_response_model(handler), "description": "applied"},
            500: {"model": ErrorBody, "description": "the handler crashed"},
            504: {"model": ErrorBody, "description": "no result in time: command_id"},
        }
    app.add_api_route(
        route.path,
        endpoint,
        methods=["POST"],
        status_code=status_code,
        summary=_summary(handler, route.mode),
        description=description,
        operation_id=f"{route.mode}_{spec.type_name}_{handler.name}".replace(".", "_"),
        tags=tags(spec),
        response_class=Response,
        responses=responses(documented, ERROR_RESPONSES),
        openapi_extra=_body_doc(handler, components),
    )


def _add_fallbacks(app: FastAPI, ctx: ApiContext) -> None:
    async def unknown_command(type_name: str, entity_id: str, command: str) -> Response:
        ctx.catalog.spec(type_name).command(command)  # raises the 404 that lists commands
        raise AssertionError("a registered command always has a route")  # pragma: no cover

    for segment in SEGMENTS:
        app.add_api_route(
            f"/entities/{{type_name}}/{{entity_id}}/{segment}/{{command}}",
            unknown_command,
            methods=["POST"],
            include_in_schema=False,
        )


def install(app: FastAPI, ctx: ApiContext, components: dict[str, Any]) -> None:
    for route in command_table(ctx.catalog).values():
        _add_command_route(app, ctx, route, components)
    _add_fallbacks(app, ctx)

    async def command_status(
        command_id: Annotated[str, Path(min_length=1, max_length=200)],
    ) -> Outcome[Any]:
        outcome = await ctx.run(ctx.store.outcome, command_id)
        if outcome is not None:
            return outcome
        accepted = await ctx.run(ctx.ledger.accepted, command_id)
        if accepted is None:
            raise UnknownCommandIdError(command_id)
        return Outcome(command_id, accepted.address, accepted.command, "pending")

    app.add_api_route(
        "/commands/{command_id}",
        command_status,
        methods=["GET"],
        summary="The outcome of a command: pending, applied, rejected, invalid, dead-lettered",
        tags=["commands"],
        response_model=Outcome[Any],
        responses={404: ERROR_RESPONSES[404], 503: ERROR_RESPONSES[503]},
    )
