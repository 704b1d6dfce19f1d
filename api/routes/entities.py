"""Read routes: an entity's state, its queries, and its history (never via the mailbox).

State and queries are evaluated on the entity rebuilt from the store (cached and
fast-forwarded by :class:`~api.readers.entities.EntityReader`), at the newest version or at
``?version=N``. A query's arguments are query parameters, typed in OpenAPI from the
query method's signature.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic_core
from fastapi import FastAPI, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from actors import CommandSpec, EntityNotFoundError, EntitySpec, check_entity_id
from api.context import ApiContext
from api.errors import ERROR_RESPONSES, JSON, ErrorBody, invalid_body
from api.openapi.schemas import (
    EventPage,
    Responses,
    query_response_model,
    responses,
    state_response_model,
    tags,
)
from api.routes.commands import EntityId
from eventstore import RecordedEvent

MAX_VERSION = 2**62  # versions are 64-bit integers in both stores
Version = Annotated[
    int | None,
    Query(
        ge=1, le=MAX_VERSION, description="read as of this version (time travel); default: newest"
    ),
]
After = Annotated[int, Query(ge=0, le=MAX_VERSION, description="return events after this version")]
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many events")]
RESERVED = {"version"}


def _query_parameters(handler: CommandSpec, components: dict[str, Any]) -> list[dict[str, Any]]:
    schema = components.get(handler.args_model.__name__, {})
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def _list_fields(handler: CommandSpec, components: dict[str, Any]) -> set[str]:
    props = components.get(handler.args_model.__name__, {}).get("properties", {})
    return {name for name, prop in props.items() if prop.get("type") == "array"}


def _query_route(ctx: ApiContext, spec: EntitySpec, handler: CommandSpec, lists: set[str]) -> Any:
    reader = ctx.reader

    async def run_query(request: Request, entity_id: EntityId, version: Version = None) -> Response:
        raw: dict[str, Any] = {}
        for name, value in request.query_params.multi_items():
            if name in RESERVED:
                continue
            if name in lists:
                raw.setdefault(name, []).append(value)
            else:
                raw[name] = value
        try:
            parsed = handler.args_model.model_validate(raw)
        except ValidationError as exc:
            raise invalid_body(exc, f"{spec.type_name}.{handler.name}", "query") from None
        entity = await reader.read(spec, entity_id, version)
        result = spec.run_query(entity, handler, parsed)  # on a copy: the cache stays as it is
        body = pydantic_core.to_json({"result": result, "version": entity.version})
        return Response(body, media_type=JSON)

    return run_query


def _state_route(ctx: ApiContext, spec: EntitySpec) -> Any:
    reader = ctx.reader

    async def get_state(entity_id: EntityId, version: Version = None) -> Response:
        entity = await reader.read(spec, entity_id, version)
        state = entity.state
        body = (
            b'{"state":'
            + state.__pydantic_serializer__.to_json(state)
            + b',"version":'
            + str(entity.version).encode()
            + b"}"
        )
        return Response(body, media_type=JSON)

    return get_state


def event_page(events: list[RecordedEvent], limit: int) -> Response:
    """A page of history as the routes answer it: EventRecords and the next ``after``."""
    page = EventPage(
        events=[e.view() for e in events],
        next_after=events[-1].version if len(events) == limit else None,
    )
    return Response(page.model_dump_json(), media_type=JSON)


def _events_route(ctx: ApiContext, spec: EntitySpec) -> Any:
    async def get_events(entity_id: EntityId, after: After = 0, limit: Limit = 100) -> Response:
        address = f"{spec.type_name}/{check_entity_id(entity_id)}"
        events = await ctx.run(lambda: ctx.store.page(address, after=after, limit=limit))
        if events is None:
            raise EntityNotFoundError(f"{address} has no events: no command has created it yet")
        return event_page(events, limit)

    return get_events


def _add_entity_routes(
    app: FastAPI, ctx: ApiContext, spec: EntitySpec, components: dict[str, Any]
) -> None:
    base = f"/entities/{spec.type_name}/{{entity_id}}"
    tag = tags(spec)
    reads: Responses = {
        404: ERROR_RESPONSES[404],
        422: ERROR_RESPONSES[422],
        503: ERROR_RESPONSES[503],
    }
    app.add_api_route(
        base,
        _state_route(ctx, spec),
        methods=["GET"],
        summary=f"The state of one {spec.type_name} (now, or at ?version=N)",
        operation_id=f"state_{spec.type_name}".replace(".", "_"),
        tags=tag,
        response_class=Response,
        responses=responses(
            {200: {"model": state_response_model(spec), "description": "state"}}, reads
        ),
    )
    app.add_api_route(
        f"{base}/events",
        _events_route(ctx, spec),
        methods=["GET"],
        summary=f"The history of one {spec.type_name}, oldest first, paged",
        operation_id=f"events_{spec.type_name}".replace(".", "_"),
        tags=tag,
        response_class=Response,
        responses=responses({200: {"model": EventPage, "description": "a page of events"}}, reads),
    )
    for handler in spec.queries():
        params = _query_parameters(handler, components)
        clash = RESERVED & {p["name"] for p in params}
        if clash:
            raise ValueError(
                f"query {spec.type_name}.{handler.name} has an argument named "
                f"{sorted(clash)}, which the API reserves for time travel; rename it"
            )
        doc = handler.doc.splitlines()[0] if handler.doc else f"query {handler.name}"
        app.add_api_route(
            f"{base}/queries/{handler.name}",
            _query_route(ctx, spec, handler, _list_fields(handler, components)),
            methods=["GET"],
            summary=f"{spec.type_name}.{handler.name}: {doc}",
            description=handler.doc or None,
            operation_id=f"query_{spec.type_name}_{handler.name}".replace(".", "_"),
            tags=tag,
            response_class=Response,
            responses=responses(
                {
                    200: {"model": query_response_model(handler), "description": "the result"},
                    500: {"model": ErrorBody, "description": "the query is buggy"},
                },
                reads,
            ),
            openapi_extra={"parameters": params},
        )


def _add_fallbacks(app: FastAPI, ctx: ApiContext) -> None:
    async def unknown_type(type_name: str, entity_id: str) -> Response:
        ctx.catalog.spec(type_name)
        raise AssertionError("a registered type always has routes")  # pragma: no cover

    async def unknown_query(type_name: str, entity_id: str, query: str) -> Response:
        ctx.catalog.spec(type_name).query(query)
        raise AssertionError("a registered query always has a route")  # pragma: no cover

    app.add_api_route(
        "/entities/{type_name}/{entity_id}", unknown_type, methods=["GET"], include_in_schema=False
    )
    app.add_api_route(
        "/entities/{type_name}/{entity_id}/events",
        unknown_type,
        methods=["GET"],
        include_in_schema=False,
    )
    app.add_api_route(
        "/entities/{type_name}/{entity_id}/queries/{query}",
        unknown_query,
        methods=["GET"],
        include_in_schema=False,
    )


def install(app: FastAPI, ctx: ApiContext, components: dict[str, Any]) -> None:
    for spec in ctx.catalog:
        _add_entity_routes(app, ctx, spec, components)
    _add_fallbacks(app, ctx)
